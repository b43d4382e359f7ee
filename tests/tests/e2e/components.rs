//! WASI 0.2 components on the engine, built from tests/guests for
//! wasm32-wasip2: both worlds, refused imports, every limit against a hostile
//! handler, and the engine still serving after each.

use std::time::Duration;

use bytes::Bytes;
use nimbus_core::wire::{HttpRequest, RequestHead};
use nimbus_core::{FunctionErrorKind, Limits};
use nimbus_engine::{Abi, CompileError, CompiledModule, Engine, EngineConfig};
use serde_json::Value;

/// A component built by the build script from tests/guests.
pub fn component(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}.wasm", env!("NIMBUS_COMPONENTS_WASM_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compile(engine: &Engine, name: &str) -> std::sync::Arc<CompiledModule> {
    engine.compile(&component(name)).expect(name).0
}

fn request(method: &str, path: &str, body: &'static [u8]) -> HttpRequest {
    HttpRequest {
        head: RequestHead {
            method: method.into(),
            path: path.into(),
            headers: vec![
                ("x-one".into(), "1".into()),
                ("x-two".into(), "a".into()),
                ("x-two".into(), "b".into()),
            ],
        },
        body: Bytes::from_static(body),
    }
}

fn limits() -> Limits {
    Limits {
        timeout_ms: 2_000,
        ..Limits::DEFAULT
    }
}

#[tokio::test]
async fn components_are_recognised_by_their_world() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    assert_eq!(compile(&engine, "http_probe").abi(), &Abi::HttpComponent);
    assert_eq!(compile(&engine, "cli-add").abi(), &Abi::CliComponent);
}

/// A component importing an interface the platform does not offer.
pub const MESSAGING_COMPONENT: &str = r#"
(component
  (import "wasi:messaging/producer@0.2.0-draft" (instance))
)
"#;

#[tokio::test]
async fn a_component_importing_what_no_function_may_use_is_refused_naming_the_import() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let error = engine.compile(MESSAGING_COMPONENT.as_bytes()).unwrap_err();
    let CompileError::ForbiddenImport(message) = &error else {
        panic!("{error:?}");
    };
    assert!(
        message.contains("`wasi:messaging/producer@0.2.0-draft`"),
        "{message}"
    );
    // wasi:keyvalue is offered at 0.2.0-draft2 only: another draft, whose
    // types differ, is refused at upload, not at its first call.
    let older = r#"(component (import "wasi:keyvalue/store@0.2.0-draft" (instance)))"#;
    let error = engine.compile(older.as_bytes()).unwrap_err();
    let CompileError::ForbiddenImport(message) = &error else {
        panic!("{error:?}");
    };
    assert!(
        message.contains("wasi:keyvalue/store@0.2.0-draft"),
        "{message}"
    );
    // Nothing exported that the platform can call.
    let error = engine.compile(b"(component)").unwrap_err();
    assert!(matches!(error, CompileError::NoEntryPoint(_)), "{error:?}");
}

#[tokio::test]
async fn sockets_are_linked_but_every_use_is_denied() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    // Its `TcpStream::connect("127.0.0.1:9")` fails: it prints `false`.
    let sockets = compile(&engine, "cli-sockets");
    let outcome = engine
        .invoke(&sockets, Bytes::from_static(b"null"), &limits())
        .await;
    assert_eq!(&outcome.result.unwrap()[..], b"false");
}

#[tokio::test]
async fn an_http_handler_gets_the_request_as_sent_and_its_response_comes_back_as_written() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let probe = compile(&engine, "http_probe");
    let outcome = engine
        .serve(&probe, request("PUT", "/a/b?c=1", b"hello body"), &limits())
        .await;
    let response = outcome.result.expect("served");
    assert_eq!(response.head.status, 200);
    assert!(
        response
            .head
            .headers
            .contains(&("x-probe".into(), "1".into())),
        "{:?}",
        response.head.headers
    );
    let echo: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/a/b?c=1");
    assert_eq!(echo["body"], "hello body");
    let headers = echo["headers"].as_array().unwrap();
    for pair in [["x-one", "1"], ["x-two", "a"], ["x-two", "b"]] {
        assert!(headers.contains(&serde_json::json!(pair)), "{headers:?}");
    }
    assert!(outcome.fuel_consumed > 0);

    let teapot = engine
        .serve(&probe, request("GET", "/status/418", b""), &limits())
        .await;
    assert_eq!(teapot.result.unwrap().head.status, 418);
}

