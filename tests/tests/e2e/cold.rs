//! Many functions a worker has never run, called at once: each first call
//! reads a module from the object store. Reading them must scale (an object
//! read used to create a JetStream consumer each, and a burst of them hit
//! the server's consumer limit for about a minute).

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Platform;

/// Distinct functions deployed (distinct modules: the store deduplicates).
const FUNCTIONS: usize = 400;
/// Calls in flight at once.
const CONNECTIONS: usize = 16;

#[tokio::test]
async fn hundreds_of_functions_called_cold_at_once_all_answer() {
    let platform = Arc::new(Platform::start().await);
    let token = Arc::new(platform.user("alice").await);
    let mut ids = Vec::new();
    for n in 0..FUNCTIONS {
        let wat = format!(
            r#"(module (func (export "handle") (param i32) (result i32)
                 local.get 0 i32.const {n} i32.add))"#
        );
        ids.push((n, platform.upload(&token, &wat, None).await));
    }
    let work = Arc::new(std::sync::Mutex::new(ids));
    let mut callers = Vec::new();
    for _ in 0..CONNECTIONS {
        let (platform, token, work) = (platform.clone(), token.clone(), work.clone());
        callers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            loop {
                let Some((n, id)) = work.lock().unwrap().pop() else {
                    return failures;
                };
                let (status, body) = platform.execute(&token, id, json!(1)).await;
                if status != StatusCode::OK || body["result"] != json!(n + 1) {
                    failures.push(format!("function {id}: {status} {body}"));
                }
            }
        }));
    }
    let mut failures = Vec::new();
    for caller in callers {
        failures.extend(caller.await.unwrap());
    }
    // Reading a module leaves nothing behind on the server (reading through
    // async-nats's object reader left one consumer per read: 400 here).
    let js = async_nats::jetstream::new(platform.nats_client().await);
    let mut modules = js
        .get_stream(nimbus_core::subjects::MODULES_STREAM)
        .await
        .unwrap();
    let consumers = modules.info().await.unwrap().state.consumer_count;
    assert_eq!(consumers, 0, "module reads left consumers on the stream");
    assert!(
        failures.is_empty(),
        "{} of {FUNCTIONS} cold calls failed, first: {:?}",
        failures.len(),
        failures.first()
    );
}

/// A module with a few functions, `handle` adding `n`.
fn module_adding(n: usize) -> String {
    format!(
        r#"(module
             (func $twice (param i32) (result i32) local.get 0 i32.const 2 i32.mul)
             (func $square (param i32) (result i32) local.get 0 local.get 0 i32.mul)
             (func (export "handle") (param i32) (result i32)
               local.get 0 call $twice call $square drop
               local.get 0 i32.const {n} i32.add))"#
    )
}

#[tokio::test]
async fn a_burst_of_first_calls_to_one_function_compiles_it_once() {
    let platform = Arc::new(Platform::start().await);
    let token = Arc::new(platform.user("alice").await);

    // What one compile of such a module costs the worker, in functions.
    let warmup = platform.upload(&token, &module_adding(1000), None).await;
    let before = platform.worker_code_cache(0);
    let (status, _) = platform.execute(&token, warmup, json!(1)).await;
    assert_eq!(status, StatusCode::OK);
    let after = platform.worker_code_cache(0);
    let one_compile = (after.hits + after.misses) - (before.hits + before.misses);
    assert!(one_compile > 0, "the worker compiled the module");

    // A burst of first calls to another module of the same shape.
    let id = platform.upload(&token, &module_adding(7), None).await;
    let before = platform.worker_code_cache(0);
    let calls: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (platform, token) = (platform.clone(), token.clone());
            tokio::spawn(async move { platform.execute(&token, id, json!(1)).await })
        })
        .collect();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(
            (status, &body["result"]),
            (StatusCode::OK, &json!(8)),
            "{body}"
        );
    }
    let after = platform.worker_code_cache(0);
    assert_eq!(
        (after.hits + after.misses) - (before.hits + before.misses),
        one_compile,
        "{CONNECTIONS} concurrent first calls compiled the module more than once"
    );
}
