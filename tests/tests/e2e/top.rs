//! `nimbus top`'s figures: two scrapes of a live API server's `/metrics`
//! around real calls give each function's calls, errors and fuel exactly,
//! and several servers' scrapes add up.

use std::time::Instant;

use nimbus_cli::top::{Snapshot, rows};
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADD_WAT, Platform};

const SPIN_WAT: &str = include_str!("../../../runtime/engine/fixtures/spin.wat");

async fn scrape(platform: &Platform) -> Snapshot {
    let text = platform
        .http
        .get(platform.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Snapshot::parse(&text, Instant::now()).unwrap()
}

#[tokio::test]
async fn top_counts_each_functions_calls_errors_and_fuel_between_scrapes() {
    let platform = Platform::start().await;
    let token = platform.user("topper").await;
    let add = platform.upload(&token, ADD_WAT, None).await;
    let spin = platform
        .upload(&token, SPIN_WAT, Some(json!({"fuel": 100_000})))
        .await;
    // Calls before the first scrape are not in the interval.
    platform.execute(&token, add, json!(1)).await;

    let before = scrape(&platform).await;
    let mut fuel = 0;
    for i in 0..5 {
        let (status, body) = platform.execute(&token, add, json!(i)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        fuel += body["fuel_consumed"].as_u64().unwrap();
    }
    let (status, body) = platform.execute(&token, spin, json!(0)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let spin_fuel = body["error"]["fuel_consumed"].as_u64().unwrap();
    let after = scrape(&platform).await;

    let table = rows(&before, &after);
    assert_eq!(table.len(), 2, "{table:?}");
    // Busiest first.
    assert_eq!(table[0].function, add.to_string());
    assert_eq!((table[0].calls, table[0].errors), (5.0, 0.0));
    assert_eq!(table[0].fuel, fuel as f64);
    assert!(table[0].mean_ms.unwrap() > 0.0);
    assert!(table[0].calls_per_second > 0.0);
    assert_eq!(table[1].function, spin.to_string());
    assert_eq!((table[1].calls, table[1].errors), (1.0, 1.0));
    assert_eq!(table[1].fuel, spin_fuel as f64);

    // Two servers' scrapes add up (here: the same one twice).
    let doubled = rows(
        &Snapshot::sum(&[before.clone(), before]).unwrap(),
        &Snapshot::sum(&[after.clone(), after]).unwrap(),
    );
    assert_eq!(doubled[0].calls, 10.0);
    assert_eq!(doubled[1].fuel, 2.0 * spin_fuel as f64);
}
