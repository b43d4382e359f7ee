//! Variables and secrets: set over HTTP, read by the guest as environment
//! variables (JavaScript's `process.env`, a component's `wasi:cli/environment`
//! and `wasi:config/store`, Rust's `std::env`), applied to the next call on
//! every worker, carried by jobs, refused past the limits, invisible to
//! other users, and never stored or answered in clear.

use std::time::Duration;

use nimbus_worker::WorkerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::components::component;
use crate::examples::rust_example;
use crate::harness::{ADD_WAT, Platform, Setup, assert_error, eventually};

/// What the JavaScript function reports of its environment.
const ENV_JS: &str = r#"
const key = process.env.API_KEY;
return {
  greeting: process.env.GREETING ?? null,
  key_reversed: key === undefined ? null : key.split('').reverse().join(''),
  names: Object.keys(process.env).sort(),
};"#;

/// A secret no file or answer of the platform may contain.
const SECRET: &str = "s3cr3t-Value-4f9c2e71-never-in-clear";

fn reversed(s: &str) -> String {
    s.chars().rev().collect()
}

async fn put_vars(platform: &Platform, token: &str, id: u64, vars: Value) -> (StatusCode, Value) {
    platform
        .send(
            Method::PUT,
            &format!("/functions/{id}/config"),
            Some(token),
            Some((
                "application/json",
                json!({ "vars": vars }).to_string().into_bytes(),
            )),
        )
        .await
}

async fn put_secret(
    platform: &Platform,
    token: &str,
    id: u64,
    name: &str,
    value: &[u8],
) -> (StatusCode, Value) {
    platform
        .send(
            Method::PUT,
            &format!("/functions/{id}/secrets/{name}"),
            Some(token),
            Some(("text/plain", value.to_vec())),
        )
        .await
}

