//! Accounts and tokens: validation, conflicts, and every kind of bad token.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{JWT_SECRET, Platform, assert_error};

#[tokio::test]
async fn registration_validates_and_refuses_duplicates() {
    let platform = Platform::start().await;
    let register = |body: serde_json::Value| {
        let platform = &platform;
        async move { platform.post_json("/auth/register", None, &body).await }
    };
    for (body, why) in [
        (
            json!({"username": "ab", "password": "password123"}),
            "short username",
        ),
        (
            json!({"username": "a.b*c", "password": "password123"}),
            "subject characters",
        ),
        (
            json!({"username": "alice", "password": "short"}),
            "short password",
        ),
        (
            json!({"username": "alice", "password": "x".repeat(73)}),
            "over bcrypt's 72 bytes",
        ),
        (json!({"username": "alice"}), "missing password"),
        (
            json!({"username": 42, "password": "password123"}),
            "wrong type",
        ),
        (json!(["alice", "password123"]), "not an object"),
    ] {
        let answer = register(body).await;
        assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{why}: {}", answer.1);
        assert_error(answer, StatusCode::BAD_REQUEST, "invalid_request");
    }

    let credentials = json!({"username": "alice", "password": "password123"});
    assert_eq!(register(credentials.clone()).await.0, StatusCode::CREATED);
    assert_error(
        register(credentials).await,
        StatusCode::CONFLICT,
        "conflict",
    );
}

#[tokio::test]
async fn login_refuses_wrong_credentials_alike() {
    let platform = Platform::start().await;
    platform.user("alice").await;
    let wrong_password = platform
        .post_json(
            "/auth/login",
            None,
            &json!({"username": "alice", "password": "wrongpassword"}),
        )
        .await;
    let unknown_user = platform
        .post_json(
            "/auth/login",
            None,
            &json!({"username": "nobody", "password": "password123"}),
        )
        .await;
    assert_eq!(
        wrong_password, unknown_user,
        "no hint which usernames exist"
    );
    assert_error(wrong_password, StatusCode::UNAUTHORIZED, "unauthorized");
}

/// bcrypt reads only 72 bytes of a password: login refuses longer ones as
/// registration does, so a 72-byte password plus any suffix does not log in.
#[tokio::test]
async fn login_refuses_passwords_bcrypt_would_truncate() {
    let platform = Platform::start().await;
    let password = "p".repeat(72);
    let credentials = json!({"username": "alice", "password": password});
    let (status, _) = platform
        .post_json("/auth/register", None, &credentials)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    platform.login("alice", &password).await;
    let longer = platform
        .post_json(
            "/auth/login",
            None,
            &json!({"username": "alice", "password": format!("{password}suffix")}),
        )
        .await;
    assert_error(longer, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn malformed_bodies_are_clear_400s_and_oversized_ones_413() {
    let platform = Platform::start().await;
    let raw = |bytes: Vec<u8>| {
        let platform = &platform;
        async move {
            platform
                .send(
                    Method::POST,
                    "/auth/register",
                    None,
                    Some(("application/json", bytes)),
                )
                .await
        }
    };
    assert_error(
        raw(b"{\"username\": ".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        raw(Vec::new()).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        raw(b"{\"username\": \"al\xffice\", \"password\": \"password123\"}".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // Credentials are small: `/auth/*` reads at most 4 KiB, far below the
    // other routes' cap.
    let huge = format!(
        r#"{{"username": "alice", "password": "{}"}}"#,
        "x".repeat(8 << 10)
    );
    assert!(huge.len() < platform.setup.api.max_body_bytes);
    assert_error(
        raw(huge.clone().into_bytes()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    let login = platform
        .send(
            Method::POST,
            "/auth/login",
            None,
            Some(("application/json", huge.into_bytes())),
        )
        .await;
    assert_error(login, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Nothing was registered along the way.
    let (status, _) = platform
        .post_json(
            "/auth/login",
            None,
            &json!({"username": "alice", "password": "password123"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(alg: Algorithm, secret: &str, sub: &str, exp: u64) -> String {
    let claims = json!({"sub": sub, "iat": now(), "exp": exp, "iss": "nimbus"});
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_www_authenticate() {
    let platform = Platform::start().await;
    let good = platform.user("alice").await;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);

    let expired = token(Algorithm::HS256, JWT_SECRET, "alice", now() - 3600);
    let forged = token(
        Algorithm::HS256,
        "some-other-secret-of-sufficient-length!!",
        "alice",
        now() + 3600,
    );
    let hs512 = token(Algorithm::HS512, JWT_SECRET, "alice", now() + 3600);
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"sub":"alice","exp":{},"iss":"nimbus"}}"#,
            now() + 3600
        ))
    );
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = b64(&format!(
        r#"{{"sub":"mallory","iat":{},"exp":{},"iss":"nimbus"}}"#,
        now(),
        now() + 3600
    ));
    let tampered = parts.join(".");

    for (name, header) in [
        ("missing", None),
        (
            "not bearer",
            Some(format!("Basic {}", b64("alice:password123"))),
        ),
        ("garbage", Some("Bearer not-a-jwt".to_owned())),
        ("expired", Some(format!("Bearer {expired}"))),
        ("forged", Some(format!("Bearer {forged}"))),
        ("HS512", Some(format!("Bearer {hs512}"))),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        ("tampered", Some(format!("Bearer {tampered}"))),
    ] {
        let mut request = platform.http.get(platform.url("/functions"));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert!(
            response.headers().get("www-authenticate").is_some(),
            "{name}: WWW-Authenticate"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["kind"], "unauthorized", "{name}");
    }

    let (status, _) = platform.get("/functions", Some(&good)).await;
    assert_eq!(status, StatusCode::OK);
}
