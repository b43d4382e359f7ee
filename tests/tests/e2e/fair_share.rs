//! One tenant's burst does not hold up another's call: a worker runs at
//! most its share of one tenant's calls at once (half its slots by
//! default) and takes waiting calls one tenant at a time; jobs too are
//! taken one tenant at a time; and an API server refuses a tenant's calls
//! past its rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;

use nimbus_api::ApiConfig;

use crate::harness::{ADD_WAT, Platform, Setup};
use crate::jobs::submit;

/// Sleeps `seconds` (a WASI clock subscription), then answers `null`.
fn sleeper(seconds: u64) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const {}))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#,
        seconds * 1_000_000_000
    )
}

/// Calls the hog sends at once: eight times the worker's slots.
const SLEEPERS: u64 = 64;

#[tokio::test]
async fn sixty_four_sleeping_calls_of_one_tenant_do_not_delay_anothers_call() {
    let platform = Arc::new(Platform::start().await);
    let hog = platform.user("hog").await;
    let victim = platform.user("victim").await;
    let sleeper = platform.upload(&hog, &sleeper(3), None).await;
    let add = platform.upload(&victim, ADD_WAT, None).await;
    // Both modules loaded on the worker: what follows measures waiting only.
    assert_eq!(
        platform.execute(&victim, add, json!(1)).await.0,
        StatusCode::OK
    );
    let started = Instant::now();
    let (status, body) = platform.execute(&hog, sleeper, json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(started.elapsed() >= Duration::from_secs(3), "it sleeps");

    let before = platform.worker_messages(0);
    let hogging: Vec<_> = (0..SLEEPERS)
        .map(|_| {
            let (platform, hog) = (platform.clone(), hog.clone());
            tokio::spawn(async move { platform.execute(&hog, sleeper, json!(null)).await })
        })
        .collect();
    // Every sleeper has reached the worker: its slots are as taken as the
    // hog can make them.
    let deadline = Instant::now() + Duration::from_secs(60);
    while platform.worker_messages(0) < before + SLEEPERS {
        assert!(
            Instant::now() < deadline,
            "the sleepers never reached the worker"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    let (status, body) = platform.execute(&victim, add, json!(41)).await;
    let took = started.elapsed();
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(42)),
        "{body}"
    );
    eprintln!("the victim's call took {took:?} behind {SLEEPERS} sleeping calls");
    // First come first served, it would wait for sleepers (3 s each) to
    // free a slot; with a share per tenant a slot is free at once.
    assert!(took < Duration::from_secs(2), "the victim waited {took:?}");
    for call in hogging {
        call.abort();
    }
}

#[tokio::test]
async fn one_tenants_queue_of_jobs_does_not_hold_up_anothers_job() {
    // One slot: every job waits for the one before it to finish.
    let mut setup = Setup::default();
    setup.worker.concurrency = 1;
    let platform = Platform::start_with(setup).await;
    let hog = platform.user("hog").await;
    let victim = platform.user("victim").await;
    let sleeper = platform.upload(&hog, &sleeper(1), None).await;
    let add = platform.upload(&victim, ADD_WAT, None).await;
    // Results are published as jobs finish, in the order they finish.
    let client = platform.nats_client().await;
    let mut results = client.subscribe("functions.result.*").await.unwrap();
    client.flush().await.unwrap();

    const HOG_JOBS: usize = 8;
    let mut hogs = Vec::new();
    for _ in 0..HOG_JOBS {
        hogs.push(submit(&platform, &hog, sleeper, json!(null)).await);
    }
    // The hog's first job holds the slot; seven more wait behind it.
    let first = hogs[0]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, record) = platform
            .get(&format!("/invocations/{first}"), Some(&hog))
            .await;
        if record["status"] != "queued" {
            break;
        }
        assert!(Instant::now() < deadline, "the first job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queued = submit(&platform, &victim, add, json!(41)).await;
    let victims = queued["id"].as_str().unwrap();

    let mut hog_jobs_before = 0;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(120), results.next())
            .await
            .expect("every job finishes")
            .unwrap();
        let record: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        if record["id"] == victims {
            assert_eq!(record["result"], 42, "{record}");
            break;
        }
        hog_jobs_before += 1;
    }
    eprintln!("the victim's job finished after {hog_jobs_before} of the hog's");
    // In arrival order it would wait for all eight; in turn, for the one
    // running when it came (and perhaps the next, had it been taken first).
    assert!(
        hog_jobs_before <= 2,
        "the victim's job waited for {hog_jobs_before} of the hog's jobs"
    );
}

#[tokio::test]
async fn calls_past_a_tenants_rate_are_refused_with_retry_after() {
    let platform = Platform::start_with(Setup {
        api: ApiConfig {
            calls_per_second: 1,
            ..Setup::default().api
        },
        ..Setup::default()
    })
    .await;
    let busy = platform.user("busy").await;
    let other = platform.user("other").await;
    let body = json!({"code": ADD_WAT, "name": "add", "access": "public"});
    let (status, created) = platform.post_json("/functions", Some(&busy), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    let theirs = platform.upload(&other, ADD_WAT, None).await;

    // One call a second: calls in a row are soon refused, whether through
    // execute or on the function's URL (an anonymous call is charged to
    // the owner).
    let execute = platform
        .http
        .post(platform.url(&format!("/functions/{id}/execute")))
        .bearer_auth(&busy)
        .json(&json!({"input": 1}));
    let refused = until_refused(&execute).await;
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "too_many_requests", "{body}");
    let url_call = platform.http.post(platform.url("/fn/busy/add")).body("1");
    until_refused(&url_call).await;

    // Another tenant is not affected.
    let (status, body) = platform.execute(&other, theirs, json!(1)).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(2)),
        "{body}"
    );
}

/// Send `request` until it is refused with 429 (at most 20 times; every
/// other answer must be a success).
async fn until_refused(request: &reqwest::RequestBuilder) -> reqwest::Response {
    for _ in 0..20 {
        let response = request.try_clone().unwrap().send().await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            return response;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    panic!("20 calls in a row and none over a rate of one a second");
}
