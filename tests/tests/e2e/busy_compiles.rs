//! Big compiles do not stall the platform. Compiles run on the engine's
//! bounded, low-priority compile pool: while more large uploads compile
//! than the pool runs at once (so some queue), logins, invocations and
//! health checks keep answering at about their usual latency. (Compiles
//! used to share the API's CPU slots with bcrypt, so two of them held up
//! every login until one finished.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADD_WAT, Platform};

/// Concurrent big uploads: twice the compile pool's default concurrency (2),
/// so half of them queue. (With compiles in the API's bcrypt slots, as
/// before, every login then waited behind two compiles in a row.)
const BIG_UPLOADS: usize = 4;

#[tokio::test]
async fn logins_invocations_and_health_checks_answer_while_big_modules_compile() {
    let platform = Arc::new(Platform::start().await);
    let token = platform.user("alice").await;
    let id = platform.upload(&token, ADD_WAT, None).await;

    let mut before = Vec::new();
    for _ in 0..10 {
        before.push(probe(&platform, &token, id).await);
    }

    // Made first: generating them is CPU work on the test's own runtime.
    // One user each: one user's uploads would compile one at a time.
    let modules: Vec<Vec<u8>> = (0..BIG_UPLOADS).map(big_module).collect();
    let mut uploaders = Vec::new();
    for n in 0..BIG_UPLOADS {
        uploaders.push(platform.user(&format!("uploader{n}")).await);
    }
    let started = Instant::now();
    let uploads: Vec<_> = modules
        .into_iter()
        .zip(uploaders)
        .map(|(module, token)| {
            let platform = platform.clone();
            tokio::spawn(async move {
                let answer = platform
                    .send(
                        reqwest::Method::POST,
                        "/functions",
                        Some(&token),
                        Some(("application/wasm", module)),
                    )
                    .await;
                (answer, started.elapsed())
            })
        })
        .collect();
    let mut during = Vec::new();
    while uploads.iter().any(|upload| !upload.is_finished()) {
        during.push(probe(&platform, &token, id).await);
    }
    let mut upload_times = Vec::new();
    for upload in uploads {
        let ((status, body), took) = upload.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        upload_times.push(took);
    }
    let rounds = during.len();
    let slowest = *during.iter().max().expect("at least one round");
    let (before, during) = (median(before), median(during));
    eprintln!(
        "big uploads answered after {upload_times:?}; a login + execute + healthz round took \
         {before:?} (median) before, {during:?} while compiling, {slowest:?} at worst \
         ({rounds} rounds)"
    );
    // Queued behind the compiles, a login would wait for two of them in a
    // row (seconds). Bounds generous enough for a loaded machine: a round
    // takes milliseconds.
    assert!(
        rounds >= 5,
        "only {rounds} probe rounds fit while the uploads compiled: requests waited for them"
    );
    assert!(
        slowest <= before * 20 + Duration::from_millis(1500),
        "a round took {slowest:?} while compiling (median {during:?}), {before:?} before"
    );
}

/// One login, one invocation and one health check, in sequence; each must
/// succeed. Returns how long the three took.
async fn probe(platform: &Platform, token: &str, id: u64) -> Duration {
    let started = Instant::now();
    platform.login("alice", "password123").await;
    let (status, body) = platform.execute(token, id, json!(2)).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(3)),
        "{body}"
    );
    let (status, body) = platform.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    started.elapsed()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// A module of about 300 KB that takes Cranelift seconds: many functions of
/// arithmetic over a few locals. `n` makes each distinct (the engine would
/// reuse an identical module's compile).
fn big_module(n: usize) -> Vec<u8> {
    let mut wat = String::from("(module\n");
    for f in 0..600 {
        wat.push_str(&format!(
            "(func $f{f} (param i32) (result i32) (local i32 i32)\n\
             local.get 0 i32.const {} i32.add local.set 1\n",
            n * 100_000 + f
        ));
        for k in 0..40 {
            wat.push_str(&format!(
                "local.get 1 i32.const {k} i32.mul local.get 2 i32.xor local.set 2 \
                 local.get 2 local.get 1 i32.add i32.const {} i32.rotl local.set 1\n",
                k % 31
            ));
        }
        wat.push_str("local.get 1 local.get 2 i32.add)\n");
    }
    wat.push_str("(func (export \"handle\") (param i32) (result i32) local.get 0 call $f0))");
    wat::parse_str(&wat).expect("the generated module parses")
}
