//! Compile once per platform: the API stores a sealed native artifact at
//! upload and workers load it instead of compiling; an artifact whose seal
//! does not verify is refused, and the worker compiles instead.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::components::component;
use crate::harness::{ADD_WAT, Platform, Setup, artifact_key};

async fn storage(platform: &Platform) -> nimbus_store::Storage {
    nimbus_store::Storage::open(platform.nats_client().await, &Default::default())
        .await
        .unwrap()
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
}

#[tokio::test]
async fn a_forged_artifact_is_refused_and_the_worker_compiles_its_own() {
    let platform = Platform::start().await;
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
    let (other, _) = engine
        .compile(br#"(module (func (export "handle") (param i32) (result i32) i32.const 666))"#)
        .unwrap();
    let forged = engine.serialize(&other).unwrap().expect("native code");
    let wrong_key = nimbus_store::ArtifactKey::from_secret(&"x".repeat(40)).unwrap();
    let name = nimbus_store::artifact_name(digest, &engine.artifact_key());
    let js = async_nats::jetstream::new(platform.nats_client().await);
    let bucket = js.get_object_store("modules").await.unwrap();
    bucket
        .delete(&name)
        .await
        .expect("the upload stored an artifact");
    store
        .put_artifact(digest, &engine.artifact_key(), &forged, &wrong_key)
        .await
        .unwrap();
    let refused = store
        .artifact(digest, &engine.artifact_key(), &artifact_key())
        .await;
    assert!(
        matches!(refused, Err(nimbus_store::StoreError::Unsealed { .. })),
        "{refused:?}"
    );

    // The worker refuses it too: it compiles, and answers right.
    let (status, body) = platform.execute(&token, id, json!(41)).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(42)),
        "{body}"
    );
    let loads = platform.worker_loads(0);
    assert_eq!((loads.compiled, loads.loaded), (1, 0), "{loads:?}");

    // Artifacts are written once: the forged one stays, still refused, and
    // every worker compiles rather than load it.
    let refused = store
        .artifact(digest, &engine.artifact_key(), &artifact_key())
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
    setup.worker.artifact_key = None;
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
            &artifact_key(),
        )
        .await
        .unwrap();
    assert!(stored.is_none(), "no artifact without the key");
}
