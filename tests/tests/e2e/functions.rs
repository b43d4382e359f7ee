//! Uploading, listing, reading and deleting functions; ownership; bad input
//! that must leave nothing behind; persistence across a full restart.

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADD_WAT, Platform, Setup, assert_error};

#[tokio::test]
async fn users_only_see_and_touch_their_own_functions() {
    let platform = Platform::start().await;
    let alice = platform.user("alice").await;
    let bob = platform.user("bob").await;
    let id = platform.upload(&alice, ADD_WAT, None).await;

    let (_, listing) = platform.get("/functions", Some(&bob)).await;
    assert_eq!(listing, json!({"functions": []}));
    assert_error(
        platform.get(&format!("/functions/{id}"), Some(&bob)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        platform.execute(&bob, id, json!(1)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        platform
            .delete(&format!("/functions/{id}"), Some(&bob))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // Bob cannot create functions in Alice's name either (the seed's "user" field).
    assert_error(
        platform
            .post_json(
                "/functions",
                Some(&bob),
                &json!({"user": "alice", "code": ADD_WAT}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    // Alice's function is untouched.
    let (status, body) = platform.execute(&alice, id, json!(1)).await;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(2)));
    let (_, listing) = platform.get("/functions", Some(&alice)).await;
    let functions = listing["functions"].as_array().unwrap();
    assert_eq!(functions.len(), 1);
    assert_eq!(functions[0]["id"], id);
    assert_eq!(functions[0]["owner"], "alice");
    let (status, meta) = platform
        .get(&format!("/functions/{id}"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::OK);
    for field in ["runtime", "digest", "size", "limits", "created"] {
        assert!(!meta[field].is_null(), "metadata has {field}: {meta}");
    }
}

#[tokio::test]
async fn bad_uploads_are_refused_and_store_nothing() {
    let platform = Platform::start().await;
    let token = platform.user("alice").await;
    let upload = |body: Value| {
        let platform = &platform;
        let token = token.clone();
        async move { platform.post_json("/functions", Some(&token), &body).await }
    };
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"code": "(module (func (export \"handle\") bogus))"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_module",
        ),
        (
            json!({"code": "(module (import \"env\" \"f\" (func)) (func (export \"handle\") (param i32) (result i32) local.get 0))"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_module",
        ),
        (
            json!({"code": "(module)"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_module",
        ),
        (
            json!({"code": "AGFzbQEAAAA=", "runtime": "wasm"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_module",
        ),
        (
            json!({"code": "not base64!", "runtime": "wasm"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"code": ADD_WAT, "runtime": "cobol"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"code": 42}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"runtime": "wat"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"code": ADD_WAT, "colour": "blue"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"code": ADD_WAT, "limits": {"fuel": 1e15}}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"code": ADD_WAT, "limits": {"memory_bytes": 0}}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"code": ADD_WAT, "limits": {"fule": 10}}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"code": ADD_WAT, "name": "x".repeat(65)}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"code": "(module (memory 100) (func (export \"handle\") (param i32) (result i32) local.get 0))", "limits": {"memory_bytes": 1048576}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_module",
        ),
        (
            json!({"code": "(module (memory 1) (memory 1) (func (export \"_start\")))"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_module",
        ),
        (
            json!({"code": "return input +;"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_source",
        ),
        (
            json!({"code": "while (true) {}\nfunction handler() {}"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_source",
        ),
    ];
    for (body, status, kind) in cases {
        let answer = upload(body.clone()).await;
        assert_eq!(answer.0, status, "{body} -> {}", answer.1);
        assert_error(answer, status, kind);
    }
    let raw_garbage = platform
        .send(
            Method::POST,
            "/functions",
            Some(&token),
            Some(("application/wasm", vec![0, 1, 2, 3])),
        )
        .await;
    assert_error(
        raw_garbage,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_module",
    );

    let (_, listing) = platform.get("/functions", Some(&token)).await;
    assert_eq!(listing, json!({"functions": []}), "nothing stored half-way");
    // No id was consumed by a refused upload.
    assert_eq!(platform.upload(&token, ADD_WAT, None).await, 1);
}

#[tokio::test]
async fn wasm_uploads_as_base64_or_raw_body_with_limits() {
    let platform = Platform::start().await;
    let token = platform.user("alice").await;
    let binary = wat_to_wasm(ADD_WAT);

    let (status, body) = platform
        .post_json(
            "/functions",
            Some(&token),
            &json!({
                "code": base64::engine::general_purpose::STANDARD.encode(&binary),
                "runtime": "wasm",
                "name": "add",
                "limits": {"fuel": 1000, "timeout_ms": 250},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("code").is_none(), "binaries are not echoed");
    assert_eq!(body["limits"]["fuel"], 1000);
    assert_eq!(body["limits"]["timeout_ms"], 250);
    assert_eq!(body["name"], "add");
    let base64_digest = body["digest"].clone();

    let (status, raw) = platform
        .send(
            Method::POST,
            "/functions?name=raw-add&memory_bytes=1048576",
            Some(&token),
            Some(("application/wasm", binary)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{raw}");
    assert_eq!(raw["runtime"], "wasm");
    assert_eq!(raw["name"], "raw-add");
    assert_eq!(raw["limits"]["memory_bytes"], 1048576);
    assert_eq!(
        raw["digest"], base64_digest,
        "content addressed: same bytes, same digest"
    );

    let (status, result) = platform
        .execute(&token, raw["id"].as_u64().unwrap(), json!(41))
        .await;
    assert_eq!((status, &result["result"]), (StatusCode::OK, &json!(42)));
}

fn wat_to_wasm(wat: &str) -> Vec<u8> {
    nimbus_engine::to_binary(wat.as_bytes())
        .unwrap()
        .into_owned()
}

#[tokio::test]
async fn execute_and_delete_errors() {
    let platform = Platform::start().await;
    let token = platform.user("alice").await;
    let id = platform
        .upload(&token, ADD_WAT, Some(json!({"max_input_bytes": 16})))
        .await;
    let post = |path: String, bytes: &'static [u8]| {
        let platform = &platform;
        let token = token.clone();
        async move {
            platform
                .send(
                    Method::POST,
                    &path,
                    Some(&token),
                    Some(("application/json", bytes.to_vec())),
                )
                .await
        }
    };
    assert_error(
        platform.execute(&token, 999, json!(1)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        platform.get("/functions/%FF", Some(&token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        post("/functions/abc/execute".into(), b"{}").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        post(format!("/functions/{id}/execute"), b"{\"input\": ").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        platform.execute(&token, id, json!("ten")).await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
    assert_error(
        platform
            .execute(&token, id, json!([1, 2, 3, 4, 5, 6, 7, 8, 9]))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_input",
    );
    assert_error(
        platform.delete("/functions/999", Some(&token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        platform.get("/nowhere", Some(&token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        platform
            .send(Method::PUT, "/functions", Some(&token), None)
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    // The function still works after all that.
    let (status, body) = platform.execute(&token, id, json!(1)).await;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(2)));
}

#[tokio::test]
async fn users_and_functions_survive_a_full_restart() {
    let mut platform = Platform::start().await;
    let token = platform.user("alice").await;
    let id = platform.upload(&token, ADD_WAT, None).await;

    platform.stop_all().await;
    platform.restart_all().await;

    let token = platform.login("alice", "password123").await;
    let (_, listing) = platform.get("/functions", Some(&token)).await;
    assert_eq!(listing["functions"][0]["id"], id);
    let (status, body) = platform.execute(&token, id, json!(99)).await;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(100)));
    // The id counter survived too.
    assert_eq!(platform.upload(&token, ADD_WAT, None).await, id + 1);
}

/// A module of about `mib` MiB: a data segment that size, and the seed's
/// `handle`.
fn module_of_mib(mib: usize) -> Vec<u8> {
    let pages = mib * 16 + 1;
    let wat = format!(
        r#"(module (memory {pages}) (data (i32.const 0) "{}")
            (func (export "handle") (param i32) (result i32)
              local.get 0 i32.const 1 i32.add))"#,
        "a".repeat(mib << 20)
    );
    nimbus_engine::to_binary(wat.as_bytes())
        .expect("valid WAT")
        .into_owned()
}

#[tokio::test]
async fn a_module_far_larger_than_a_nats_message_deploys_and_runs() {
    let platform = Platform::start().await;
    let token = platform.user("alice").await;
    // 20 MiB: more than twice NATS's 8 MiB max_payload, and the size of a
    // Python component; stored in the object store's chunks.
    let module = module_of_mib(20);
    let (status, created) = platform
        .send(
            Method::POST,
            // The first call waits for the worker to fetch and compile 20
            // MiB: a generous deadline for a machine busy with other tests.
            "/functions?name=big&timeout_ms=60000",
            Some(&token),
            Some(("application/wasm", module.clone())),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["size"], module.len());
    let id = created["id"].as_u64().unwrap();
    let (status, body) = platform.execute(&token, id, json!(41)).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!(42)),
        "{body}"
    );
}

#[tokio::test]
async fn an_upload_over_the_module_cap_is_413_naming_the_cap_and_stores_nothing() {
    let mut setup = Setup::default();
    setup.api.max_module_bytes = 1 << 20;
    let platform = Platform::start_with(setup).await;
    let token = platform.user("alice").await;
    let module = module_of_mib(2);

    let (status, body) = platform
        .send(
            Method::POST,
            "/functions",
            Some(&token),
            Some(("application/wasm", module.clone())),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["kind"], "payload_too_large");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("1048576"), "{message}");

    // In base64 inside JSON it is over the route's body cap: 413 too, naming it.
    let code = base64::engine::general_purpose::STANDARD.encode(&module);
    let (status, body) = platform
        .post_json(
            "/functions",
            Some(&token),
            &json!({"code": code, "runtime": "wasm"}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("at most 1048576 bytes"), "{message}");

    let (_, listing) = platform.get("/functions", Some(&token)).await;
    assert_eq!(listing, json!({"functions": []}));
}
