//! Registration and login.
//!
//! Passwords are bcrypt-hashed (cost configurable; hashing runs on the
//! blocking pool so it never stalls the async workers, at most one hash per
//! core runs at once, and waiting clients take turns). Rates per client
//! address and failed logins per username are limited before any hashing
//! (`auth_limits.rs`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nimbus_core::Username;
use nimbus_store::UserRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::{Body, parse_json};
use crate::client_addr::ClientAddr;
use crate::{ApiError, AppState};

/// bcrypt only looks at the first 72 bytes; longer passwords are refused
/// rather than silently truncated.
const PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 8..=72;

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// Bytes of body `/auth/*` accepts: credentials are small, and nobody
/// unauthenticated gets to make the API read megabytes.
pub const AUTH_BODY_BYTES: usize = 4 << 10;

fn validate(credentials: &Credentials) -> Result<Username, ApiError> {
    let username =
        Username::parse(&credentials.username).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    check_password(&credentials.password)?;
    Ok(username)
}

/// Registration refuses passwords bcrypt would truncate, and so does login
/// (else any suffix of a 72-byte password would log in), before any hashing.
fn check_password(password: &str) -> Result<(), ApiError> {
    if PASSWORD_BYTES.contains(&password.len()) {
        return Ok(());
    }
    Err(ApiError::BadRequest(format!(
        "password must be {} to {} bytes long",
        PASSWORD_BYTES.start(),
        PASSWORD_BYTES.end()
    )))
}

/// `POST /auth/register`
pub async fn register(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let credentials: Credentials = parse_json(&body)?;
    let username = validate(&credentials)?;
    state.auth_limits.registration(client)?;
    let cost = state.config.bcrypt_cost;
    let password = credentials.password;
    let slot = state.cpu_slot(&client.to_string()).await;
    // The hash holds the slot: were the request cancelled, the slot would
    // still be taken until the hash is done.
    let password_hash = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        bcrypt::hash(password, cost)
    })
    .await?
    .map_err(|e| ApiError::Internal(format!("bcrypt: {e}")))?;
    let record = UserRecord {
        username: username.clone(),
        password_hash,
        created: nimbus_store::now_rfc3339(),
    };
    match state.storage()?.create_user(&record).await {
        Ok(()) => {}
        Err(nimbus_store::StoreError::AlreadyExists) => {
            return Err(ApiError::Conflict(format!(
                "username `{username}` is already taken"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user = %username, "registered");
    // The seed's exact message, kept for its curl session.
    Ok((
        StatusCode::CREATED,
        Json(json!({"message": "Usuario registrado exitosamente"})),
    ))
}

/// `POST /auth/login`
pub async fn login(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let credentials: Credentials = parse_json(&body)?;
    check_password(&credentials.password)?;
    let limits = &state.auth_limits;
    limits.login(client)?;
    limits.unlocked(&credentials.username)?;
    let denied = || ApiError::Unauthorized("invalid username or password".into());
    let user = match Username::parse(&credentials.username) {
        Ok(name) => state.storage()?.user(&name).await?,
        Err(_) => None,
    };
    // Unknown users are checked against a dummy hash of the same cost, so
    // response time does not reveal which usernames exist.
    let hash = match &user {
        Some(user) => user.password_hash.clone(),
        None => state.dummy_hash.clone(),
    };
    let password = credentials.password;
    let slot = state.cpu_slot(&client.to_string()).await;
    let matches = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        bcrypt::verify(password, &hash).unwrap_or(false)
    })
    .await?;
    match user {
        Some(user) if matches => {
            limits.succeeded(&credentials.username);
            Ok(Json(json!({"token": state.jwt.issue(&user.username)})))
        }
        _ => {
            // Names that cannot exist are not tracked: they lock nothing.
            if Username::parse(&credentials.username).is_ok() {
                limits.failed(&credentials.username);
            }
            Err(denied())
        }
    }
}
