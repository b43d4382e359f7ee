//! Compile once per platform: the API stores a signed native artifact at
//! upload and workers load it instead of compiling; an artifact whose signature
//! does not verify is refused, and the worker compiles instead.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::components::component;
use crate::harness::{ADD_WAT, Platform, Setup, artifact_key};

pub(crate) async fn storage(platform: &Platform) -> nimbus_store::Storage {
    nimbus_store::Storage::open(platform.nats_client().await, &Default::default())
        .await
        .unwrap()
}

/// Store, as the artifact of `digest`, native code of another module
/// (`handle` answering 666) signed with a key that is not the platform's.
pub(crate) async fn put_forged_artifact(
    store: &nimbus_store::Storage,
    engine: &nimbus_engine::Engine,
    digest: &str,
) {
    let (other, _) = engine
        .compile(br#"(module (func (export "handle") (param i32) (result i32) i32.const 666))"#)
        .unwrap();
    let forged = engine.serialize(&other).unwrap().expect("native code");
    let wrong_key = nimbus_store::ArtifactKey::from_secret(&"x".repeat(40)).unwrap();
    store
        .put_artifact(digest, &engine.artifact_key(), forged, &wrong_key)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_worker_loads_the_uploads_artifact_instead_of_compiling() {
    let platform = Platform::start().await;
    let token = platform.user("ada").await;
    let (status, created) = platform
        .send(
            Method::POST,
            "/functions?name=probe&access=public",
            Some(&token),
            Some(("application/wasm", component("http_probe"))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = platform.upload(&token, ADD_WAT, None).await;

    let (status, _) = platform.get("/fn/ada/probe/x", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = platform.execute(&token, id, json!(1)).await;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(2)));
    let loads = platform.worker_loads(0);
    assert_eq!((loads.compiled, loads.loaded), (0, 2), "{loads:?}");
    // Both were mapped from the sealed memory file they arrived in, not
    // copied (Linux).
    assert_eq!(loads.mapped, 2, "{loads:?}");
}

/// A fetched artifact arrives in a memory file sealed against writes and
/// resizing once its seal verified: what the engine maps cannot change
/// under it.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_fetched_artifact_is_a_sealed_memory_file() {
    use std::io::{Read, Seek, Write};
    let platform = Platform::start().await;
    let token = platform.user("ada").await;
    let (_, created) = platform
        .post_json("/functions", Some(&token), &json!({"code": ADD_WAT}))
        .await;
    let digest = created["digest"].as_str().unwrap();
    let engine = nimbus_cli::platform::worker_engine(&Default::default()).unwrap();
    let fetched = storage(&platform)
        .await
        .artifact(digest, &engine.artifact_key(), &artifact_key().verifier())
        .await
        .unwrap()
        .expect("the upload stored an artifact");
    let nimbus_store::Artifact::File(mut file) = fetched else {
        panic!("expected a memory file, got {fetched:?}");
    };
    file.rewind().unwrap();
    let mut artifact = Vec::new();
    file.read_to_end(&mut artifact).unwrap();
    assert_eq!(
        &artifact[..4],
        b"\x7fELF",
        "native code, without the seal's tag"
    );
    assert!(file.write_all(b"evil").is_err(), "writable after sealing");
    assert!(file.set_len(1).is_err(), "resizable after sealing");
    // The engine maps it and runs it.
    let module = engine.load_precompiled_file(digest, file).unwrap();
    assert_eq!(engine.load_stats().mapped, 1);
    let run = engine
        .invoke(
            &module,
            bytes::Bytes::from_static(b"41"),
            &Default::default(),
        )
        .await;
    assert_eq!(&run.result.unwrap()[..], b"42");
}

/// JavaScript functions are scripts for one interpreter: the worker loads
/// the interpreter's artifact (stored by the API when it prepared
/// JavaScript) on its first JS call, then each new function is a few
/// kilobytes of bytecode: nothing compiled, nothing more loaded.
#[tokio::test]
async fn js_functions_share_one_interpreter_artifact_and_compile_nothing() {
    let platform = Platform::start().await;
    let token = platform.user("ada").await;
    for (n, source) in [
        "return input + 1;",
        "function handler(input) { return input * 10; }",
        "export default (input) => [input];",
    ]
    .iter()
    .enumerate()
    {
        let (status, created) = platform
            .post_json(
                "/functions",
                Some(&token),
                &json!({"code": source, "runtime": "js"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert!(created["size"].as_u64().unwrap() < 8 << 10, "{created}");
        let id = created["id"].as_u64().unwrap();
        let (status, body) = platform.execute(&token, id, json!(4)).await;
        let want = [json!(5), json!(40), json!([4])];
        assert_eq!(
            (status, &body["result"]),
            (StatusCode::OK, &want[n]),
            "{body}"
        );
        let loads = platform.worker_loads(0);
        assert_eq!(
            (loads.compiled, loads.loaded),
            (0, 1),
            "{source}: {loads:?}"
        );
    }
    // A script module for anything but the platform's interpreter is refused.
    let stranger = nimbus_core::script::ScriptModule {
        interpreter: &"a".repeat(64),
        script: b"Mxyz",
    }
    .encode();
    let refused = platform
        .send(
            Method::POST,
            "/functions",
            Some(&token),
            Some(("application/wasm", stranger)),
        )
        .await;
    crate::harness::assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_module");
}

/// A worker that joins a platform with functions loads the most recently
/// stored artifacts (up to `warm_modules`) before any call asks for them,
/// and never compiles to do so; older modules load on their first call.
#[tokio::test]
async fn a_starting_worker_warms_up_with_the_most_recent_artifacts() {
    let mut platform = Platform::start_with(Setup {
        workers: 0,
        ..Setup::default()
    })
    .await;
    let token = platform.user("ada").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let wat = format!(
            r#"(module (func (export "handle") (param i32) (result i32)
                 local.get 0 i32.const {n} i32.add))"#
        );
        ids.push(platform.upload(&token, &wat, None).await);
    }
    platform.setup.worker.warm_modules = 2;
    let worker = platform.add_worker().await;
    let warmed = async {
        while platform.worker_loads(worker).loaded < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), warmed)
        .await
        .expect("the worker warms up");
    // The two newest run without loading anything; the oldest loads on its call.
    for (n, id) in ids.iter().enumerate().rev() {
        let (status, body) = platform.execute(&token, *id, json!(10)).await;
        assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(10 + n)));
        let loads = platform.worker_loads(worker);
        let want = if n == 0 { 3 } else { 2 };
        assert_eq!(
            (loads.compiled, loads.loaded),
            (0, want),
            "after function {n}"
        );
    }
}

