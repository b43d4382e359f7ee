//! Function URLs against the whole platform: components and other functions
//! called on `/fn/{owner}/{name}`, public and private access, unique names,
//! `PATCH`, body caps, and hostile handlers through a real worker.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::components::component;
use crate::harness::{Platform, assert_error};

/// Deploy a raw wasm binary with `query` (`name=...&access=...`).
async fn deploy(p: &Platform, token: &str, wasm: Vec<u8>, query: &str) -> (StatusCode, Value) {
    p.send(
        Method::POST,
        &format!("/functions?{query}"),
        Some(token),
        Some(("application/wasm", wasm)),
    )
    .await
}

/// `PATCH /functions/{id}` with the JSON `body`.
async fn patch(p: &Platform, token: &str, id: u64, body: &str) -> (StatusCode, Value) {
    let body = Some(("application/json", body.as_bytes().to_vec()));
    p.send(
        Method::PATCH,
        &format!("/functions/{id}"),
        Some(token),
        body,
    )
    .await
}

/// A raw request to the platform: status, headers and body text.
async fn raw(
    p: &Platform,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut request = reqwest::Client::new()
        .request(method, p.url(path))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("HTTP request");
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.text().await.expect("body"))
}

fn headers_seen(echo: &Value) -> Vec<(String, String)> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_owned(),
                pair[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_public_http_component_answers_anyone_with_the_request_as_sent() {
    let p = Platform::start().await;
    let ada = p.user("ada").await;
    let (status, created) = deploy(
        &p,
        &ada,
        component("http_probe"),
        "name=probe&access=public",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["runtime"], "component");
    assert_eq!(created["world"], "wasi:http/proxy");
    assert_eq!(created["access"], "public");
    assert_eq!(created["url"], "/fn/ada/probe");

    let (status, headers, body) = raw(
        &p,
        Method::PUT,
        "/fn/ada/probe/orders/7?full=1",
        &[
            ("x-custom", "yes"),
            ("authorization", "Basic d2ViaG9vaw=="),
            ("x-nimbus-user", "mallory"),
        ],
        b"raw body",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-probe"], "1");
    assert!(
        headers["nimbus-fuel-consumed"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(headers.contains_key("nimbus-duration-us"));
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/orders/7?full=1");
    assert_eq!(echo["body"], "raw body");
    let seen = headers_seen(&echo);
    assert!(
        seen.contains(&("x-custom".into(), "yes".into())),
        "{seen:?}"
    );
    // Not a Nimbus token: the function's own business, passed on.
    assert!(
        seen.contains(&("authorization".into(), "Basic d2ViaG9vaw==".into())),
        "{seen:?}"
    );
    // A spoofed identity header never reaches the guest.
    assert!(
        !seen.iter().any(|(name, _)| name == "x-nimbus-user"),
        "{seen:?}"
    );

    // Its status and headers come back as written.
    let (status, _, body) = raw(&p, Method::GET, "/fn/ada/probe/status/418", &[], b"").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::IM_A_TEAPOT, "status 418")
    );

    // The same component through `execute`: JSON in, its JSON body out.
    let id = created["id"].as_u64().unwrap();
    let (status, body) = p.execute(&ada, id, json!({"x": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["method"], "POST");
    assert_eq!(body["result"]["body"], "{\"x\":1}");
    assert!(body["fuel_consumed"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn a_private_function_answers_only_its_owner_and_never_sees_the_token() {
    let p = Platform::start().await;
    let ada = p.user("ada").await;
    let bob = p.user("bob").await;
    let (status, created) = deploy(&p, &ada, component("http_probe"), "name=secret").await;
    assert_eq!(
        (status, &created["access"]),
        (StatusCode::CREATED, &json!("private"))
    );

    let anonymous = p.get("/fn/ada/secret", None).await;
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
    // Another user is told there is no such function.
    assert_error(
        p.get("/fn/ada/secret", Some(&bob)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (status, echo) = p.get("/fn/ada/secret/x", Some(&ada)).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    let seen = headers_seen(&echo);
    assert!(
        !seen.iter().any(|(name, _)| name == "authorization"),
        "{seen:?}"
    );

    // PATCH makes it public: anyone may call it now.
    let id = created["id"].as_u64().unwrap();
    let (status, meta) = patch(&p, &ada, id, r#"{"access": "public"}"#).await;
    assert_eq!(
        (status, &meta["access"]),
        (StatusCode::OK, &json!("public"))
    );
    let (status, _) = p.get("/fn/ada/secret", None).await;
    assert_eq!(status, StatusCode::OK);
    // Bob cannot change Ada's function.
    let (status, _) = patch(&p, &bob, id, r#"{"access": "private"}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn names_are_unique_per_owner_and_follow_renames_and_deletes() {
    let p = Platform::start().await;
    let ada = p.user("ada").await;
    let bob = p.user("bob").await;
    // A generous deadline: the first call waits for the worker to compile
    // the JavaScript snapshot, slow on a machine busy with other tests.
    let js = |name: &str| {
        json!({"code": "return input + 1;", "name": name, "access": "public",
               "limits": {"timeout_ms": 60000}})
    };
    let (status, first) = p.post_json("/functions", Some(&ada), &js("inc")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let duplicate = p.post_json("/functions", Some(&ada), &js("inc")).await;
    assert_error(duplicate, StatusCode::CONFLICT, "conflict");
    // Another owner may use the same name.
    let (status, _) = p.post_json("/functions", Some(&bob), &js("inc")).await;
    assert_eq!(status, StatusCode::CREATED);
    for bad in ["Inc", "a b", "-x", "a/b"] {
        let invalid = p.post_json("/functions", Some(&ada), &js(bad)).await;
        assert_error(invalid, StatusCode::BAD_REQUEST, "invalid_request");
    }

    // A JS function on its URL: the body is the input, the result the body.
    let (status, headers, body) = raw(&p, Method::POST, "/fn/ada/inc", &[], b"10").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "11"));
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.contains_key("nimbus-fuel-consumed"));
    let not_json = p
        .send(
            Method::POST,
            "/fn/ada/inc",
            None,
            Some(("text/plain", b"ten".to_vec())),
        )
        .await;
    assert_error(not_json, StatusCode::BAD_REQUEST, "invalid_input");

    // Rename: the old URL is gone, the new one answers, the old name is free.
    let id = first["id"].as_u64().unwrap();
    let (status, meta) = patch(&p, &ada, id, r#"{"name": "plus-one"}"#).await;
    assert_eq!(
        (status, &meta["name"]),
        (StatusCode::OK, &json!("plus-one"))
    );
    assert_error(
        p.get("/fn/ada/inc", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (status, _, body) = raw(&p, Method::POST, "/fn/ada/plus-one", &[], b"1").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "2"));
    let (status, _) = p.post_json("/functions", Some(&ada), &js("inc")).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a released name can be taken again"
    );

    // Delete: the URL answers 404 and the name is free again.
    let (status, _) = p.delete(&format!("/functions/{id}"), Some(&ada)).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        p.get("/fn/ada/plus-one", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (status, _) = p.post_json("/functions", Some(&ada), &js("plus-one")).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_cli_component_answers_on_its_url_and_through_execute() {
    let p = Platform::start().await;
    let ada = p.user("ada").await;
    let (status, created) = deploy(&p, &ada, component("cli-add"), "name=add&access=public").await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["world"], "wasi:cli/command");
    let (status, _, body) = raw(&p, Method::POST, "/fn/ada/add", &[], b"41").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "42"));
    let (status, body) = p
        .execute(&ada, created["id"].as_u64().unwrap(), json!(1))
        .await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(2)),
        "{body}"
    );
}

#[tokio::test]
async fn refused_components_and_capped_bodies() {
    let p = Platform::start().await;
    let ada = p.user("ada").await;
    let messaging = crate::components::MESSAGING_COMPONENT.as_bytes().to_vec();
    let refused = deploy(&p, &ada, messaging, "name=net").await;
    let message = refused.1["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_module");
    assert!(message.contains("wasi:messaging/producer"), "{message}");
    // Nothing was stored under the name.
    assert_error(
        p.get("/fn/ada/net", Some(&ada)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let (status, _) = deploy(
        &p,
        &ada,
        component("http_probe"),
        "name=probe&access=public&max_input_bytes=1024&max_output_bytes=4096&fuel=100000000&timeout_ms=10000",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let big = vec![b'x'; 2048];
    let too_big = p
        .send(
            Method::POST,
            "/fn/ada/probe",
            None,
            Some(("text/plain", big)),
        )
        .await;
    assert_error(too_big, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let (status, _, body) = raw(&p, Method::GET, "/fn/ada/probe/big?bytes=4096", &[], b"").await;
    assert_eq!((status, body.len()), (StatusCode::OK, 4096));
    let too_much = p.get("/fn/ada/probe/big?bytes=4097", None).await;
    assert_error(
        too_much,
        StatusCode::UNPROCESSABLE_ENTITY,
        "output_too_large",
    );
    // A handler that never ends is stopped (its fuel, 10^8, runs out well
    // within its 10 s); the worker serves the next call.
    let stopped = p.get("/fn/ada/probe/loop", None).await;
    assert_error(stopped, StatusCode::UNPROCESSABLE_ENTITY, "out_of_fuel");
    let (status, _) = p.get("/fn/ada/probe/ok", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_cli_client_deploys_a_public_component_and_calls_its_url() {
    let p = Platform::start().await;
    let ada = p.user("ada").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.wasm");
    std::fs::write(&file, component("http_probe")).unwrap();
    let owner = nimbus_cli::client::Client::new(&p.url(""), Some(ada));
    let created = owner
        .deploy(
            &file,
            &nimbus_cli::client::DeployOptions {
                name: Some("hook"),
                access: nimbus_core::Access::Public,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(created.url.as_deref(), Some("/fn/ada/hook"));
    let anonymous = nimbus_cli::client::Client::new(&p.url(""), None);
    let answer = anonymous
        .invoke_url("/fn/ada/hook/add", &json!({"input": 1}))
        .await
        .unwrap();
    assert_eq!(
        (answer.status, &answer.body[..]),
        (200, &b"{\"result\":2}"[..])
    );
    assert!(answer.fuel_consumed.unwrap() > 0);
    let missing = anonymous.invoke_url("/fn/ada/nope", &json!(null)).await;
    assert!(missing.unwrap_err().to_string().contains("not_found"));
}

/// A JavaScript function in the Workers module syntax.
const JS_FETCH: &str = r#"
export default {
  async fetch(request) {
    if (request.method === 'POST') {
      const { input } = await request.json();
      return Response.json({ result: input + 1 });
    }
    console.log('serving', request.url);
    return new Response(`hello ${request.method} ${request.url} ${request.headers.get('x-name')}`, {
      status: 201,
      headers: { 'content-type': 'text/plain', 'x-js': 'yes' },
    });
  }
};
"#;

#[tokio::test]
async fn a_javascript_fetch_handler_answers_http_fully() {
    let p = Platform::start().await;
    let ada = p.user("ada").await;
    let upload = json!({"code": JS_FETCH, "name": "js-web", "access": "public",
                        "limits": {"timeout_ms": 60000}});
    let (status, created) = p.post_json("/functions", Some(&ada), &upload).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        (&created["runtime"], &created["world"]),
        (&json!("js"), &json!("wasi:http/proxy"))
    );

    let (status, headers, body) = raw(
        &p,
        Method::GET,
        "/fn/ada/js-web/p?q=1",
        &[("x-name", "ada"), ("host", "example.test")],
        b"",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, "hello GET http://example.test/p?q=1 ada");
    assert_eq!(
        (&headers["x-js"], &headers["content-type"]),
        (&"yes".parse().unwrap(), &"text/plain".parse().unwrap())
    );
    assert!(
        headers["nimbus-fuel-consumed"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );

    let (status, _, body) = raw(&p, Method::POST, "/fn/ada/js-web", &[], b"{\"input\": 41}").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "{\"result\":42}"));

    // Through `execute`: the input is POSTed to `/`, the JSON answer is the result.
    let id = created["id"].as_u64().unwrap();
    let (status, body) = p.execute(&ada, id, json!({"input": 1})).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!({"result": 2})),
        "{body}"
    );
}
