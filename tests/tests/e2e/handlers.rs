//! The API's handlers driven in-process with axum's `oneshot`, without NATS
//! or a socket: a detached `AppState` whose invocations go to a recording
//! dispatcher. What these cover does not need JetStream (extractors, body
//! limits, the execute path and the mapping of every reply to an answer);
//! the rest runs end to end in the other modules.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use futures::future::BoxFuture;
use nimbus_api::{ApiConfig, ApiError, AppState, Dispatch, JwtKeys};
use nimbus_core::wire::{Call, InvocationRecord, JobRequest, Reply, Success};
use nimbus_core::{FunctionError, FunctionErrorKind, FunctionMeta, Limits, Runtime, Username};
use nimbus_engine::{Engine, EngineConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &[u8] = b"handler-test-secret-0123456789abcdef";

/// What the recording dispatcher answers a call with.
type Answer = Box<dyn Fn() -> Result<Reply, ApiError> + Send + Sync>;

/// Records every call and answers it with `answer`.
struct Recording {
    answer: Answer,
    calls: Mutex<Vec<(Call, Bytes)>>,
}

impl Dispatch for Recording {
    fn call(
        &self,
        call: Call,
        input: Bytes,
        _wait: Duration,
    ) -> BoxFuture<'_, Result<Reply, ApiError>> {
        self.calls.lock().unwrap().push((call, input));
        Box::pin(async { (self.answer)() })
    }

    fn enqueue(&self, request: JobRequest) -> BoxFuture<'_, Result<InvocationRecord, ApiError>> {
        Box::pin(async move {
            Ok(InvocationRecord::queued(
                "0123456789abcdef0123456789abcdef".into(),
                request.function_id,
                request.caller,
                "now".into(),
            ))
        })
    }
}

struct Api {
    router: axum::Router,
    dispatch: Arc<Recording>,
    token: String,
}

/// A detached API that knows ada's function 7 (input capped at 32 bytes);
/// every call gets `answer`.
fn api(answer: impl Fn() -> Result<Reply, ApiError> + Send + Sync + 'static) -> Api {
    let config = ApiConfig {
        bcrypt_cost: 4,
        max_body_bytes: 1024,
        max_module_bytes: 2048,
        ..ApiConfig::default()
    };
    let engine = Engine::new(EngineConfig {
        pooling: false,
        max_concurrency: 1,
        ..EngineConfig::default()
    })
    .expect("engine");
    let dispatch = Arc::new(Recording {
        answer: Box::new(answer),
        calls: Mutex::new(Vec::new()),
    });
    let state = AppState::detached(config, dispatch.clone(), engine, SECRET).expect("state");
    state.functions().insert(FunctionMeta {
        id: 7,
        owner: Username::parse("ada").unwrap(),
        name: None,
        runtime: Runtime::Wat,
        world: None,
        access: Default::default(),
        digest: "d".repeat(64),
        size: 1,
        limits: Limits {
            max_input_bytes: 32,
            ..Limits::DEFAULT
        },
        created: "now".into(),
        config_revision: 0,
        allowed_outbound_hosts: Vec::new(),
        key_value_stores: Vec::new(),
    });
    Api {
        router: nimbus_api::app(state),
        dispatch,
        token: JwtKeys::new(SECRET, Duration::from_secs(60)).issue("ada"),
    }
}

fn ok(result: &'static str) -> impl Fn() -> Result<Reply, ApiError> + Send + Sync {
    move || {
        Ok(Reply::Ok(Success {
            result: Bytes::from_static(result.as_bytes()),
            fuel_consumed: 4,
            duration_us: 9,
            http: None,
        }))
    }
}

impl Api {
    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Bytes) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("answered");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
        (parts.status, parts.headers, body)
    }

    async fn execute(
        &self,
        path: &str,
        body: &'static str,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let request = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let (status, headers, body) = self.send(request).await;
        let json = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("JSON: {body:?}"));
        (status, headers, json)
    }
}

