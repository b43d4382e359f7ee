//! Reclaiming modules no function uses: sweeps delete them after a grace
//! period, keep what another function shares, and lose no race with an
//! upload of the same bytes (see `runtime/store/src/module_gc.rs`).

use std::time::Duration;

use nimbus_api::ApiConfig;
use nimbus_store::Storage;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADD_WAT, Platform, Setup, eventually};

/// A distinct module of about `bytes` bytes.
fn module(seed: u32, bytes: usize) -> String {
    format!(
        r#"(module (memory 20) (data (i32.const 0) "{}") (func (export "handle") (param i32) (result i32) i32.const {seed}))"#,
        "y".repeat(bytes)
    )
}

async fn storage(platform: &Platform) -> Storage {
    Storage::open(platform.nats_client().await, &Default::default())
        .await
        .expect("store opens")
}

async fn stored(storage: &Storage, digest: &str) -> bool {
    storage
        .module(digest)
        .await
        .expect("store answers")
        .is_some()
}

/// Bytes the modules object store holds.
async fn store_bytes(platform: &Platform) -> u64 {
    let js = async_nats::jetstream::new(platform.nats_client().await);
    let mut stream = js
        .get_stream(nimbus_core::subjects::MODULES_STREAM)
        .await
        .unwrap();
    stream.info().await.unwrap().state.bytes
}