#[tokio::test]
async fn a_forged_artifact_is_refused_and_the_worker_compiles_its_own() {
    // The call meets the forged artifact (with warming on, the worker would
    // load the genuine one as the upload stores it: `artifact_delivery.rs`).
    let mut setup = Setup::default();
    setup.worker.warm_modules = 0;
    let platform = Platform::start_with(setup).await;
    let token = platform.user("ada").await;
    let (status, created) = platform
        .post_json("/functions", Some(&token), &json!({"code": ADD_WAT}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_u64().unwrap();
    let digest = created["digest"].as_str().unwrap();

    // Someone with write access to the bucket but not the key replaces the
    // artifact with native code of their own (here: another module's,
    // sealed with another key). The test may delete objects; the platform's
    // own users may not (deploy/nats).
    let store = storage(&platform).await;
    let engine = nimbus_cli::platform::worker_engine(&Default::default()).unwrap();
    let name = nimbus_store::artifact_name(digest, &engine.artifact_key());
    let js = async_nats::jetstream::new(platform.nats_client().await);
    let bucket = js.get_object_store("modules").await.unwrap();
    bucket
        .delete(&name)
        .await
        .expect("the upload stored an artifact");
    put_forged_artifact(&store, &engine, digest).await;
    // The store refuses it, and so does the worker: it compiles, and
    // answers right.
    assert_refused_and_compiled(&platform, &token, id, digest).await;

    // Artifacts are written once: the forged one stays, still refused, and
    // every worker compiles rather than load it.
    let refused = store
        .artifact(digest, &engine.artifact_key(), &artifact_key().verifier())
        .await;
    assert!(matches!(
        refused,
        Err(nimbus_store::StoreError::Unsealed { .. })
    ));
}

#[tokio::test]
async fn without_the_key_nothing_is_sealed_and_workers_compile() {
    let mut setup = Setup::default();
    setup.api.artifact_key = None;
    setup.worker.artifact_verifier = None;
    let platform = Platform::start_with(setup).await;
    let token = platform.user("ada").await;
    let (_, created) = platform
        .post_json("/functions", Some(&token), &json!({"code": ADD_WAT}))
        .await;
    let (status, _) = platform
        .execute(&token, created["id"].as_u64().unwrap(), json!(1))
        .await;
    assert_eq!(status, StatusCode::OK);
    let loads = platform.worker_loads(0);
    assert_eq!((loads.compiled, loads.loaded), (1, 0), "{loads:?}");
    let engine = nimbus_cli::platform::worker_engine(&Default::default()).unwrap();
    let stored = storage(&platform)
        .await
        .artifact(
            created["digest"].as_str().unwrap(),
            &engine.artifact_key(),
            &artifact_key().verifier(),
        )
        .await
        .unwrap();
    assert!(stored.is_none(), "no artifact without the key");
}

/// Workers hold only the public key: one that had to compile a module
/// keeps the result to itself, so nothing a worker does puts native code in
/// the store (its NATS user may not write there either: deploy/nats).
#[tokio::test]
async fn a_worker_that_compiles_shares_nothing() {
    let mut setup = Setup::default();
    setup.api.artifact_key = None;
    let platform = Platform::start_with(setup).await;
    let token = platform.user("ada").await;
    let (_, created) = platform
        .post_json("/functions", Some(&token), &json!({"code": ADD_WAT}))
        .await;
    let (status, _) = platform
        .execute(&token, created["id"].as_u64().unwrap(), json!(1))
        .await;
    assert_eq!(status, StatusCode::OK);
    let loads = platform.worker_loads(0);
    assert_eq!((loads.compiled, loads.loaded), (1, 0), "{loads:?}");
    let engine = nimbus_cli::platform::worker_engine(&Default::default()).unwrap();
    let name =
        nimbus_store::artifact_name(created["digest"].as_str().unwrap(), &engine.artifact_key());
    let js = async_nats::jetstream::new(platform.nats_client().await);
    let bucket = js.get_object_store("modules").await.unwrap();
    assert!(bucket.info(&name).await.is_err(), "a worker stored {name}");
}

/// Artifacts are stored LZ4-compressed behind their signature; an object
/// under an artifact's name that is not a compressed artifact (here: junk
/// of several chunks) is refused at once, like a forged one, and the worker
/// compiles.
#[tokio::test]
async fn a_stored_artifact_is_compressed_and_one_that_does_not_decode_is_refused() {
    let mut setup = Setup::default();
    setup.worker.warm_modules = 0;
    let platform = Platform::start_with(setup).await;
    let token = platform.user("ada").await;
    let (_, created) = platform
        .post_json("/functions", Some(&token), &json!({"code": ADD_WAT}))
        .await;
    let id = created["id"].as_u64().unwrap();
    let digest = created["digest"].as_str().unwrap();
    let engine = nimbus_cli::platform::worker_engine(&Default::default()).unwrap();
    let (compiled, _) = engine.compile(ADD_WAT.as_bytes()).unwrap();
    let native = engine.serialize(&compiled).unwrap().expect("native code");
    let name = nimbus_store::artifact_name(digest, &engine.artifact_key());
    let js = async_nats::jetstream::new(platform.nats_client().await);
    let bucket = js.get_object_store("modules").await.unwrap();
    let mut stored = Vec::new();
    let mut object = bucket
        .get(&name)
        .await
        .expect("the upload stored an artifact");
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut stored)
        .await
        .unwrap();
    // The signature, then an LZ4 frame (its magic number), smaller than the code.
    assert_eq!(&stored[64..68], &[0x04, 0x22, 0x4d, 0x18]);
    assert!(
        stored.len() < native.len() / 2,
        "{} of {}",
        stored.len(),
        native.len()
    );

    bucket.delete(&name).await.unwrap();
    let junk: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 + i / 4099) as u8).collect();
    bucket.put(name.as_str(), &mut &junk[..]).await.unwrap();
    assert_refused_and_compiled(&platform, &token, id, digest).await;
}

/// The stored artifact of `digest` (function `id`, the `ADD_WAT` module) is
/// refused as unsealed, and worker 0 compiles the module to answer a call.
async fn assert_refused_and_compiled(platform: &Platform, token: &str, id: u64, digest: &str) {
    let engine = nimbus_cli::platform::worker_engine(&Default::default()).unwrap();
    let refused = storage(platform)
        .await
        .artifact(digest, &engine.artifact_key(), &artifact_key().verifier())
        .await;
    assert!(
        matches!(refused, Err(nimbus_store::StoreError::Unsealed { .. })),
        "{refused:?}"
    );
    let (status, body) = platform.execute(token, id, json!(41)).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(42)),
        "{body}"
    );
    let loads = platform.worker_loads(0);
    assert_eq!((loads.compiled, loads.loaded), (1, 0), "{loads:?}");
}