async fn upload_js(platform: &Platform, token: &str, source: &str) -> u64 {
    let (status, body) = platform
        .post_json("/functions", Some(token), &json!({"code": source}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_u64().unwrap()
}

async fn result(platform: &Platform, token: &str, id: u64) -> Value {
    let (status, body) = platform.execute(token, id, json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["result"].clone()
}

/// The greeting the JavaScript function answers through the API at `base`.
async fn greeting_via(platform: &Platform, base: &str, token: &str, id: u64) -> Value {
    let path = format!("/functions/{id}/execute");
    let (status, body) = platform
        .post_json_to(base, &path, Some(token), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["result"]["greeting"].clone()
}

/// Upload `wasm` with `query`; its id.
async fn deploy_wasm(platform: &Platform, token: &str, query: &str, wasm: Vec<u8>) -> u64 {
    let (status, body) = platform
        .send(
            Method::POST,
            &format!("/functions?{query}"),
            Some(token),
            Some(("application/wasm", wasm)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_u64().unwrap()
}

/// Make calls with `call` (which checks each answer) until each of the
/// first `workers` workers has run one of them: NATS spreads a queue
/// group's messages at random, so which worker ran a call is known only
/// from the workers' counts afterwards.
async fn on_every_worker<F: Future<Output = ()>>(
    platform: &Platform,
    workers: usize,
    call: impl Fn() -> F,
) {
    let before: Vec<u64> = (0..workers).map(|i| platform.worker_runs(i)).collect();
    for _ in 0..200 {
        call().await;
        if (0..workers).all(|i| platform.worker_runs(i) > before[i]) {
            return;
        }
    }
    panic!("200 calls never reached all {workers} workers");
}

/// Whether any file under `dir` contains `needle`.
fn stored_anywhere(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            stored_anywhere(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}

#[tokio::test]
async fn variables_and_secrets_reach_every_kind_of_function_and_are_never_in_clear() {
    let mut platform = Platform::start_with(Setup {
        workers: 2,
        ..Setup::default()
    })
    .await;
    let other_api = platform.add_api().await;
    let ada = platform.user("ada").await;
    let js = upload_js(&platform, &ada, ENV_JS).await;
    // Both workers run the function (and keep it) before any change.
    on_every_worker(&platform, 2, || async {
        assert_eq!(
            result(&platform, &ada, js).await,
            json!({"greeting": null, "key_reversed": null, "names": []})
        );
    })
    .await;

    // A marker among the variables: stored in clear, so the search of the
    // store below can find what is there.
    let (status, body) = put_vars(
        &platform,
        &ada,
        js,
        json!({"GREETING": "hola", "MARKER": "marker-var-1d7e0b"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["vars"]["GREETING"], "hola");
    let (status, body) = put_secret(&platform, &ada, js, "API_KEY", SECRET.as_bytes()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "API_KEY");
    let (status, _) = put_secret(&platform, &ada, js, "API_KEY", SECRET.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "replacing a secret");
    // Every call after the change sees it, on every worker.
    on_every_worker(&platform, 2, || async {
        assert_eq!(
            result(&platform, &ada, js).await,
            json!({"greeting": "hola", "key_reversed": reversed(SECRET),
                   "names": ["API_KEY", "GREETING", "MARKER"]})
        );
    })
    .await;
    // The same code deployed by another user sees none of it.
    let bob = platform.user("bob").await;
    let bobs = upload_js(&platform, &bob, ENV_JS).await;
    assert_eq!(
        result(&platform, &bob, bobs).await,
        json!({"greeting": null, "key_reversed": null, "names": []})
    );
    // Another API server, which caches the function as it is now...
    assert_eq!(greeting_via(&platform, &other_api, &ada, js).await, "hola");
    let (status, _) = put_vars(
        &platform,
        &ada,
        js,
        json!({"GREETING": "hello", "MARKER": "marker-var-1d7e0b"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    on_every_worker(&platform, 2, || async {
        assert_eq!(result(&platform, &ada, js).await["greeting"], "hello");
    })
    .await;
    // ...learns of the change through its metadata watch.
    eventually(
        "the other API server sends the new environment",
        Duration::from_secs(10),
        || async { (greeting_via(&platform, &other_api, &ada, js).await == "hello").then_some(()) },
    )
    .await;

    // Reading back: variables, secret names; never a secret's value.
    let (_, config) = platform
        .get(&format!("/functions/{js}/config"), Some(&ada))
        .await;
    assert_eq!(
        config,
        json!({"vars": {"GREETING": "hello", "MARKER": "marker-var-1d7e0b"}})
    );
    let (_, secrets) = platform
        .get(&format!("/functions/{js}/secrets"), Some(&ada))
        .await;
    assert_eq!(secrets["secrets"].as_array().unwrap().len(), 1, "{secrets}");
    assert_eq!(secrets["secrets"][0]["name"], "API_KEY");
    assert!(secrets["secrets"][0]["updated"].is_string());
    let (_, meta) = platform.get(&format!("/functions/{js}"), Some(&ada)).await;
    let (_, list) = platform.get("/functions", Some(&ada)).await;
    for answer in [&config, &secrets, &meta, &list] {
        assert!(!answer.to_string().contains(SECRET), "{answer}");
    }

    // A job carries the environment too.
    let (status, queued) = platform
        .post_json(
            &format!("/functions/{js}/execute?async=true"),
            Some(&ada),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let path = format!("/invocations/{}", queued["id"].as_str().unwrap());
    let record = eventually("the job finishes", Duration::from_secs(60), || async {
        let (_, record) = platform.get(&path, Some(&ada)).await;
        (record["status"] == "succeeded").then_some(record)
    })
    .await;
    assert_eq!(
        record["result"]["key_reversed"],
        reversed(SECRET),
        "{record}"
    );

    // A component reads both through wasi:cli/environment and
    // wasi:config/store.
    let probe = deploy_wasm(&platform, &ada, "name=probe", component("http_probe")).await;
    put_vars(&platform, &ada, probe, json!({"REGION": "eu"})).await;
    put_secret(&platform, &ada, probe, "API_KEY", SECRET.as_bytes()).await;
    let (status, env) = platform.get("/fn/ada/probe/env", Some(&ada)).await;
    assert_eq!(status, StatusCode::OK, "{env}");
    let expected = json!([["API_KEY", SECRET], ["REGION", "eu"]]);
    assert_eq!(env["environment"], expected, "in name order");
    // wasi:config/store's get-all promises no order (wasmtime-wasi-config
    // keeps a HashMap).
    let mut config = env["config"].as_array().unwrap().clone();
    config.sort_by_key(|pair| pair[0].as_str().unwrap().to_owned());
    assert_eq!(Value::Array(config), expected);

    // A Rust function reads them with std::env.
    let query = "name=hello&timeout_ms=60000";
    let hello = deploy_wasm(&platform, &ada, query, rust_example("hello")).await;
    put_vars(&platform, &ada, hello, json!({"GREETING": "Hola"})).await;
    let (status, body) = platform.execute(&ada, hello, json!("Ada")).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!("Hola, Ada!")),
        "{body}"
    );

    // Deleting the secret takes it away from the next call.
    let secret_path = format!("/functions/{js}/secrets/API_KEY");
    let (status, _) = platform.delete(&secret_path, Some(&ada)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        result(&platform, &ada, js).await["key_reversed"],
        Value::Null
    );
    assert_error(
        platform.delete(&secret_path, Some(&ada)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Nothing nats-server wrote holds the secret in clear (JetStream's
    // files: the configuration bucket, the jobs stream, the invocation
    // records), though it does hold the variables.
    assert!(stored_anywhere(platform.store_path(), b"marker-var-1d7e0b"));
    assert!(!stored_anywhere(platform.store_path(), SECRET.as_bytes()));
}

#[tokio::test]
async fn limits_ownership_and_conflicts_are_enforced() {
    let platform = Platform::start().await;
    let ada = platform.user("ada").await;
    let bob = platform.user("bob").await;
    let id = platform.upload(&ada, ADD_WAT, None).await;
    let bad = |actual: (StatusCode, Value)| {
        assert_error(actual, StatusCode::BAD_REQUEST, "invalid_request")
    };

    bad(put_vars(&platform, &ada, id, json!({"lower": "x"})).await);
    bad(put_vars(&platform, &ada, id, json!({"A": "x\u{0}y"})).await);
    bad(put_secret(&platform, &ada, id, "1BAD", b"x").await);
    bad(put_secret(&platform, &ada, id, "BINARY", &[0xff, 0xfe]).await);
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("V{i}"), json!("x"))).collect();
    let refused = put_vars(&platform, &ada, id, Value::Object(many)).await;
    assert!(
        refused.1.to_string().contains("at most 64"),
        "{}",
        refused.1
    );
    bad(refused);
    // Too large, counted with the variables: the value is not quoted back.
    put_vars(&platform, &ada, id, json!({"SMALL": "x"})).await;
    let big = "Z".repeat(64 << 10);
    let refused = put_secret(&platform, &ada, id, "BIG", big.as_bytes()).await;
    assert!(!refused.1.to_string().contains("ZZZZZZZZ"), "{}", refused.1);
    bad(refused);

    // A name is a variable or a secret, not both.
    let (status, _) = put_secret(&platform, &ada, id, "TOKEN", b"t").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_error(
        put_vars(&platform, &ada, id, json!({"TOKEN": "x"})).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_error(
        put_secret(&platform, &ada, id, "SMALL", b"s").await,
        StatusCode::CONFLICT,
        "conflict",
    );

    // Someone else's function has no configuration anyone else can see.
    let not_found = |actual| assert_error(actual, StatusCode::NOT_FOUND, "not_found");
    not_found(
        platform
            .get(&format!("/functions/{id}/config"), Some(&bob))
            .await,
    );
    not_found(
        platform
            .get(&format!("/functions/{id}/secrets"), Some(&bob))
            .await,
    );
    not_found(put_vars(&platform, &bob, id, json!({"X": "1"})).await);
    not_found(put_secret(&platform, &bob, id, "TOKEN", b"stolen").await);
    not_found(
        platform
            .delete(&format!("/functions/{id}/secrets/TOKEN"), Some(&bob))
            .await,
    );
    let (_, vars) = platform
        .get(&format!("/functions/{id}/config"), Some(&ada))
        .await;
    assert_eq!(vars, json!({"vars": {"SMALL": "x"}}));

    // Deleting the function deletes its configuration.
    let storage = nimbus_store::Storage::open(platform.nats_client().await, &Default::default())
        .await
        .unwrap();
    let (config, _) = storage.function_config(id).await.unwrap();
    assert_eq!(config.secrets.len(), 1);
    platform
        .delete(&format!("/functions/{id}"), Some(&ada))
        .await;
    let (config, _) = storage.function_config(id).await.unwrap();
    assert!(config.is_empty(), "{config:?}");
}

#[tokio::test]
async fn a_worker_without_the_environment_key_refuses_what_it_cannot_open() {
    let platform = Platform::start_with(Setup {
        worker: WorkerConfig {
            env_key: None,
            ..Setup::default().worker
        },
        ..Setup::default()
    })
    .await;
    let ada = platform.user("ada").await;
    let plain = platform.upload(&ada, ADD_WAT, None).await;
    let configured = platform.upload(&ada, ADD_WAT, None).await;
    put_vars(&platform, &ada, configured, json!({"X": "1"})).await;
    let (status, body) = platform.execute(&ada, plain, json!(1)).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(2)),
        "{body}"
    );
    let refused = platform.execute(&ada, configured, json!(1)).await;
    assert!(
        refused.1.to_string().contains("NIMBUS_ENV_KEY"),
        "{}",
        refused.1
    );
    assert_error(refused, StatusCode::BAD_GATEWAY, "worker_failed");
}

#[tokio::test]
async fn concurrent_changes_and_a_rename_lose_nothing() {
    let platform = Platform::start().await;
    let ada = platform.user("ada").await;
    let id = platform.upload(&ada, ADD_WAT, None).await;
    let names: Vec<String> = (0..8).map(|i| format!("S{i}")).collect();
    let puts = futures::future::join_all(
        names
            .iter()
            .map(|name| put_secret(&platform, &ada, id, name, b"v")),
    );
    // A rename racing them: a compare-and-set like theirs, answered 409
    // when it loses, so it is tried until it wins.
    let rename = async {
        loop {
            let body = json!({"name": "renamed"}).to_string().into_bytes();
            let (status, answer) = platform
                .send(
                    Method::PATCH,
                    &format!("/functions/{id}"),
                    Some(&ada),
                    Some(("application/json", body)),
                )
                .await;
            match status {
                StatusCode::OK => return,
                StatusCode::CONFLICT => tokio::task::yield_now().await,
                _ => panic!("{status}: {answer}"),
            }
        }
    };
    let (answers, ()) = tokio::join!(puts, rename);
    for (status, body) in answers {
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, secrets) = platform
        .get(&format!("/functions/{id}/secrets"), Some(&ada))
        .await;
    assert_eq!(secrets["secrets"].as_array().unwrap().len(), 8, "{secrets}");
    // The stored metadata kept both: the name, and the latest revision.
    let storage = nimbus_store::Storage::open(platform.nats_client().await, &Default::default())
        .await
        .unwrap();
    let owner = nimbus_core::Username::parse("ada").unwrap();
    let (meta, _) = storage.function_entry(&owner, id).await.unwrap().unwrap();
    let (_, revision) = storage.function_config(id).await.unwrap();
    assert_eq!(meta.name.as_deref(), Some("renamed"));
    assert_eq!(meta.config_revision, revision);
}
