//! Tokens and the bearer-token extractor.
//!
//! Tokens are HS256 JWTs carrying the username in `sub`, issued by `nimbus`
//! and expiring; only HS256 is accepted, so `alg: none` and
//! algorithm-confusion tokens are refused. Registration and login are in
//! `routes/accounts.rs`.

use std::sync::Arc;
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

/// Signs and verifies tokens with one shared secret.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl JwtKeys {
    /// Keys for `secret`, tokens valid for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// A fresh token for `username`.
    pub fn issue(&self, username: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
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
