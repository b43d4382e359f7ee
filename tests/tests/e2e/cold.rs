//! Many functions a worker has never run, called at once: each first call
//! reads a module from the object store. Reading them must scale (an object
//! read used to create a JetStream consumer each, and a burst of them hit
//! the server's consumer limit for about a minute).

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Platform, Setup};

/// Distinct functions deployed (distinct modules: the store deduplicates).
const FUNCTIONS: usize = 400;
/// Calls in flight at once.
const CONNECTIONS: usize = 16;

#[tokio::test]
async fn hundreds_of_functions_called_cold_at_once_all_answer() {
    // Without warming up nor sweeping: their listings of the object store
    // are the reads that use a (short-lived) consumer, and the count below
    // is of module reads. (A sweep starts within the first 2 minutes: under
    // load this test can last that long, and its listing's consumer was
    // counted here.)
    let mut setup = Setup::default();
    setup.worker.warm_modules = 0;
    setup.api.module_gc_interval = std::time::Duration::ZERO;
    setup.api.quotas.functions = FUNCTIONS as u64;
    setup.api.quotas.log_bytes = u64::MAX;
    let platform = Arc::new(Platform::start_with(setup).await);
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

/// With the artifact key (the worker loads the API's artifact) and without
/// (the worker compiles): either way a burst of first calls gets the module
/// once, whether or not loading it as it was stored got there first.
#[tokio::test]
async fn a_burst_of_first_calls_to_one_function_loads_or_compiles_it_once() {
    for with_key in [true, false] {
        let mut setup = Setup::default();
        if !with_key {
            setup.worker.artifact_verifier = None;
        }
        let platform = Arc::new(Platform::start_with(setup).await);
        let token = Arc::new(platform.user("alice").await);
        // Counted from before the upload: with the key, the worker may load
        // the artifact as the upload stores it, and the burst then joins
        // that load or finds the module loaded.
        let before = platform.worker_loads(0);
        let id = platform.upload(&token, &module_adding(7), None).await;
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
        let after = platform.worker_loads(0);
        let (compiled, loaded) = (
            after.compiled - before.compiled,
            after.loaded - before.loaded,
        );
        let expected = if with_key { (0, 1) } else { (1, 0) };
        assert_eq!(
            (compiled, loaded),
            expected,
            "{CONNECTIONS} concurrent first calls (artifact key: {with_key}): (compiled, loaded)"
        );
    }
}

/// Objects are read many chunks at a time by sequence number while their
/// chunks are consecutive in the stream, and chunk by chunk past a gap.
/// Objects written at the same time interleave their chunks: both must
/// still read back exactly.
#[tokio::test]
async fn objects_whose_chunks_interleave_read_back_intact() {
    let platform = Platform::start_with(Setup {
        workers: 0,
        ..Setup::default()
    })
    .await;
    let open = || async {
        nimbus_store::Storage::open(platform.nats_client().await, &Default::default())
            .await
            .unwrap()
    };
    let (one, two) = (open().await, open().await);
    // ~3 MB each: two dozen chunks, written concurrently.
    let bytes = |seed: u8| -> Vec<u8> {
        (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(31) as u8) ^ seed)
            .collect()
    };
    let (a, b) = (bytes(1), bytes(2));
    let (da, db) = (nimbus_engine::digest(&a), nimbus_engine::digest(&b));
    let (wrote_a, wrote_b) = tokio::join!(
        one.put_module(&da, &a, false),
        two.put_module(&db, &b, false)
    );
    wrote_a.unwrap();
    wrote_b.unwrap();
    assert_eq!(one.module(&da).await.unwrap().as_deref(), Some(&a[..]));
    assert_eq!(one.module(&db).await.unwrap().as_deref(), Some(&b[..]));
}
