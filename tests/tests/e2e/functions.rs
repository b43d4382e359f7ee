//! Uploading, listing, reading and deleting functions; ownership; bad input
//! that must leave nothing behind; persistence across a full restart.

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADD_WAT, Platform, assert_error};

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
