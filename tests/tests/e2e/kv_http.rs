//! Key-value stores as their owners see them: `/kv` over HTTP and the CLI's
//! client, conditional writes, listing by prefix a page at a time, the
//! per-owner quota (keys, bytes, stores) with usage that follows deletes,
//! and one owner's stores invisible to another.

use nimbus_api::ApiConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Platform, Setup, assert_error};

/// A raw request to `/kv...`: status, `ETag`, body bytes.
async fn raw(
    platform: &Platform,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>, Vec<u8>) {
    let mut request = platform
        .http
        .request(method, platform.url(path))
        .bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, etag, response.bytes().await.unwrap().to_vec())
}

async fn put(platform: &Platform, token: &str, path: &str, value: &str) -> (StatusCode, Value) {
    platform
        .send(
            Method::PUT,
            path,
            Some(token),
            Some(("application/octet-stream", value.as_bytes().to_vec())),
        )
        .await
}

#[tokio::test]
async fn owners_read_write_list_and_compare_and_set_their_keys() {
    let platform = Platform::start().await;
    let ada = platform.user("ada").await;

    let (status, written) = put(&platform, &ada, "/kv/default/greeting", "hello").await;
    assert_eq!(status, StatusCode::OK, "{written}");
    let revision = written["revision"].as_u64().unwrap();
    let (status, etag, value) = raw(
        &platform,
        Method::GET,
        "/kv/default/greeting",
        &ada,
        None,
        &[],
    )
    .await;
    assert_eq!((status, value.as_slice()), (StatusCode::OK, &b"hello"[..]));
    assert_eq!(etag, Some(format!("\"{revision}\"")));

    // Conditional writes: only at the revision named, only if absent.
    let stale = format!("\"{}\"", revision + 1000);
    let stale = [("if-match", stale.as_str())];
    let (status, _, body) = raw(
        &platform,
        Method::PUT,
        "/kv/default/greeting",
        &ada,
        Some("x"),
        &stale,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let absent = [("if-none-match", "*")];
    let (status, _, _) = raw(
        &platform,
        Method::PUT,
        "/kv/default/greeting",
        &ada,
        Some("x"),
        &absent,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let current = format!("\"{revision}\"");
    let (status, etag, _) = raw(
        &platform,
        Method::PUT,
        "/kv/default/greeting",
        &ada,
        Some("hi"),
        &[("if-match", &current)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(etag, Some(current), "a write makes a new revision");
    let (status, _, _) = raw(
        &platform,
        Method::PUT,
        "/kv/default/new",
        &ada,
        Some("n"),
        &absent,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // `If-Match: *` needs the key; a weak or malformed tag is refused;
    // deletes are conditional too.
    let exists = [("if-match", "*")];
    let (status, _, _) = raw(
        &platform,
        Method::PUT,
        "/kv/default/none",
        &ada,
        Some("x"),
        &exists,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let weak = [("if-match", "W/\"1\"")];
    let (status, _, _) = raw(
        &platform,
        Method::PUT,
        "/kv/default/new",
        &ada,
        Some("x"),
        &weak,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = raw(
        &platform,
        Method::DELETE,
        "/kv/default/new",
        &ada,
        None,
        &stale,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (_, _, value) = raw(&platform, Method::GET, "/kv/default/new", &ada, None, &[]).await;
    assert_eq!(value, b"n", "a refused delete deletes nothing");

    // Keys may hold `/`, dots and any UTF-8; a prefix lists in byte order.
    for key in ["user/2", "user/10", "user/ü.x", "other"] {
        let path = format!("/kv/default/{}", key.replace('ü', "%C3%BC"));
        assert_eq!(put(&platform, &ada, &path, key).await.0, StatusCode::OK);
    }
    let (status, listed) = platform.get("/kv/default?prefix=user/", Some(&ada)).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["keys"], json!(["user/10", "user/2", "user/ü.x"]));
    assert_eq!(listed["cursor"], Value::Null);
    let (_, _, value) = raw(
        &platform,
        Method::GET,
        "/kv/default/user/%C3%BC.x",
        &ada,
        None,
        &[],
    )
    .await;
    assert_eq!(value, "user/ü.x".as_bytes());

    // Deleted: gone from reads and listings, and from the usage.
    let (status, _, _) = raw(
        &platform,
        Method::DELETE,
        "/kv/default/other",
        &ada,
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        platform.get("/kv/default/other", Some(&ada)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (_, stores) = platform.get("/kv", Some(&ada)).await;
    assert_eq!(stores["stores"][0]["name"], "default", "{stores}");
    assert_eq!(stores["stores"][0]["keys"], 5, "{stores}");
    let (_, account) = platform.get("/account", Some(&ada)).await;
    assert_eq!(account["quotas"]["kv"]["keys"]["used"], 5, "{account}");

    // Bad names and sizes are refused with the error format.
    assert_error(
        put(&platform, &ada, "/kv/Bad!/k", "v").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let big = "x".repeat(nimbus_core::kv::MAX_VALUE_BYTES + 1);
    assert_error(
        put(&platform, &ada, "/kv/default/big", &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    // Another owner's `default` is another store.
    let bob = platform.user("bob").await;
    assert_error(
        platform.get("/kv/default/greeting", Some(&bob)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (_, listed) = platform.get("/kv/default", Some(&bob)).await;
    assert_eq!(listed["keys"], json!([]));
    assert_error(
        platform.get("/kv", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

#[tokio::test]
async fn listings_page_through_more_keys_than_one_page_and_the_client_follows() {
    let platform = Platform::start().await;
    let ada = platform.user("ada").await;
    let client = nimbus_cli::client::Client::new(&platform.url(""), Some(ada.clone()));
    let total = nimbus_core::kv::LIST_PAGE + 5;
    use futures::StreamExt;
    let written: Vec<_> = futures::stream::iter(0..total)
        .map(|i| {
            let client = &client;
            async move { client.kv_put("many", &format!("k{i:05}"), vec![b'v']).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(written.iter().all(Result::is_ok), "every write succeeds");
    let (_, first) = platform.get("/kv/many", Some(&ada)).await;
    assert_eq!(
        first["keys"].as_array().unwrap().len(),
        nimbus_core::kv::LIST_PAGE
    );
    let cursor = first["cursor"].as_str().expect("a next page").to_owned();
    let (_, second) = platform
        .get(&format!("/kv/many?cursor={cursor}"), Some(&ada))
        .await;
    assert_eq!(second["keys"].as_array().unwrap().len(), 5, "{second}");
    assert_eq!(second["cursor"], Value::Null);

    let keys = client.kv_keys("many", "").await.unwrap();
    let expected: Vec<String> = (0..total).map(|i| format!("k{i:05}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(client.kv_get("many", "k00007").await.unwrap(), b"v");
    let stores = client.kv_stores().await.unwrap();
    assert_eq!(
        (stores[0].name.as_str(), stores[0].keys),
        ("many", total as u64)
    );
    client.kv_delete("many", "k00007").await.unwrap();
    assert!(client.kv_get("many", "k00007").await.is_err());
}

#[tokio::test]
async fn quotas_bound_keys_bytes_and_stores_and_deletes_give_room_back() {
    let platform = Platform::start_with(Setup {
        api: ApiConfig {
            kv_quota: nimbus_core::kv::KvQuota {
                keys: 3,
                bytes: 64,
                stores: 2,
            },
            ..Setup::default().api
        },
        ..Setup::default()
    })
    .await;
    let ada = platform.user("ada").await;
    for key in ["a", "b", "c"] {
        assert_eq!(
            put(&platform, &ada, &format!("/kv/default/{key}"), "1")
                .await
                .0,
            StatusCode::OK
        );
    }
    assert_error(
        put(&platform, &ada, "/kv/default/d", "1").await,
        StatusCode::FORBIDDEN,
        "quota_exceeded",
    );
    // Replacing a value adds no key; growing past the bytes does not pass.
    assert_eq!(
        put(&platform, &ada, "/kv/default/a", "2").await.0,
        StatusCode::OK
    );
    assert_error(
        put(&platform, &ada, "/kv/default/a", &"x".repeat(64)).await,
        StatusCode::FORBIDDEN,
        "quota_exceeded",
    );
    let (_, _, value) = raw(&platform, Method::GET, "/kv/default/a", &ada, None, &[]).await;
    assert_eq!(value, b"2", "a refused write changes nothing");
    // A delete gives its room back; a third store is one too many.
    assert_eq!(
        raw(&platform, Method::DELETE, "/kv/default/c", &ada, None, &[])
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put(&platform, &ada, "/kv/second/x", "1").await.0,
        StatusCode::OK
    );
    assert_eq!(
        raw(&platform, Method::DELETE, "/kv/default/b", &ada, None, &[])
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        put(&platform, &ada, "/kv/third/x", "1").await,
        StatusCode::FORBIDDEN,
        "quota_exceeded",
    );
    let (_, account) = platform.get("/account", Some(&ada)).await;
    let kv = &account["quotas"]["kv"];
    assert_eq!(
        (kv["keys"]["used"].as_u64(), kv["stores"]["used"].as_u64()),
        (Some(2), Some(2)),
        "{account}"
    );
    assert_eq!(kv["bytes"]["used"], 4, "keys and values: a=2, x=1");
    // The quota is per owner.
    let bob = platform.user("bob").await;
    assert_eq!(
        put(&platform, &bob, "/kv/default/d", "1").await.0,
        StatusCode::OK
    );
}