#[tokio::test]
async fn sweeps_reclaim_unused_modules_and_keep_shared_ones() {
    let platform = Platform::start_with(Setup {
        api: ApiConfig {
            // The grace must outlast an upload's steps from storing its
            // module to writing its function, even on a loaded machine.
            module_gc_interval: Duration::from_millis(100),
            module_gc_grace: Duration::from_secs(3),
            ..Setup::default().api
        },
        ..Setup::default()
    })
    .await;
    let store = storage(&platform).await;
    let before = store_bytes(&platform).await;
    let ada = platform.user("ada").await;
    let bob = platform.user("bob").await;
    // One module shared by two users' functions, and five of ~1 MB.
    let shared_ada = platform.upload(&ada, ADD_WAT, None).await;
    let shared_bob = platform.upload(&bob, ADD_WAT, None).await;
    let mut big = Vec::new();
    for seed in 0..5 {
        let (status, body) = platform
            .post_json(
                "/functions",
                Some(&ada),
                &json!({"code": module(seed, 1 << 20)}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        big.push((
            body["id"].as_u64().unwrap(),
            body["digest"].as_str().unwrap().to_owned(),
        ));
    }
    let (_, meta) = platform
        .get(&format!("/functions/{shared_ada}"), Some(&ada))
        .await;
    let shared = meta["digest"].as_str().unwrap().to_owned();
    let grown = store_bytes(&platform).await;
    assert!(grown > before + (5 << 20), "{before} -> {grown}");

    // Delete the big ones and one user's copy of the shared one.
    for (id, _) in &big {
        let (status, _) = platform
            .delete(&format!("/functions/{id}"), Some(&ada))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = platform
        .delete(&format!("/functions/{shared_ada}"), Some(&ada))
        .await;
    assert_eq!(status, StatusCode::OK);
    for (_, digest) in &big {
        let digest = digest.clone();
        let store = &store;
        eventually(
            "a deleted function's module reclaimed",
            Duration::from_secs(30),
            || {
                let digest = digest.clone();
                async move { (!stored(store, &digest).await).then_some(()) }
            },
        )
        .await;
    }
    // The store is back to about where it was.
    eventually("the store shrunk back", Duration::from_secs(30), || async {
        (store_bytes(&platform).await < before + (256 << 10)).then_some(())
    })
    .await;
    // A sweep that ran after ada's delete (it reclaimed a throwaway module
    // uploaded and deleted since) kept the module bob still uses.
    let (status, body) = platform
        .post_json("/functions", Some(&ada), &json!({"code": module(99, 10)}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let throwaway = body["digest"].as_str().unwrap().to_owned();
    let (status, _) = platform
        .delete(&format!("/functions/{}", body["id"]), Some(&ada))
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually(
        "the throwaway module reclaimed",
        Duration::from_secs(30),
        || async { (!stored(&store, &throwaway).await).then_some(()) },
    )
    .await;
    assert!(stored(&store, &shared).await);
    let (status, body) = platform.execute(&bob, shared_bob, json!(41)).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(42)),
        "{body}"
    );

    // Once nobody uses it, it goes too (with its artifact).
    let (status, _) = platform
        .delete(&format!("/functions/{shared_bob}"), Some(&bob))
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually(
        "the shared module reclaimed",
        Duration::from_secs(30),
        || async { (!stored(&store, &shared).await).then_some(()) },
    )
    .await;
    // Uploading the same bytes again stores them again.
    let again = platform.upload(&bob, ADD_WAT, None).await;
    assert!(stored(&store, &shared).await);
    let (status, body) = platform.execute(&bob, again, json!(1)).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(2)),
        "{body}"
    );
}

/// The race: an upload of bytes already stored touches the object before
/// writing its function; a sweep that judged the object unused before the
/// touch must not delete it after. Driven step by step on a real store.
#[tokio::test]
async fn a_sweep_never_deletes_what_an_upload_touched_after_its_judgement() {
    let platform = Platform::start_with(Setup {
        workers: 0,
        api: ApiConfig {
            module_gc_interval: Duration::ZERO,
            ..Setup::default().api
        },
        ..Setup::default()
    })
    .await;
    let store = storage(&platform).await;
    let bytes = b"module bytes nobody references".to_vec();
    let digest = nimbus_engine::digest(&bytes);
    store.put_module(&digest, &bytes, false).await.unwrap();
    let judged =
        |garbage: &[nimbus_store::Garbage]| garbage.iter().find(|g| g.name() == digest).cloned();

    // Judged unused and old (no grace), then touched by an upload: the
    // delete is refused and the object stays.
    let (garbage, _) = store.garbage(Duration::ZERO).await.unwrap();
    let candidate = judged(&garbage).expect("an unreferenced object is garbage");
    store.put_module(&digest, &bytes, false).await.unwrap();
    assert!(!store.reclaim(&candidate).await.unwrap());
    assert!(stored(&store, &digest).await);

    // Deleted first, then the upload comes: it writes the object again.
    let (garbage, _) = store.garbage(Duration::ZERO).await.unwrap();
    let candidate = judged(&garbage).unwrap();
    assert!(store.reclaim(&candidate).await.unwrap());
    assert!(!stored(&store, &digest).await);
    // A second sweep deleting the same revision is refused.
    assert!(!store.reclaim(&candidate).await.unwrap());
    store.put_module(&digest, &bytes, false).await.unwrap();
    assert_eq!(store.module(&digest).await.unwrap(), Some(bytes.clone()));

    // Many uploads touching one object at once all succeed.
    let touches = (0..16).map(|_| store.put_module(&digest, &bytes, false));
    for touched in futures::future::join_all(touches).await {
        touched.unwrap();
    }

    // Within the grace period an unused object is young, not garbage.
    let (garbage, young) = store.garbage(Duration::from_secs(600)).await.unwrap();
    assert!(judged(&garbage).is_none());
    assert!(young >= 1);

    // Never garbage: pinned objects (the interpreter an API server
    // installs), what a function names, and the interpreter a JavaScript
    // function's script names inside its bytes (an older interpreter, say,
    // stored before pins existed).
    let pinned_bytes = b"pinned".to_vec();
    let pinned = nimbus_engine::digest(&pinned_bytes);
    store
        .put_module(&pinned, &pinned_bytes, true)
        .await
        .unwrap();
    let ada = platform.user("ada").await;
    let id = platform.upload(&ada, ADD_WAT, None).await;
    let (_, meta) = platform.get(&format!("/functions/{id}"), Some(&ada)).await;
    let used = meta["digest"].as_str().unwrap().to_owned();
    let old_bytes = b"an older interpreter".to_vec();
    let old_interpreter = nimbus_engine::digest(&old_bytes);
    store
        .put_module(&old_interpreter, &old_bytes, false)
        .await
        .unwrap();
    let script = nimbus_core::script::ScriptModule {
        interpreter: &old_interpreter,
        script: b"bytecode",
    }
    .encode();
    let script_digest = nimbus_engine::digest(&script);
    store
        .put_module(&script_digest, &script, false)
        .await
        .unwrap();
    let mut js: nimbus_core::FunctionMeta = serde_json::from_value(meta.clone()).unwrap();
    js.id = store.next_function_id().await.unwrap();
    (js.runtime, js.digest) = (nimbus_core::Runtime::Js, script_digest.clone());
    store.create_function(&js).await.unwrap();
    let (garbage, _) = store.garbage(Duration::ZERO).await.unwrap();
    let names: Vec<&str> = garbage.iter().map(|g| g.name()).collect();
    assert!(names.contains(&digest.as_str()), "{names:?}");
    for kept in [&pinned, &used, &old_interpreter, &script_digest] {
        assert!(
            !names.iter().any(|n| n.starts_with(kept.as_str())),
            "{kept}: {names:?}"
        );
    }
}