#[tokio::test]
async fn execute_hands_the_input_to_the_worker_byte_for_byte_and_the_result_back() {
    let api = api(ok(r#"{"sum": 3}"#));
    let request = Request::post("/functions/7/execute")
        .header(header::AUTHORIZATION, format!("Bearer {}", api.token))
        .body(Body::from(r#"{"input": {"a": [1,  2]}}"#))
        .unwrap();
    let (status, headers, body) = api.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        &body[..],
        br#"{"result":{"sum": 3},"fuel_consumed":4,"duration_us":9}"#
    );
    let calls = api.dispatch.calls.lock().unwrap();
    let (call, input) = &calls[0];
    assert_eq!(&input[..], br#"{"a": [1,  2]}"#);
    assert_eq!((call.function_id, call.caller.as_str()), (7, "ada"));
    assert_eq!(call.digest, "d".repeat(64));
}

#[tokio::test]
async fn an_empty_body_is_a_null_input() {
    let api = api(ok("null"));
    let (status, _, body) = api.execute("/functions/7/execute", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(&api.dispatch.calls.lock().unwrap()[0].1[..], b"null");
}

#[tokio::test]
async fn every_reply_maps_to_its_status_kind_and_source() {
    let fail = |kind| {
        move || {
            Ok(Reply::FunctionError(FunctionError {
                kind,
                message: "it failed".into(),
                fuel_consumed: 17,
            }))
        }
    };
    let cases: Vec<(Answer, StatusCode, &str, &str)> = vec![
        (
            Box::new(fail(FunctionErrorKind::Trap)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "trap",
            "function",
        ),
        (
            Box::new(fail(FunctionErrorKind::OutOfFuel)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "out_of_fuel",
            "function",
        ),
        (
            Box::new(fail(FunctionErrorKind::InvalidInput)),
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "function",
        ),
        (
            Box::new(|| Ok(Reply::PlatformError("module missing".into()))),
            StatusCode::BAD_GATEWAY,
            "worker_failed",
            "platform",
        ),
        (
            Box::new(|| Ok(Reply::Overloaded("full".into()))),
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "platform",
        ),
        (
            Box::new(|| Err(ApiError::no_worker())),
            StatusCode::SERVICE_UNAVAILABLE,
            "no_worker",
            "platform",
        ),
        (
            Box::new(|| Err(ApiError::worker_timeout(5))),
            StatusCode::GATEWAY_TIMEOUT,
            "worker_timeout",
            "platform",
        ),
    ];
    for (answer, status, kind, source) in cases {
        let api = api(answer);
        let (actual, headers, body) = api.execute("/functions/7/execute", r#"{"input": 1}"#).await;
        assert_eq!(actual, status, "{kind}: {body}");
        assert_eq!(body["error"]["kind"], kind, "{body}");
        assert_eq!(body["error"]["source"], source, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        if source == "function" {
            assert_eq!(body["error"]["fuel_consumed"], 17, "{body}");
        }
        assert_eq!(
            headers.contains_key(header::RETRY_AFTER),
            kind == "overloaded",
            "{kind}: Retry-After only where trying again helps"
        );
    }
}

#[tokio::test]
async fn input_over_the_functions_cap_is_refused_before_dispatch() {
    let api = api(ok("1"));
    let (status, _, body) = api
        .execute(
            "/functions/7/execute",
            r#"{"input": "0123456789012345678901234567890123456789"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["kind"], "invalid_input");
    assert!(api.dispatch.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_asynchronous_call_answers_202_with_where_to_follow_it() {
    let api = api(ok("1"));
    let (status, headers, body) = api
        .execute("/functions/7/execute?async=true", r#"{"input": 1}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(
        headers[header::LOCATION],
        format!("/invocations/{}", body["id"].as_str().unwrap())
    );
    assert!(api.dispatch.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn missing_forged_and_foreign_tokens_are_401_with_a_challenge() {
    let api = api(ok("1"));
    let forged = JwtKeys::new(
        b"another-secret-0123456789abcdef-xyz",
        Duration::from_secs(60),
    )
    .issue("ada");
    let invalid_user = JwtKeys::new(SECRET, Duration::from_secs(60)).issue("not a user");
    for authorization in [
        None,
        Some("Basic abc".to_owned()),
        Some(format!("Bearer {forged}")),
        Some(format!("Bearer {invalid_user}")),
    ] {
        let mut request = Request::get("/functions/7");
        if let Some(value) = &authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let (status, headers, body) = api.send(request.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["kind"], "unauthorized");
    }
    assert!(api.dispatch.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_token_is_enough_to_read_a_cached_function_without_jetstream() {
    let api = api(ok("1"));
    let request = Request::get("/functions/7")
        .header(header::AUTHORIZATION, format!("Bearer {}", api.token))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = api.send(request).await;
    assert_eq!(status, StatusCode::OK);
    let meta: FunctionMeta = serde_json::from_slice(&body).unwrap();
    assert_eq!((meta.id, meta.owner.as_str()), (7, "ada"));
}

#[tokio::test]
async fn without_a_secrets_key_variables_and_secrets_are_unavailable() {
    let api = api(ok("1"));
    for (method, path, body) in [
        ("PUT", "/functions/7/config", r#"{"vars": {"A": "1"}}"#),
        ("PUT", "/functions/7/secrets/A", "value"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", api.token))
            .body(Body::from(body))
            .unwrap();
        let (status, _, body) = api.send(request).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert!(text.contains("NIMBUS_SECRETS_KEY"), "{text}");
    }
}

#[tokio::test]
async fn bodies_over_their_caps_are_413_naming_the_cap() {
    let api = api(ok("1"));
    let send = |path: &str, content_type: &str, bytes: usize| {
        Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", api.token))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from("x".repeat(bytes)))
            .unwrap()
    };
    // Most routes: the general cap (1024 bytes here).
    let (status, _, body) = api
        .send(send("/functions/7/execute", "application/json", 4096))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["kind"], "payload_too_large");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("1024"),
        "{body}"
    );
    // Uploads: the module cap (2048 bytes here), far above the general one.
    let (status, _, body) = api.send(send("/functions", "application/wasm", 4096)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("2048"),
        "{body}"
    );
    let (status, _, body) = api.send(send("/functions", "application/wasm", 1500)).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_module")),
        "under the module cap, the engine reads it: {body}"
    );
}

#[tokio::test]
async fn malformed_bodies_unknown_routes_and_wrong_methods_are_named() {
    let api = api(ok("1"));
    let (status, _, body) = api.execute("/functions/7/execute", "[1]").await;
    assert_eq!(
        (status, body["error"]["kind"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );
    let (status, _, body) = api.execute("/functions/7/execute", "{\"input\": ").await;
    assert_eq!(
        (status, body["error"]["kind"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );
    let (status, _, body) = api.execute("/functions/abc/execute", "{}").await;
    assert_eq!(
        (status, body["error"]["kind"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    let (status, _, body) = api.execute("/nowhere", "{}").await;
    assert_eq!(
        (status, body["error"]["kind"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    let request = Request::put("/functions/7").body(Body::empty()).unwrap();
    let (status, _, body) = api.send(request).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, body["error"]["kind"].clone()),
        (StatusCode::METHOD_NOT_ALLOWED, json!("method_not_allowed"))
    );
}

#[tokio::test]
async fn a_remembered_token_still_expires() {
    // Valid for 0 s: accepted only within the 5 s leeway after its issue.
    let keys = JwtKeys::new(SECRET, Duration::ZERO);
    let token = keys.issue("ada");
    assert_eq!(keys.verify(&token).expect("fresh").sub, "ada");
    // Verified once, it is remembered; it must still stop working.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while keys.verify(&token).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "an expired token was still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A token that never verified is not let in by the memory either.
    let forged = JwtKeys::new(
        b"another-secret-0123456789abcdef-xyz",
        Duration::from_secs(60),
    )
    .issue("ada");
    assert!(keys.verify(&forged).is_err());
}
