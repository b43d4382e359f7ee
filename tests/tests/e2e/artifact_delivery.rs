//! Artifacts reach workers ahead of calls: a worker loads each artifact an
//! API server stores (at an upload) before any call asks for it, and keeps
//! the artifacts it loaded on its own disk, checked again on every load, so
//! a restarted worker reads them there rather than from NATS.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::artifacts::{put_forged_artifact, storage};
use crate::harness::{ADD_WAT, Platform, Setup, artifact_key, eventually};

/// The artifact of `digest` for the workers' engine, as the object store
/// names it.
fn artifact_name(digest: &str) -> String {
    let engine = nimbus_cli::platform::worker_engine(&Default::default()).unwrap();
    nimbus_store::artifact_name(digest, &engine.artifact_key())
}

async fn delete_object(platform: &Platform, name: &str) {
    let js = async_nats::jetstream::new(platform.nats_client().await);
    let bucket = js.get_object_store("modules").await.unwrap();
    bucket.delete(name).await.expect("the object is stored");
}

#[tokio::test]
async fn an_uploaded_artifact_is_loaded_before_its_first_call() {
    let platform = Platform::start().await;
    let token = platform.user("ada").await;
    let id = platform.upload(&token, ADD_WAT, None).await;
    eventually(
        "the worker loads the new artifact",
        Duration::from_secs(60),
        || async { (platform.worker_loads(0).loaded == 1).then_some(()) },
    )
    .await;
    let runs = platform.worker_runs(0);
    let (status, body) = platform.execute(&token, id, json!(1)).await;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(2)));
    assert_eq!(
        platform.worker_runs(0),
        runs + 1,
        "this worker ran the call"
    );
    let loads = platform.worker_loads(0);
    assert_eq!((loads.compiled, loads.loaded), (0, 1), "{loads:?}");
}

/// What a worker loads as it is stored is checked as on a call: an artifact
/// signed with another key is refused and never loaded.
#[tokio::test]
async fn a_forged_artifact_is_refused_as_it_is_stored() {
    let mut setup = Setup::default();
    // No signing at upload: the only artifact stored is the forged one.
    setup.api.artifact_key = None;
    let platform = Platform::start_with(setup).await;
    let token = platform.user("ada").await;
    let (_, created) = platform
        .post_json("/functions", Some(&token), &json!({"code": ADD_WAT}))
        .await;
    let digest = created["digest"].as_str().unwrap();
    let engine = nimbus_cli::platform::worker_engine(&Default::default()).unwrap();
    let store = storage(&platform).await;
    put_forged_artifact(&store, &engine, digest).await;
    // A genuine artifact stored after it (another module's) is loaded:
    // the forged one came first, so it was seen, and refused, by then.
    let seven = r#"(module (func (export "handle") (param i32) (result i32) i32.const 7))"#;
    let (_, other_created) = platform
        .post_json("/functions", Some(&token), &json!({"code": seven}))
        .await;
    let (compiled, _) = engine.compile(seven.as_bytes()).unwrap();
    let native = engine.serialize(&compiled).unwrap().expect("native code");
    store
        .put_artifact(
            other_created["digest"].as_str().unwrap(),
            &engine.artifact_key(),
            native,
            &artifact_key(),
        )
        .await
        .unwrap();
    eventually(
        "the worker loads the genuine artifact",
        Duration::from_secs(60),
        || async { (platform.worker_loads(0).loaded == 1).then_some(()) },
    )
    .await;
    let (status, body) = platform
        .execute(&token, created["id"].as_u64().unwrap(), json!(41))
        .await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(42)),
        "{body}"
    );
    let loads = platform.worker_loads(0);
    assert_eq!((loads.compiled, loads.loaded), (1, 1), "{loads:?}");
}

