//! Outbound HTTP from components: only to the hosts a function is allowed,
//! only to public addresses unless the operator allows private ones (the
//! check is on the resolved address), never to the platform's NATS,
//! redirects checked like any request,
//! a bounded number of requests and bytes per invocation, and the network
//! wait inside the deadline. The servers called are real, on loopback.

use std::time::Duration;

use nimbus_engine::Reach;
use nimbus_worker::WorkerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::components::component;
use crate::examples::rust_example;
use crate::harness::{Platform, Setup, assert_error};
use crate::outbound_server::Server;

/// Deploy the probe as `name`, allowed `hosts`, with extra query `limits`.
async fn deploy(
    platform: &Platform,
    token: &str,
    name: &str,
    hosts: &[String],
    limits: &str,
) -> (StatusCode, Value) {
    platform
        .send(
            Method::POST,
            &format!(
                "/functions?name={name}&allowed_outbound_hosts={}{limits}",
                hosts.join(",")
            ),
            Some(token),
            Some(("application/wasm", component("http_probe"))),
        )
        .await
}

/// What the probe `name` got fetching `url` `n` times.
async fn fetch(platform: &Platform, token: &str, name: &str, n: u32, url: &str) -> Value {
    let (status, body) = platform
        .get(
            &format!("/fn/ada/{name}/fetch?n={n}&url={url}"),
            Some(token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn outbound_platform(allow_private: bool) -> Setup {
    outbound_platform_reaching(Reach {
        private: allow_private,
        ..Reach::default()
    })
}

fn outbound_platform_reaching(reach: Reach) -> Setup {
    Setup {
        worker: WorkerConfig {
            outbound_reach: reach,
            max_outbound_requests: 3,
            ..Setup::default().worker
        },
        ..Setup::default()
    }
}

/// The platform's NATS server, as a function would name it.
fn nats_host(platform: &Platform) -> String {
    let url = platform.nats_url();
    let port = url.rsplit(':').next().unwrap().trim_end_matches('/');
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn only_allowed_hosts_are_reached_within_the_request_cap() {
    let platform = Platform::start_with(outbound_platform(true)).await;
    let ada = platform.user("ada").await;
    let (a, b) = (Server::start().await, Server::start().await);
    let host_a = format!("http://127.0.0.1:{}", a.port);
    let (status, created) =
        deploy(&platform, &ada, "probe", std::slice::from_ref(&host_a), "").await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["allowed_outbound_hosts"], json!([host_a]));

    let hello = format!("hello from {}", a.port);
    assert_eq!(
        fetch(&platform, &ada, "probe", 1, &a.url("/hello")).await,
        json!([{"status": 200, "body": hello, "redirects": 0}])
    );
    // Another port of the same address is another host: refused before
    // anything is sent, and so is a redirect there.
    assert_eq!(
        fetch(&platform, &ada, "probe", 1, &b.url("/hello")).await,
        json!([{"error": "ErrorCode::HttpRequestDenied"}])
    );
    let redirect = a.url(&format!("/redirect?to={}", b.url("/hello")));
    assert_eq!(
        fetch(&platform, &ada, "probe", 1, &redirect).await,
        json!([{"error": "ErrorCode::HttpRequestDenied"}])
    );
    assert_eq!(b.hits(), 0, "nothing reached the host not allowed");
    // A redirect to an allowed host is followed.
    let redirect = a.url(&format!("/redirect?to={}", a.url("/hello")));
    assert_eq!(
        fetch(&platform, &ada, "probe", 1, &redirect).await[0]["redirects"],
        1
    );
    // Three requests per invocation (this worker's cap), then no more.
    let capped = fetch(&platform, &ada, "probe", 4, &a.url("/hello")).await;
    for ok in &capped.as_array().unwrap()[..3] {
        assert_eq!(ok["status"], 200, "{capped}");
    }
    assert_eq!(
        capped[3],
        json!({"error": "ErrorCode::ConnectionLimitReached"}),
        "{capped}"
    );

    // Allowing the other host takes a PATCH; a bad pattern is refused.
    let change = |hosts: Value| {
        let body = json!({ "allowed_outbound_hosts": hosts })
            .to_string()
            .into_bytes();
        let path = format!("/functions/{}", created["id"]);
        let platform = &platform;
        let ada = &ada;
        async move {
            platform
                .send(
                    Method::PATCH,
                    &path,
                    Some(ada),
                    Some(("application/json", body)),
                )
                .await
        }
    };
    assert_error(
        change(json!(["127.0.0.1"])).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let (status, meta) = change(json!([host_a, "http://127.0.0.1:*"])).await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    let reached = crate::harness::eventually(
        "the new allow-list applies",
        Duration::from_secs(10),
        || async {
            let got = fetch(&platform, &ada, "probe", 1, &b.url("/hello")).await;
            (got[0]["status"] == 200).then_some(got)
        },
    )
    .await;
    assert_eq!(reached[0]["body"], format!("hello from {}", b.port));
    // Every port of loopback allowed, private addresses too: the platform's
    // NATS server is still refused.
    assert_eq!(
        fetch(&platform, &ada, "probe", 1, &nats_host(&platform)).await,
        json!([{"error": "ErrorCode::DestinationIpProhibited"}])
    );

    assert_error(
        deploy(&platform, &ada, "bad", &["ftp://example.com".into()], "").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

#[tokio::test]
async fn private_addresses_are_refused_unless_the_operator_allows_them() {
    let platform = Platform::start_with(outbound_platform(false)).await;
    let ada = platform.user("ada").await;
    let server = Server::start().await;
    // Allowed by the function, by address and by a name that resolves to
    // loopback: the platform refuses both on the address it would connect to.
    let hosts = [
        format!("http://127.0.0.1:{}", server.port),
        format!("http://localhost:{}", server.port),
    ];
    let (status, body) = deploy(&platform, &ada, "probe", &hosts, "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for url in [
        server.url("/hello"),
        format!("http://localhost:{}/hello", server.port),
    ] {
        assert_eq!(
            fetch(&platform, &ada, "probe", 1, &url).await,
            json!([{"error": "ErrorCode::DestinationIpProhibited"}]),
            "{url}"
        );
    }
    // JavaScript's fetch goes through the same check.
    let (status, js) = platform
        .post_json(
            "/functions",
            Some(&ada),
            &json!({"code": FETCH_JS, "allowed_outbound_hosts": hosts}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{js}");
    let (status, body) = platform
        .execute(
            &ada,
            js["id"].as_u64().unwrap(),
            json!({ "url": server.url("/hello") }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["result"],
        json!({"error": "TypeError: fetch failed: DestinationIpProhibited"})
    );
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn an_allowed_private_network_opens_only_itself_redirects_and_nats_included() {
    let reach = Reach {
        networks: vec!["127.0.0.1/32".parse().unwrap()],
        ..Reach::default()
    };
    let platform = Platform::start_with(outbound_platform_reaching(reach)).await;
    let ada = platform.user("ada").await;
    let (inside, outside) = (
        Server::start_on("127.0.0.1").await,
        Server::start_on("127.0.0.2").await,
    );
    // The function may call both; the operator's network holds one.
    let hosts = [
        "http://127.0.0.1:*".to_owned(),
        "http://127.0.0.2:*".to_owned(),
    ];
    let (status, body) = deploy(&platform, &ada, "probe", &hosts, "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        fetch(&platform, &ada, "probe", 1, &inside.url("/hello")).await,
        json!([{"status": 200, "body": format!("hello from {}", inside.port), "redirects": 0}])
    );
    let refused = json!([{"error": "ErrorCode::DestinationIpProhibited"}]);
    assert_eq!(
        fetch(&platform, &ada, "probe", 1, &outside.url("/hello")).await,
        refused
    );
    // A redirect from the allowed network to a private address outside it
    // is refused like a request made there directly.
    let redirect = inside.url(&format!("/redirect?to={}", outside.url("/hello")));
    assert_eq!(fetch(&platform, &ada, "probe", 1, &redirect).await, refused);
    assert_eq!(inside.hits(), 2, "the redirect itself was served");
    assert_eq!(outside.hits(), 0, "nothing reached the address outside");
    // NATS listens inside the allowed network: still refused.
    assert_eq!(
        fetch(&platform, &ada, "probe", 1, &nats_host(&platform)).await,
        refused
    );
}

#[tokio::test]
async fn responses_are_capped_and_the_network_wait_counts_against_the_deadline() {
    let platform = Platform::start_with(outbound_platform(true)).await;
    let ada = platform.user("ada").await;
    let server = Server::start().await;
    let hosts = [format!("http://127.0.0.1:{}", server.port)];
    let limits = "&max_input_bytes=1000&timeout_ms=1000";
    let (status, body) = deploy(&platform, &ada, "probe", &hosts, limits).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let small = fetch(&platform, &ada, "probe", 1, &server.url("/big?bytes=900")).await;
    assert_eq!(small[0]["status"], 200, "{small}");
    let big = fetch(&platform, &ada, "probe", 1, &server.url("/big?bytes=5000")).await;
    assert_eq!(
        big,
        json!([{"error": "reading the body: HTTP response body size exceeds limit: 1000 bytes"}]),
        "a response over max_input_bytes"
    );

    let started = std::time::Instant::now();
    let (status, body) = platform
        .get(
            &format!("/fn/ada/probe/fetch?url={}", server.url("/hang")),
            Some(&ada),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["kind"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("timeout")),
        "{body}"
    );
    // A deadline of 1 s, the dispatch grace of 5 s: far less than the
    // 300 s the server would hold the request.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// A JavaScript function that fetches `input.url` and answers what came
/// back (status and body, or the error's message).
const FETCH_JS: &str = r#"
async function handler(input) {
  try {
    const response = await fetch(input.url, { headers: { 'x-from': 'js', 'host': 'evil.example' } });
    return { status: response.status, ok: response.ok, body: await response.text() };
  } catch (e) {
    return { error: `${e.name}: ${e.message}` };
  }
}"#;

#[tokio::test]
async fn javascript_and_rust_sdk_functions_call_out_through_the_same_checks() {
    let platform = Platform::start_with(outbound_platform(true)).await;
    let ada = platform.user("ada").await;
    let (a, b) = (Server::start().await, Server::start().await);
    let allowed = json!([format!("http://127.0.0.1:{}", a.port)]);

    let (status, js) = platform
        .post_json(
            "/functions",
            Some(&ada),
            &json!({"code": FETCH_JS, "allowed_outbound_hosts": allowed}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{js}");
    let js = js["id"].as_u64().unwrap();
    let run = |id: u64, url: String| {
        let platform = &platform;
        let ada = &ada;
        async move {
            let (status, body) = platform.execute(ada, id, json!({ "url": url })).await;
            (status, body)
        }
    };
    let (status, body) = run(js, a.url("/hello")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["result"],
        json!({"status": 200, "ok": true, "body": format!("hello from {}", a.port)})
    );
    let (_, body) = run(js, b.url("/hello")).await;
    assert_eq!(
        body["result"],
        json!({"error": "TypeError: fetch failed: HttpRequestDenied"})
    );
    let with_credentials = format!("http://user:pw@127.0.0.1:{}/hello", a.port);
    let (_, body) = run(js, with_credentials).await;
    assert_eq!(
        body["result"],
        json!({"error": "TypeError: fetch failed: HttpRequestUriInvalid"})
    );
    // The platform sets Host to the checked host, whatever the guest says
    // (it would pick another virtual host at the same address).
    let (_, body) = run(js, a.url("/headers")).await;
    let seen = body["result"]["body"].as_str().unwrap().to_owned();
    assert!(
        seen.contains(&format!("host: 127.0.0.1:{}", a.port)),
        "{seen}"
    );
    assert!(seen.contains("x-from: js"), "{seen}");
    assert!(!seen.contains("evil.example"), "{seen}");

    // A Request object, with a method and a body, under the function's
    // output cap (1000 bytes here) for what it sends.
    let request_js = r#"async function handler(input) {
        const request = new Request(input.url, { method: 'PUT', body: 'x'.repeat(input.bytes) });
        try {
            const response = await fetch(request);
            return { status: response.status, body: await response.text() };
        } catch (e) { return { error: `${e.name}: ${e.message}` }; }
    }"#;
    let (status, sender) = platform
        .post_json(
            "/functions",
            Some(&ada),
            &json!({"code": request_js, "allowed_outbound_hosts": allowed,
                    "limits": {"max_output_bytes": 1000}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sender}");
    let sender = sender["id"].as_u64().unwrap();
    let send = |bytes: usize| {
        let platform = &platform;
        let ada = &ada;
        let url = a.url("/echo");
        async move {
            let (status, body) = platform
                .execute(ada, sender, json!({ "url": url, "bytes": bytes }))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["result"].clone()
        }
    };
    assert_eq!(
        send(10).await,
        json!({"status": 200, "body": format!("PUT {}", "x".repeat(10))})
    );
    let hits = a.hits();
    let too_big = send(5000).await;
    assert!(
        too_big["error"]
            .as_str()
            .is_some_and(|e| e.contains("HttpRequestBodySize")),
        "{too_big}"
    );
    assert_eq!(a.hits(), hits, "a body over the cap is not sent");

    // Refused attempts count against the cap (3 here) like sent ones.
    let loop_js = r#"async function handler(input) {
        const out = [];
        for (let i = 0; i < 4; i++) {
            try { await fetch(input.url); out.push('sent'); } catch (e) { out.push(e.message); }
        }
        return out;
    }"#;
    let (status, looping) = platform
        .post_json("/functions", Some(&ada), &json!({"code": loop_js}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{looping}");
    let (_, body) = run(looping["id"].as_u64().unwrap(), b.url("/hello")).await;
    let denied = "fetch failed: HttpRequestDenied";
    assert_eq!(
        body["result"],
        json!([
            denied,
            denied,
            denied,
            "fetch failed: ConnectionLimitReached"
        ])
    );

    // The Rust SDK's example (examples/functions/fetch), allowed by query.
    let wasm = rust_example("fetch");
    let (status, rust) = platform
        .send(
            Method::POST,
            &format!(
                "/functions?timeout_ms=60000&allowed_outbound_hosts=http://127.0.0.1:{}",
                a.port
            ),
            Some(&ada),
            Some(("application/wasm", wasm)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rust}");
    let rust = rust["id"].as_u64().unwrap();
    let (status, body) = run(rust, a.url("/hello")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["result"],
        json!({"status": 200, "body": format!("hello from {}", a.port)})
    );
    let refused = run(rust, b.url("/hello")).await;
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP request failed: HttpRequestDenied"),
        "{}",
        refused.1
    );
    assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "exit");
    assert_eq!(b.hits(), 0);

    // A module importing nimbus_http with another type is refused at upload.
    let wat = r#"(module (import "nimbus_http" "send" (func (param i64) (result i32)))
        (func (export "handle") (param i32) (result i32) local.get 0))"#;
    assert_error(
        platform
            .post_json("/functions", Some(&ada), &json!({ "code": wat }))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_module",
    );
}
