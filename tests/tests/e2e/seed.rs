//! The seed's curl session (original design, section 4), step by step.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADD_WAT, Platform};

#[tokio::test]
async fn seed_session_works_as_written() {
    let platform = Platform::start().await;
    let credentials = json!({"username": "testuser", "password": "password123"});

    let (status, body) = platform
        .post_json("/auth/register", None, &credentials)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body, json!({"message": "Usuario registrado exitosamente"}));

    let (status, body) = platform.post_json("/auth/login", None, &credentials).await;
    assert_eq!(status, StatusCode::OK);
    let token = body["token"].as_str().expect("a token").to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT");

    let (status, body) = platform
        .post_json(
            "/functions",
            Some(&token),
            &json!({"user": "testuser", "code": ADD_WAT}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["id"], 1,
        "the first function of a fresh platform is 1, as in the seed"
    );
    assert_eq!(body["code"], ADD_WAT);
    assert_eq!(body["runtime"], "wat");

    let (status, body) = platform
        .post_json("/functions/1/execute", Some(&token), &json!({"input": 10}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], 11);
    assert!(body["fuel_consumed"].as_u64().unwrap() > 0);
    assert!(body["duration_us"].is_u64());

    let (status, body) = platform.delete("/functions/1", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"message": "Función eliminada"}));

    let (status, _) = platform.get("/functions/1", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn seed_session_with_its_javascript_body() {
    let platform = Platform::start().await;
    let credentials = json!({"username": "testuser", "password": "password123"});
    let (status, _) = platform
        .post_json("/auth/register", None, &credentials)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let token = platform.login("testuser", "password123").await;

    let (status, body) = platform
        .post_json(
            "/functions",
            Some(&token),
            &json!({"user": "testuser", "code": "return input + 1;"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["id"], 1);
    assert_eq!(body["code"], "return input + 1;");
    assert_eq!(body["runtime"], "js");

    let (status, body) = platform
        .post_json("/functions/1/execute", Some(&token), &json!({"input": 10}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], 11);

    // A thrown error reaches the caller as a function error with its message.
    let (status, body) = platform
        .post_json(
            "/functions",
            Some(&token),
            &json!({"code": "if (input === 0) throw new TypeError('zero is not allowed'); return 1 / input;"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = platform
        .post_json("/functions/2/execute", Some(&token), &json!({"input": 0}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "exit");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("TypeError: zero is not allowed"),
        "{message}"
    );

    let (status, body) = platform.delete("/functions/1", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"message": "Función eliminada"}));
}
