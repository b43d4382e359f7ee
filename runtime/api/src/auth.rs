//! Tokens and the bearer-token extractor.
//!
//! Tokens are HS256 JWTs carrying the username in `sub`, issued by `nimbus`
//! and expiring; only HS256 is accepted, so `alg: none` and
//! algorithm-confusion tokens are refused. Registration and login are in
//! `routes/accounts.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use nimbus_core::Username;
use serde::{Deserialize, Serialize};

use crate::{ApiError, AppState};

/// Header the gateway plugin forwards the verified user in.
pub const IDENTITY_HEADER: &str = "x-nimbus-user";

/// Issuer claim of every Nimbus token.
pub const ISSUER: &str = "nimbus";

/// The claims in a Nimbus token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The username.
    pub sub: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Always [`ISSUER`].
    pub iss: String,
}

/// Tokens remembered as verified, at most; past that the memory starts
/// over, empty.
const VERIFIED_TOKENS: usize = 10_000;

/// Seconds of clock skew allowed on `exp`.
const LEEWAY_SECS: u64 = 5;

/// Signs and verifies tokens with one shared secret.
///
/// Clients send the same token with every request, so a token that
/// verified once is remembered (the whole token, signature included: only
/// that exact string matches) with its claims, and later requests only
/// check its expiry. Decoding and checking a token cost more than any other
/// step of a warm call in the API (3% of its CPU in a profile).
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    verified: Mutex<HashMap<Box<str>, Claims>>,
}

impl JwtKeys {
    /// Keys for `secret`, tokens valid for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh token for `username`.
    pub fn issue(&self, username: &str) -> String {
        let now = now_secs();
        let claims = Claims {
            sub: username.to_owned(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let remembered = self.lock().get(token).cloned();
        if let Some(claims) = remembered {
            if claims.exp + LEEWAY_SECS >= now_secs() {
                return Ok(claims);
            }
            self.lock().remove(token);
        }
        let claims = self.decode(token)?;
        let mut verified = self.lock();
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(token.into(), claims.clone());
        Ok(claims)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Claims>> {
        self.verified.lock().expect("verified tokens lock")
    }

    fn decode(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let reason = match e.kind() {
                    ErrorKind::ExpiredSignature => "token has expired",
                    ErrorKind::InvalidSignature => "token signature is invalid",
                    ErrorKind::InvalidAlgorithm => "token must be signed with HS256",
                    _ => "token is malformed or invalid",
                };
                ApiError::Unauthorized(reason.into())
            })
    }
}

/// Seconds since the epoch.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The authenticated caller: extracted from `Authorization: Bearer <jwt>`.
#[derive(Debug, Clone)]
pub struct Caller(pub Username);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized("missing Authorization: Bearer <token> header".into())
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("Authorization header must be `Bearer <token>`".into())
            })?;
        let claims = state.jwt.verify(token)?;
        // Behind the gateway, nimbus-auth forwards the user it verified. The
        // API checks the token itself anyway; a forwarded identity that
        // disagrees with it means something between them is wrong.
        if let Some(forwarded) = parts.headers.get(IDENTITY_HEADER)
            && forwarded.as_bytes() != claims.sub.as_bytes()
        {
            return Err(ApiError::Unauthorized(format!(
                "{IDENTITY_HEADER} does not match the token"
            )));
        }
        let caller = Username::parse(&claims.sub)
            .map_err(|_| ApiError::Unauthorized("token names no valid user".into()))?;
        Ok(Caller(caller))
    }
}

/// The caller if the request carries a valid Nimbus token, else nobody:
/// function URLs are open to anonymous callers (public functions), and an
/// `Authorization` header that is not a Nimbus token may be the function's
/// own business (a webhook's signature scheme).
#[derive(Debug, Clone)]
pub struct MaybeCaller(pub Option<Username>);

impl FromRequestParts<Arc<AppState>> for MaybeCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(Self(None));
        }
        Ok(Self(
            Caller::from_request_parts(parts, state)
                .await
                .ok()
                .map(|Caller(user)| user),
        ))
    }
}
