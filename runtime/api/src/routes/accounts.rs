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
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::body::{Body, parse_json};
use crate::client_addr::ClientAddr;
use crate::routes::Message;
use crate::{ApiError, AppState};
use nimbus_core::http::ErrorBody;

/// bcrypt only looks at the first 72 bytes; longer passwords are refused
/// rather than silently truncated.
const PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 8..=72;

/// The body of `/auth/register` and `/auth/login`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct Credentials {
    /// 3 to 32 letters, digits, `_` or `-`.
    username: String,
    /// 8 to 72 bytes (bcrypt reads no further).
    password: String,
}

/// `POST /auth/login` answers this.
#[derive(Serialize, ToSchema)]
pub(crate) struct Token {
    /// A bearer token (JWT) for the `Authorization` header.
    token: String,
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
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "accounts",
    operation_id = "register",
    security(()),
    request_body = Credentials,
    responses(
        (status = 201, description = "Registered", body = Message),
        (status = 400, description = "Invalid username or password", body = ErrorBody),
        (status = 409, description = "Username taken", body = ErrorBody),
        (status = 413, description = "Body over 4 KiB", body = ErrorBody),
        (status = 429, description = "Too many registrations from this client", body = ErrorBody),
    ),
)]
pub async fn register(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    Body(body): Body,
) -> Result<(StatusCode, Json<Message>), ApiError> {
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
        Json(Message::new("Usuario registrado exitosamente")),
    ))
}

/// `POST /auth/login`
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "accounts",
    operation_id = "login",
    security(()),
    request_body = Credentials,
    responses(
        (status = 200, description = "Logged in", body = Token),
        (status = 400, description = "Malformed body, or a password bcrypt would truncate", body = ErrorBody),
        (status = 401, description = "Bad credentials", body = ErrorBody),
        (status = 413, description = "Body over 4 KiB", body = ErrorBody),
        (status = 429, description = "Too many logins from this client, or this username is locked for a while", body = ErrorBody),
    ),
)]
pub async fn login(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    Body(body): Body,
) -> Result<Json<Token>, ApiError> {
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
            Ok(Json(Token {
                token: state.jwt.issue(&user.username),
            }))
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
