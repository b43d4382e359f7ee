//! The one place HTTP errors are shaped: every failure becomes
//! `{"error": {"kind", "message"}}` with a fitting status.
//!
//! Function failures (the guest's fault) answer 422 with the engine's kind
//! (`out_of_fuel`, `trap`, ...) and `"source": "function"`; input the function
//! cannot take answers 400 `invalid_input`. Platform failures answer 502-504 with
//! `"source": "platform"`. Client mistakes show their message; server-side
//! errors are logged and answered generically.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_core::{FunctionError, FunctionErrorKind};
use serde_json::json;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or invalid request.
    #[error("{0}")]
    BadRequest(String),
    /// Missing, malformed, expired or forged credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but acting for someone else.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource (or not the caller's).
    #[error("{0}")]
    NotFound(String),
    /// Method not allowed on this path.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Already exists.
    #[error("{0}")]
    Conflict(String),
    /// Body over the size cap.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The uploaded module was refused by the engine.
    #[error("{0}")]
    InvalidModule(String),
    /// JavaScript source that does not parse or fails while loading.
    #[error("{0}")]
    InvalidSource(String),
    /// The function failed.
    #[error("{0}")]
    Function(FunctionError),
    /// The caller already has as many asynchronous invocations queued or
    /// running as one user may.
    #[error("{0}")]
    TooManyJobs(String),
    /// No worker is subscribed.
    #[error("no worker is available to run the function")]
    NoWorker,
    /// No worker answered in time.
    #[error("no worker answered within {0} ms")]
    WorkerTimeout(u64),
    /// The worker that got the request was at capacity with a full queue.
    #[error("workers are overloaded: {0}")]
    Overloaded(String),
    /// A worker could not run the function.
    #[error("worker failed: {0}")]
    WorkerFailed(String),
    /// NATS/JetStream unreachable or failing.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected condition; logged, answered generically.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::InvalidModule(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_module"),
            Self::InvalidSource(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_source"),
            Self::Function(e) if e.kind == FunctionErrorKind::InvalidInput => {
                (StatusCode::BAD_REQUEST, e.kind.as_str())
            }
            Self::Function(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.kind.as_str()),
            Self::TooManyJobs(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_jobs"),
            Self::NoWorker => (StatusCode::SERVICE_UNAVAILABLE, "no_worker"),
            Self::WorkerTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "worker_timeout"),
            Self::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Self::WorkerFailed(_) => (StatusCode::BAD_GATEWAY, "worker_failed"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.parts();
        let body = match &self {
            Self::Function(e) => json!({"error": {
                "kind": kind,
                "message": e.message,
                "source": "function",
                "fuel_consumed": e.fuel_consumed,
            }}),
            Self::NoWorker
            | Self::WorkerTimeout(_)
            | Self::Overloaded(_)
            | Self::WorkerFailed(_)
            | Self::Unavailable(_) => {
                tracing::warn!(error = %self, "platform failure");
                json!({"error": {"kind": kind, "message": self.to_string(), "source": "platform"}})
            }
            Self::Internal(_) => {
                tracing::error!(error = %self, "internal error");
                json!({"error": {"kind": kind, "message": "internal error", "source": "platform"}})
            }
            _ => json!({"error": {"kind": kind, "message": self.to_string()}}),
        };
        let mut response = (status, axum::Json(body)).into_response();
        // They pass: a worker frees a slot, JetStream elects a leader, the
        // caller's jobs run.
        if matches!(
            self,
            Self::Overloaded(_) | Self::Unavailable(_) | Self::TooManyJobs(_)
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"nimbus\""),
            );
        }
        response
    }
}

impl From<nimbus_store::StoreError> for ApiError {
    fn from(error: nimbus_store::StoreError) -> Self {
        match error {
            nimbus_store::StoreError::AlreadyExists => Self::Conflict("already exists".into()),
            nimbus_store::StoreError::Unavailable(e) => Self::Unavailable(e),
            corrupt @ nimbus_store::StoreError::Corrupt { .. } => {
                Self::Internal(corrupt.to_string())
            }
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::Internal(format!("background task failed: {error}"))
    }
}
