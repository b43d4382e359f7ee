//! Key-value state from functions: the Rust SDK (`nimbus_kv`), a component
//! (`wasi:keyvalue`) and JavaScript (`Nimbus.kv`) read their writes across
//! calls, count exactly under concurrency (increments and compare-and-swap),
//! open only the stores they declared, hit the owner's quota, and reach
//! state only through grants the API servers signed.

use std::collections::BTreeSet;

use futures::StreamExt;
use futures::future::join_all;
use nimbus_core::kv::{Grant, KvErrorKind, KvReply};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::components::component;
use crate::examples::rust_example;
use crate::harness::{Platform, secrets_key};

/// Upload `wasm` (a module or a component) as `name`, with `stores`.
async fn deploy(platform: &Platform, token: &str, name: &str, wasm: Vec<u8>, stores: &str) -> u64 {
    let (status, body) = platform
        .send(
            Method::POST,
            &format!("/functions?name={name}&key_value_stores={stores}"),
            Some(token),
            Some(("application/wasm", wasm)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["key_value_stores"],
        json!(stores.split(',').collect::<Vec<_>>())
    );
    body["id"].as_u64().unwrap()
}

/// The Rust SDK counter example as `counter`, with the `default` store.
async fn deploy_counter(platform: &Platform, token: &str) -> u64 {
    deploy(
        platform,
        token,
        "counter",
        rust_example("counter"),
        "default",
    )
    .await
}

async fn run(platform: &Platform, token: &str, id: u64, input: Value) -> Value {
    let (status, body) = platform.execute(token, id, input).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["result"].clone()
}

#[tokio::test]
async fn the_sdk_counts_exactly_under_concurrency_in_its_owners_stores_only() {
    let platform = Platform::start().await;
    let ada = platform.user("ada").await;
    let id = deploy_counter(&platform, &ada).await;

    // Read-your-writes across invocations.
    for expected in 1..=3 {
        let result = run(&platform, &ada, id, json!({"op": "hit"})).await;
        assert_eq!(result, json!({"count": expected}));
    }
    // 40 concurrent increments: 40 distinct counts, none lost.
    let hits = join_all((0..40).map(|_| run(&platform, &ada, id, json!({"op": "hit"})))).await;
    let counts: BTreeSet<i64> = hits.iter().map(|r| r["count"].as_i64().unwrap()).collect();
    assert_eq!(counts, (4..=43).collect::<BTreeSet<_>>());
    // 16 concurrent compare-and-swap appends: every item kept once.
    join_all((0..16).map(|i| run(&platform, &ada, id, json!({"op": "append", "item": i})))).await;
    let items = run(&platform, &ada, id, json!({"op": "get", "key": "items"})).await;
    let mut items: Vec<i64> = serde_json::from_value(items["value"].clone()).unwrap();
    items.sort();
    assert_eq!(items, (0..16).collect::<Vec<_>>());
    // The owner sees what the function wrote.
    let (status, keys) = platform.get("/kv/default", Some(&ada)).await;
    assert_eq!(
        (status, keys["keys"].clone()),
        (StatusCode::OK, json!(["hits", "items"]))
    );
    let value = platform
        .http
        .get(platform.url("/kv/default/hits"))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(value.text().await.unwrap(), "43");

    // A store the function did not declare is refused, clearly.
    let (status, body) = platform
        .execute(&ada, id, json!({"op": "hit", "store": "other"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("access_denied") && message.contains("other"),
        "{message}"
    );

    // Another user's function with the same code counts in its own store.
    let bob = platform.user("bob").await;
    let bobs = deploy_counter(&platform, &bob).await;
    assert_eq!(
        run(&platform, &bob, bobs, json!({"op": "hit"})).await,
        json!({"count": 1})
    );
    assert_eq!(
        run(&platform, &ada, id, json!({"op": "hit"})).await,
        json!({"count": 44})
    );
    // Jobs carry a grant too.
    let (status, queued) = platform
        .post_json(
            &format!("/functions/{id}/execute?async=true"),
            Some(&ada),
            &json!({"input": {"op": "hit"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let location = format!("/invocations/{}", queued["id"].as_str().unwrap());
    let done =
        crate::harness::eventually("the job", std::time::Duration::from_secs(60), || async {
            let (_, record) = platform.get(&location, Some(&ada)).await;
            (record["status"] == "succeeded").then_some(record)
        })
        .await;
    assert_eq!(done["result"], json!({"count": 45}));
}

#[tokio::test]
async fn components_use_wasi_keyvalue_with_atomics_cas_and_batches() {
    let platform = Platform::start().await;
    let ada = platform.user("ada").await;
    deploy(
        &platform,
        &ada,
        "kv",
        component("kv_probe"),
        "default,cache",
    )
    .await;
    let call = |path: &'static str| {
        let (platform, ada) = (&platform, &ada);
        async move {
            let response = platform
                .http
                .get(platform.url(&format!("/fn/ada/kv{path}")))
                .bearer_auth(ada)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(call("/hit").await, (200, "1".into()));
    let hits = join_all((0..20).map(|_| call("/hit"))).await;
    let counts: BTreeSet<String> = hits.into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        counts.len(),
        20,
        "every increment answered a distinct count"
    );
    assert_eq!(call("/get").await, (200, "21".into()));
    let appends = join_all((0..10).map(|_| call("/append?key=list&item=x"))).await;
    assert!(
        appends.iter().all(|(status, _)| *status == 200),
        "{appends:?}"
    );
    assert_eq!(call("/get?key=list").await, (200, ["x"; 10].join(",")));
    assert_eq!(call("/exists?key=nope").await, (200, "false".into()));
    assert_eq!(
        call("/get?store=cache&key=nope").await,
        (404, "absent".into())
    );
    assert_eq!(call("/keys").await, (200, "hits\nlist".into()));
    assert_eq!(
        call("/batch?store=cache").await,
        (
            200,
            r#"[Some(("a", [49])), Some(("b", [50])), None]"#.into()
        )
    );
    assert_eq!(call("/delete?key=list").await.0, 200);
    assert_eq!(call("/keys").await, (200, "hits".into()));
    assert_eq!(
        call("/hit?store=secret").await,
        (500, "Error::AccessDenied".into())
    );
    assert_eq!(
        call("/hit?store=Bad!").await,
        (500, "Error::NoSuchStore".into())
    );
    let (status, text) = call("/hit?key=").await;
    assert_eq!(status, 500);
    assert!(text.contains("invalid"), "{text}");
}

const COUNTER_JS: &str = r#"
const store = Nimbus.kv.open();
const n = store.increment('js-hits');
store.setJson('last', { n });
let denied = null;
try { Nimbus.kv.open('elsewhere').get('x'); } catch (e) { denied = e.kind; }
return { n, last: store.getJson('last'), keys: store.keys('js-'), denied, absent: store.get('nope') };
"#;

#[tokio::test]
async fn javascript_keeps_state_with_nimbus_kv() {
    let platform = Platform::start().await;
    let ada = platform.user("ada").await;
    let (status, created) = platform
        .post_json(
            "/functions",
            Some(&ada),
            &json!({"code": COUNTER_JS, "key_value_stores": ["default"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    let first = run(&platform, &ada, id, json!(null)).await;
    assert_eq!(
        first,
        json!({"n": 1, "last": {"n": 1}, "keys": ["js-hits"], "denied": "access_denied", "absent": null})
    );
    let runs = join_all((0..10).map(|_| run(&platform, &ada, id, json!(null)))).await;
    let counts: BTreeSet<i64> = runs.iter().map(|r| r["n"].as_i64().unwrap()).collect();
    assert_eq!(counts, (2..=11).collect::<BTreeSet<_>>());
}

/// What an API server answers an operation sent straight on NATS with
/// `grant` (as a worker, or something posing as one, would send it).
async fn operation(client: &async_nats::Client, grant: &str, line: &str) -> KvReply {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(nimbus_core::wire::headers::KV_GRANT, grant);
    let reply = client
        .request_with_headers(
            nimbus_core::subjects::KV_REQUESTS,
            headers,
            line.to_owned().into(),
        )
        .await
        .unwrap();
    KvReply::parse(&reply.payload).unwrap()
}

#[tokio::test]
async fn operations_need_a_grant_the_api_signed_for_that_owner_and_store() {
    let platform = Platform::start().await;
    let ada = platform.user("ada").await;
    let id = deploy_counter(&platform, &ada).await;
    // As a worker connects: replies go only to workers' inboxes.
    let client = async_nats::ConnectOptions::new()
        .custom_inbox_prefix(nimbus_core::subjects::WORKER_INBOX_PREFIX)
        .connect(platform.nats_url())
        .await
        .unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let grant = |owner: &str, expires_ms: u64| Grant {
        owner: owner.into(),
        function_id: id,
        stores: vec!["default".into()],
        expires_ms,
    };
    let set = r#"{"store":"default","op":"set","key":"k"}
from-a-grant"#;
    let valid = grant("ada", now_ms + 60_000).sign(&secrets_key());
    assert_eq!(operation(&client, &valid, set).await.error, None);
    let value = platform
        .http
        .get(platform.url("/kv/default/k"))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(value.text().await.unwrap(), "from-a-grant");

    let denied = |reply: KvReply| reply.error.map(|e| e.kind) == Some(KvErrorKind::AccessDenied);
    let other = r#"{"store":"other","op":"get","key":"k"}"#;
    assert!(
        denied(operation(&client, &valid, other).await),
        "a store not granted"
    );
    let expired = grant("ada", now_ms - 1).sign(&secrets_key());
    assert!(denied(operation(&client, &expired, set).await), "expired");
    let forged_key = nimbus_core::SecretsKey::from_secret(&"f".repeat(40)).unwrap();
    assert!(denied(
        operation(
            &client,
            &grant("ada", now_ms + 60_000).sign(&forged_key),
            set
        )
        .await
    ));
    // Widening a real grant (another owner) breaks its tag.
    let (_, tag) = valid.split_once('.').unwrap();
    let body = grant("bob", now_ms + 60_000).sign(&forged_key);
    let (body, _) = body.split_once('.').unwrap();
    assert!(
        denied(operation(&client, &format!("{body}.{tag}"), set).await),
        "widened"
    );
    assert!(denied(operation(&client, "", set).await), "no grant");

    // A reply subject outside the workers' inboxes gets no answer: the API
    // may write to buckets, and must not write where a requester says.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(nimbus_core::wire::headers::KV_GRANT, valid.as_str());
    let mut injected = client.subscribe("injected.>").await.unwrap();
    client
        .publish_with_reply_and_headers(
            nimbus_core::subjects::KV_REQUESTS,
            "injected.reply",
            headers,
            set.to_owned().into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    let answered =
        tokio::time::timeout(std::time::Duration::from_millis(500), injected.next()).await;
    assert!(answered.is_err(), "answered outside an inbox: {answered:?}");

    // Deleting the function revokes its grants.
    let (status, _) = platform
        .delete(&format!("/functions/{id}"), Some(&ada))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        denied(operation(&client, &valid, set).await),
        "the function is gone"
    );
}

/// Reads until the platform says no more.
const GREEDY_JS: &str = r#"
const store = Nimbus.kv.open();
let reads = 0, kind = null;
try { for (;;) { store.get('x'); reads++; } } catch (e) { kind = e.kind; }
return { reads, kind };
"#;

#[tokio::test]
async fn guests_meet_the_owners_quota_and_the_per_invocation_operation_cap() {
    let platform = Platform::start_with(crate::harness::Setup {
        api: nimbus_api::ApiConfig {
            kv_quota: nimbus_core::kv::KvQuota {
                keys: 2,
                ..Default::default()
            },
            ..crate::harness::Setup::default().api
        },
        worker: nimbus_worker::WorkerConfig {
            max_kv_operations: 3,
            ..crate::harness::Setup::default().worker
        },
        ..Default::default()
    })
    .await;
    let ada = platform.user("ada").await;
    let id = deploy_counter(&platform, &ada).await;
    for key in ["a", "b"] {
        run(
            &platform,
            &ada,
            id,
            json!({"op": "set", "key": key, "value": 1}),
        )
        .await;
    }
    let (status, body) = platform
        .execute(&ada, id, json!({"op": "set", "key": "c", "value": 1}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("quota_exceeded"), "{message}");
    // Replacing a key adds none: still within the quota.
    run(
        &platform,
        &ada,
        id,
        json!({"op": "set", "key": "a", "value": 2}),
    )
    .await;

    let (status, created) = platform
        .post_json(
            "/functions",
            Some(&ada),
            &json!({"code": GREEDY_JS, "key_value_stores": ["default"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let greedy = run(
        &platform,
        &ada,
        created["id"].as_u64().unwrap(),
        json!(null),
    )
    .await;
    assert_eq!(greedy, json!({"reads": 3, "kind": "too_many_operations"}));
}
