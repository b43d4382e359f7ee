//! Quotas per tenant and `GET /account`: functions, module bytes, and logs
//! kept per function so that one tenant's logs never push out another's.

use std::time::Duration;

use nimbus_api::ApiConfig;
use nimbus_api::config::Quotas;
use nimbus_store::StoreConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADD_WAT, Platform, Setup, assert_error, eventually};

const CHATTY_WAT: &str = include_str!("../../../runtime/engine/fixtures/chatty.wat");

/// A module of about `bytes` bytes (a data segment of that size).
fn module_of_size(bytes: usize) -> String {
    format!(
        r#"(module (memory 1) (data (i32.const 0) "{}") (func (export "handle") (param i32) (result i32) local.get 0))"#,
        "x".repeat(bytes)
    )
}

#[tokio::test]
async fn uploads_past_a_quota_are_refused_and_the_account_shows_usage() {
    let platform = Platform::start_with(Setup {
        workers: 0,
        api: ApiConfig {
            quotas: Quotas {
                functions: 3,
                module_bytes: 4096,
                // Three functions at the default log cap (50 entries of
                // 64 KiB each), and some.
                log_bytes: 32 << 20,
            },
            ..Setup::default().api
        },
        ..Setup::default()
    })
    .await;
    let ada = platform.user("ada").await;
    let bob = platform.user("bob").await;
    // Three functions of one module: it counts once.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(platform.upload(&ada, ADD_WAT, None).await);
    }
    let upload = |token: &str, wat: String| {
        let token = token.to_owned();
        let platform = &platform;
        async move {
            platform
                .post_json("/functions", Some(&token), &json!({"code": wat}))
                .await
        }
    };
    let refused = upload(&ada, ADD_WAT.to_owned()).await;
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("quota is 3"),
        "{}",
        refused.1
    );
    assert_error(refused, StatusCode::FORBIDDEN, "quota_exceeded");
    let (status, account) = platform.get("/account", Some(&ada)).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    let size = account["functions"][0]["module_bytes"].as_u64().unwrap();
    assert_eq!(account["username"], "ada");
    assert_eq!(
        account["quotas"]["functions"],
        json!({"used": 3, "limit": 3})
    );
    assert_eq!(
        account["quotas"]["module_bytes"],
        json!({"used": size, "limit": 4096})
    );
    assert_eq!(
        account["quotas"]["log_bytes"],
        json!({"used": 3 * 50 * (64 << 10), "limit": 32 << 20})
    );
    assert_eq!(account["quotas"]["jobs"]["used"], 0);
    assert_eq!(account["functions"].as_array().unwrap().len(), 3);
    // Another tenant has quotas of their own.
    platform.upload(&bob, ADD_WAT, None).await;

    // A deleted function frees its place; a module over the bytes left is
    // refused after it compiled, and nothing of it stays.
    let (status, _) = platform
        .delete(&format!("/functions/{}", ids[0]), Some(&ada))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        upload(&ada, module_of_size(4096)).await,
        StatusCode::FORBIDDEN,
        "quota_exceeded",
    );
    // Logs of 1 MiB an entry would reserve 50 MiB.
    let (status, body) = platform
        .post_json(
            "/functions",
            Some(&ada),
            &json!({"code": ADD_WAT, "limits": {"max_log_bytes": 1 << 20}}),
        )
        .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_log_bytes"),
        "{body}"
    );
    assert_error((status, body), StatusCode::FORBIDDEN, "quota_exceeded");
    let (_, account) = platform.get("/account", Some(&ada)).await;
    assert_eq!(account["quotas"]["functions"]["used"], 2, "{account}");
    let (status, body) = upload(&ada, module_of_size(1000)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, account) = platform.get("/account", Some(&ada)).await;
    assert_eq!(
        account["quotas"]["module_bytes"]["used"].as_u64().unwrap(),
        size + body["size"].as_u64().unwrap(),
        "{account}"
    );
    assert_error(
        platform.get("/account", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

#[tokio::test]
async fn a_functions_logs_push_out_only_its_own_oldest_entries() {
    let platform = Platform::start_with(Setup {
        store: StoreConfig {
            log_max_per_function: 5,
            ..StoreConfig::default()
        },
        ..Setup::default()
    })
    .await;
    // The stream's overall cap is a safety net far above a tenant's log
    // quota (one tenant's 300 MiB of logs used to evict everyone's oldest
    // under a 256 MiB cap).
    let js = async_nats::jetstream::new(platform.nats_client().await);
    let logs = js
        .get_stream(nimbus_core::subjects::LOGS_STREAM)
        .await
        .unwrap();
    let config = logs.cached_info().config.clone();
    assert_eq!(config.max_messages_per_subject, 5);
    assert!(config.max_bytes >= 4 * nimbus_api::config::Quotas::default().log_bytes as i64);

    let ada = platform.user("ada").await;
    let bob = platform.user("bob").await;
    let ada_fn = platform.upload(&ada, CHATTY_WAT, None).await;
    let bob_fn = platform.upload(&bob, CHATTY_WAT, None).await;
    assert_eq!(
        platform.execute(&bob, bob_fn, json!(null)).await.0,
        StatusCode::OK
    );
    for _ in 0..8 {
        assert_eq!(
            platform.execute(&ada, ada_fn, json!(null)).await.0,
            StatusCode::OK
        );
    }
    // Each call logs 32 x 64 KiB, kept to the function's 64 KiB cap.
    let entry = 64 << 10;
    let account = |token: String| {
        let platform = &platform;
        async move { platform.get("/account", Some(&token)).await.1 }
    };
    let used = |account: &Value| account["functions"][0]["log_entries"]["used"].as_u64();
    let ada_account = eventually("ada's 8 calls logged", Duration::from_secs(30), || async {
        let account = account(ada.clone()).await;
        // The 8th call's entry is there once the newest entry is its.
        let (_, logs) = platform
            .get(&format!("/functions/{ada_fn}/logs"), Some(&ada))
            .await;
        (used(&account) == Some(5) && logs["logs"].as_array()?.len() == 5).then_some(account)
    })
    .await;
    assert_eq!(
        ada_account["functions"][0]["log_bytes"],
        json!({"used": 5 * entry, "limit": 5 * entry}),
        "{ada_account}"
    );
    let bob_account = eventually("bob's call logged", Duration::from_secs(30), || async {
        let account = account(bob.clone()).await;
        (used(&account) == Some(1)).then_some(account)
    })
    .await;
    assert_eq!(
        bob_account["functions"][0]["log_bytes"]["used"], entry,
        "{bob_account}"
    );
    let (_, bob_logs) = platform
        .get(&format!("/functions/{bob_fn}/logs"), Some(&bob))
        .await;
    assert_eq!(bob_logs["logs"].as_array().unwrap().len(), 1, "{bob_logs}");

    // A deleted function's logs go with it.
    let (status, _) = platform
        .delete(&format!("/functions/{ada_fn}"), Some(&ada))
        .await;
    assert_eq!(status, StatusCode::OK);
    let left = logs
        .get_last_raw_message_by_subject(&nimbus_core::subjects::logs(ada_fn))
        .await;
    assert!(left.is_err(), "a deleted function's logs are kept");
    assert!(
        logs.get_last_raw_message_by_subject(&nimbus_core::subjects::logs(bob_fn))
            .await
            .is_ok()
    );
}