#[tokio::test]
async fn fuel_is_the_same_for_the_same_request() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let probe = compile(&engine, "http_probe");
    let mut fuel = Vec::new();
    for _ in 0..10 {
        let outcome = engine
            .serve(
                &probe,
                request("POST", "/add", b"{\"input\": 41}"),
                &limits(),
            )
            .await;
        assert_eq!(&outcome.result.unwrap().body[..], b"{\"result\":42}");
        fuel.push(outcome.fuel_consumed);
    }
    assert!(fuel.windows(2).all(|w| w[0] == w[1]), "{fuel:?}");
}

#[tokio::test]
async fn an_http_handler_called_with_json_answers_its_body_as_the_result() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let probe = compile(&engine, "http_probe");
    // `execute` sends `POST /`: the probe echoes, which is JSON.
    let outcome = engine
        .invoke(&probe, Bytes::from_static(b"{\"x\":1}"), &limits())
        .await;
    let echo: Value = serde_json::from_slice(&outcome.result.unwrap()).unwrap();
    assert_eq!(
        (echo["method"].as_str(), echo["path"].as_str()),
        (Some("POST"), Some("/"))
    );
    assert_eq!(echo["body"], "{\"x\":1}");
}

#[tokio::test]
async fn a_cli_component_reads_stdin_and_writes_stdout() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let add = compile(&engine, "cli-add");
    let outcome = engine
        .invoke(&add, Bytes::from_static(b"41"), &limits())
        .await;
    assert_eq!(&outcome.result.unwrap()[..], b"42");
    assert!(String::from_utf8_lossy(&outcome.logs).contains("cli-add got 2 bytes"));
    assert!(outcome.fuel_consumed > 0);

    let failed = engine
        .invoke(&add, Bytes::from_static(b"\"x\""), &limits())
        .await;
    let error = failed.result.unwrap_err();
    assert_eq!(error.kind, FunctionErrorKind::Exit, "{error:?}");
    assert!(error.message.contains("expected a number"), "{error:?}");
}

/// Every hostile request is stopped with its own error, and the engine
/// answers a normal request right after each.
#[tokio::test]
async fn hostile_handlers_are_stopped_by_the_limits_and_the_engine_keeps_serving() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let probe = compile(&engine, "http_probe");
    let tight = Limits {
        fuel: 2_000_000_000,
        memory_bytes: 32 << 20,
        timeout_ms: 60_000,
        max_output_bytes: 64 << 10,
        ..Limits::DEFAULT
    };
    let short = Limits {
        fuel: u64::MAX / 2,
        timeout_ms: 300,
        ..tight
    };
    let cases = [
        ("/loop", tight, FunctionErrorKind::OutOfFuel),
        ("/loop", short, FunctionErrorKind::Timeout),
        ("/grow", tight, FunctionErrorKind::MemoryLimit),
        (
            "/big?bytes=1000000",
            tight,
            FunctionErrorKind::OutputTooLarge,
        ),
        ("/recurse", tight, FunctionErrorKind::Trap),
    ];
    for (path, case_limits, kind) in cases {
        let outcome = tokio::time::timeout(
            Duration::from_secs(60),
            engine.serve(&probe, request("GET", path, b""), &case_limits),
        )
        .await
        .unwrap_or_else(|_| panic!("{path} was not stopped"));
        let error = outcome.result.expect_err(path);
        assert_eq!(error.kind, kind, "{path}: {error:?}");
        assert!(error.fuel_consumed > 0, "{path}: {error:?}");
        let next = engine
            .serve(&probe, request("GET", "/ok", b""), &limits())
            .await;
        assert_eq!(
            next.result.expect("serving after").head.status,
            200,
            "after {path}"
        );
    }
    // A request body past the input cap is refused before anything runs.
    let big_input = Limits {
        max_input_bytes: 4,
        ..limits()
    };
    let refused = engine
        .serve(&probe, request("POST", "/", b"too long"), &big_input)
        .await;
    assert_eq!(
        refused.result.unwrap_err().kind,
        FunctionErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn outbound_http_is_denied() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let probe = compile(&engine, "http_probe");
    let outcome = engine
        .serve(&probe, request("GET", "/outbound", b""), &limits())
        .await;
    let body = outcome.result.unwrap().body;
    assert_eq!(
        String::from_utf8_lossy(&body),
        "ErrorCode::HttpRequestDenied"
    );
}

#[tokio::test]
async fn a_component_artifact_loads_back_and_serves() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let probe = compile(&engine, "http_probe");
    let artifact = engine.serialize(&probe).unwrap().expect("native code");
    let other = Engine::new(EngineConfig::default()).unwrap();
    let loaded = other.load_precompiled(probe.digest(), &artifact).unwrap();
    assert_eq!(loaded.abi(), &Abi::HttpComponent);
    let outcome = other
        .serve(&loaded, request("GET", "/status/204", b""), &limits())
        .await;
    assert_eq!(outcome.result.unwrap().head.status, 204);
}
