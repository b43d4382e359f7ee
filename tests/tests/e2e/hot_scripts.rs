//! Hot JavaScript functions prepared on their worker (`hot_scripts.rs` in
//! the worker, `tier_up.rs` in the engine): once a function is hot, its
//! calls answer exactly as before, at exactly the same fuel, and the
//! worker's metrics count what it prepared and what it refused.

use std::time::Duration;

use nimbus_worker::{MetricsListener, WorkerConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Platform, Setup, eventually};

/// A top level that computes, and a handler that reads the environment and
/// logs: all of it the same prepared or not.
const HOT: &str = "const squares = []; for (let i = 0; i < 200; i++) squares.push(i * i);\n\
                   export function handler(x) { console.log('n is', x.n); \
                   if (x.n < 0) throw new Error('negative'); \
                   return { square: squares[x.n], draws: typeof Math.random() }; }";

/// A top level that reads the clock: a snapshot would freeze it.
const CLOCKED: &str = "const started = Date.now();\n\
                       export function handler(x) { return typeof started + x.n; }";

const INPUTS: [i64; 4] = [3, 150, 0, -1];

/// What a caller sees of a call: the status, the result or error, and the
/// fuel.
async fn call(platform: &Platform, token: &str, id: u64, n: i64) -> (StatusCode, Value, u64) {
    let (status, body) = platform.execute(token, id, json!({"n": n})).await;
    let fuel = body
        .get("fuel_consumed")
        .or_else(|| body.pointer("/error/fuel_consumed"))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no fuel in {body}"));
    let answer = body
        .get("result")
        .cloned()
        .unwrap_or_else(|| body["error"]["message"].clone());
    (status, answer, fuel)
}

async fn preparations(http: &reqwest::Client, url: &str, result: &str) -> u64 {
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    let series = format!("nimbus_worker_script_preparations_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn a_hot_javascript_function_is_prepared_and_answers_at_the_same_fuel() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = format!("http://{}/metrics", listener.local_addr().unwrap());
    let setup = Setup::default();
    let platform = Platform::start_with(Setup {
        worker: WorkerConfig {
            metrics_listener: Some(MetricsListener::new(listener)),
            prepare_scripts_after: 3,
            ..setup.worker
        },
        ..setup
    })
    .await;
    let token = platform.user("hot").await;
    let mut ids = Vec::new();
    for source in [HOT, CLOCKED] {
        let (status, body) = platform
            .post_json(
                "/functions",
                Some(&token),
                &json!({"code": source, "runtime": "js"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["id"].as_u64().unwrap());
    }

    // Unprepared: what each input answers, at what fuel.
    let mut before = Vec::new();
    for &id in &ids {
        for n in INPUTS {
            before.push(call(&platform, &token, id, n).await);
        }
    }
    assert_eq!(before[0].1, json!({"square": 9, "draws": "number"}));
    assert_eq!(
        before[3].0,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        before[3]
    );
    assert_eq!(before[4].1, json!("number3"));

    eventually(
        "the worker prepares the hot function and refuses the clocked one",
        Duration::from_secs(120),
        || async {
            let prepared = preparations(&platform.http, &metrics, "prepared").await;
            let refused = preparations(&platform.http, &metrics, "refused").await;
            (prepared == 1 && refused == 1).then_some(())
        },
    )
    .await;

    // Prepared (or, for the clocked one, not): the same answers, the same
    // fuel, call after call.
    for _ in 0..2 {
        let mut after = Vec::new();
        for &id in &ids {
            for n in INPUTS {
                after.push(call(&platform, &token, id, n).await);
            }
        }
        assert_eq!(after, before);
    }
    assert_eq!(preparations(&platform.http, &metrics, "failed").await, 0);
}