/// A restarted worker loads the artifacts it kept on disk, even once the
/// object store no longer has them; a kept file that was changed is
/// refused and removed, and the worker falls back to compiling.
#[tokio::test]
async fn a_restarted_worker_loads_the_artifacts_it_kept_and_refuses_a_changed_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::default();
    setup.worker.artifact_dir = Some(dir.path().to_owned());
    // Loaded by the call, not ahead of it.
    setup.worker.warm_modules = 0;
    let mut platform = Platform::start_with(setup).await;
    let token = platform.user("ada").await;
    let (_, created) = platform
        .post_json("/functions", Some(&token), &json!({"code": ADD_WAT}))
        .await;
    let id = created["id"].as_u64().unwrap();
    let name = artifact_name(created["digest"].as_str().unwrap());
    let kept = dir.path().join(&name);
    let (status, _) = platform.execute(&token, id, json!(1)).await;
    assert_eq!(status, StatusCode::OK);
    eventually(
        "the worker keeps the artifact",
        Duration::from_secs(60),
        || async { kept.exists().then_some(()) },
    )
    .await;

    // The stored artifact is gone; the restarted worker has its copy.
    delete_object(&platform, &name).await;
    platform.stop_worker(0).await;
    let worker = platform.add_worker().await;
    let (status, body) = platform.execute(&token, id, json!(2)).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(3)),
        "{body}"
    );
    let loads = platform.worker_loads(worker);
    assert_eq!((loads.compiled, loads.loaded), (0, 1), "{loads:?}");

    // One byte of the kept native code changed: refused, removed, and the
    // module compiled from its stored bytes instead.
    let mut bytes = std::fs::read(&kept).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&kept, bytes).unwrap();
    platform.stop_worker(worker).await;
    let worker = platform.add_worker().await;
    let (status, body) = platform.execute(&token, id, json!(3)).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(4)),
        "{body}"
    );
    let loads = platform.worker_loads(worker);
    assert_eq!((loads.compiled, loads.loaded), (1, 0), "{loads:?}");
    assert!(!kept.exists(), "the changed file is removed");
}

/// Functions stored before an upgrade that renames artifacts (a new
/// wasmtime, engine settings, the storage format) get new artifacts from
/// the next API server to start, in the background, the JavaScript
/// interpreter's included (JS functions' scripts have none of their own):
/// workers then load them and compile nothing.
#[tokio::test]
async fn a_starting_api_server_makes_the_artifacts_stored_modules_lack() {
    let mut platform = Platform::start_with(Setup {
        workers: 0,
        ..Setup::default()
    })
    .await;
    let token = platform.user("ada").await;
    let store = storage(&platform).await;
    let mut functions = Vec::new();
    let mut sealed = Vec::new();
    for (n, code) in [
        r#"(module (func (export "handle") (param i32) (result i32)
             local.get 0 i32.const 1 i32.add))"#,
        r#"(module (func (export "handle") (param i32) (result i32)
             local.get 0 i32.const 2 i32.add))"#,
        "return input + 3;",
    ]
    .into_iter()
    .enumerate()
    {
        let runtime = if n == 2 { "js" } else { "wat" };
        let (status, created) = platform
            .post_json(
                "/functions",
                Some(&token),
                &json!({"code": code, "runtime": runtime}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let mut digest = created["digest"].as_str().unwrap().to_owned();
        if n == 2 {
            // The script's code is its interpreter's.
            let script = store.module(&digest).await.unwrap().unwrap();
            let script = nimbus_core::script::ScriptModule::decode(&script)
                .unwrap()
                .expect("a script module");
            digest = script.interpreter.to_owned();
        }
        // As if stored by a platform whose artifacts this one cannot use.
        delete_object(&platform, &artifact_name(&digest)).await;
        functions.push((created["id"].as_u64().unwrap(), n as i64 + 1));
        sealed.push(digest);
    }

    platform.add_api().await;
    let engine = nimbus_cli::platform::worker_engine(&Default::default()).unwrap();
    for digest in &sealed {
        let made = eventually(
            "the new API server makes the artifact",
            Duration::from_secs(120),
            || async {
                store
                    .artifact(digest, &engine.artifact_key(), &artifact_key().verifier())
                    .await
                    .unwrap()
            },
        )
        .await;
        drop(made);
    }

    let worker = platform.add_worker().await;
    for (id, n) in &functions {
        let (status, body) = platform.execute(&token, *id, json!(40)).await;
        assert_eq!(
            (status, &body["result"]),
            (StatusCode::OK, &json!(40 + n)),
            "{body}"
        );
    }
    let loads = platform.worker_loads(worker);
    assert_eq!((loads.compiled, loads.loaded), (0, 3), "{loads:?}");
}
