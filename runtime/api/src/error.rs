//! The one place HTTP errors are shaped: every failure becomes
//! `{"error": {"kind", "message"}}` with a fitting status.
//!
//! Function failures (the guest's fault) answer 422 with the engine's kind
//! (`out_of_fuel`, `trap`, ...) and `"source": "function"`; input the function
//! cannot take answers 400 `invalid_input`. Platform failures answer 502-504
//! with the platform kind and `"source": "platform"`. Client mistakes show
//! their message; server-side errors are logged and answered generically.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_core::error::describe;
use nimbus_core::http::{ErrorBody, ErrorDetail};
use nimbus_core::{ErrorSource, FunctionError, FunctionErrorKind, PlatformErrorKind};
use nimbus_store::StoreError;

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
    #[error(transparent)]
    InvalidModule(nimbus_engine::CompileError),
    /// The upload would take more than its compile budget (time, memory,
    /// or the static limits on its shape).
    #[error(transparent)]
    CompileBudget(nimbus_engine::CompileError),
    /// JavaScript source that does not parse or fails while loading.
    #[error(transparent)]
    InvalidSource(nimbus_js::JsError),
    /// The function failed.
    #[error("{0}")]
    Function(FunctionError),
    /// The caller already has as many asynchronous invocations queued or
    /// running as one user may.
    #[error("{0}")]
    TooManyJobs(String),
    /// The caller is at one of their quotas (functions, module bytes).
    #[error("{0}")]
    QuotaExceeded(String),
    /// A conditional request (`If-Match`, `If-None-Match`) whose condition
    /// does not hold.
    #[error("{0}")]
    PreconditionFailed(String),
    /// Too many requests of a kind from this client (or for this
    /// username); try again after `retry_after`.
    #[error("{message}")]
    TooManyRequests {
        /// What was limited.
        message: String,
        /// When trying again can succeed.
        retry_after: std::time::Duration,
    },
    /// The platform could not run an invocation (no worker, timeout,
    /// overload, a worker's failure).
    #[error("{message}")]
    Platform {
        /// What failed.
        kind: PlatformErrorKind,
        /// Details.
        message: String,
    },
    /// JetStream unreachable, refusing, or holding something unreadable.
    #[error("backend unavailable")]
    Store(#[source] StoreError),
    /// A bug or an unexpected condition; logged, answered generically.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// No worker is subscribed.
    pub fn no_worker() -> Self {
        Self::platform(
            PlatformErrorKind::NoWorker,
            "no worker is available to run the function",
        )
    }

    /// No reply within `wait_ms`.
    pub fn worker_timeout(wait_ms: u64) -> Self {
        Self::platform(
            PlatformErrorKind::WorkerTimeout,
            format!("no worker answered within {wait_ms} ms"),
        )
    }

    /// The worker that got the call was at capacity with a full queue.
    pub fn overloaded(message: impl std::fmt::Display) -> Self {
        Self::platform(
            PlatformErrorKind::Overloaded,
            format!("workers are overloaded: {message}"),
        )
    }

    /// A worker could not run the function.
    pub fn worker_failed(message: impl std::fmt::Display) -> Self {
        Self::platform(
            PlatformErrorKind::WorkerFailed,
            format!("worker failed: {message}"),
        )
    }

    /// NATS could not carry the call.
    pub fn unavailable(message: impl std::fmt::Display) -> Self {
        Self::platform(
            PlatformErrorKind::Unavailable,
            format!("backend unavailable: {message}"),
        )
    }

    fn platform(kind: PlatformErrorKind, message: impl Into<String>) -> Self {
        Self::Platform {
            kind,
            message: message.into(),
        }
    }

    /// Status and kind of the answer.
    pub fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::InvalidModule(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_module"),
            Self::CompileBudget(_) => (StatusCode::UNPROCESSABLE_ENTITY, "compile_budget_exceeded"),
            Self::InvalidSource(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_source"),
            Self::Function(e) if e.kind == FunctionErrorKind::InvalidInput => {
                (StatusCode::BAD_REQUEST, e.kind.as_str())
            }
            Self::Function(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.kind.as_str()),
            Self::TooManyJobs(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_jobs"),
            Self::QuotaExceeded(_) => (StatusCode::FORBIDDEN, "quota_exceeded"),
            Self::PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            Self::Platform { kind, .. } => (platform_status(*kind), kind.as_str()),
            Self::Store(StoreError::Corrupt { .. }) | Self::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            Self::Store(_) => (
                platform_status(PlatformErrorKind::Unavailable),
                PlatformErrorKind::Unavailable.as_str(),
            ),
        }
    }
}

/// The status of each platform failure.
fn platform_status(kind: PlatformErrorKind) -> StatusCode {
    match kind {
        PlatformErrorKind::WorkerFailed => StatusCode::BAD_GATEWAY,
        PlatformErrorKind::WorkerTimeout => StatusCode::GATEWAY_TIMEOUT,
        PlatformErrorKind::NoWorker
        | PlatformErrorKind::Overloaded
        | PlatformErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.parts();
        let detail = |message: String, source: Option<ErrorSource>| ErrorDetail {
            kind: kind.to_owned(),
            message,
            source,
            fuel_consumed: None,
        };
        let error = match &self {
            Self::Function(e) => ErrorDetail {
                fuel_consumed: Some(e.fuel_consumed),
                ..detail(e.message.clone(), Some(ErrorSource::Function))
            },
            _ if status == StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(error = describe(&self), "internal error");
                detail("internal error".into(), Some(ErrorSource::Platform))
            }
            Self::Platform { .. } | Self::Store(_) => {
                let message = describe(&self);
                tracing::warn!(error = message, "platform failure");
                detail(message, Some(ErrorSource::Platform))
            }
            _ => detail(self.to_string(), None),
        };
        let mut response = (status, axum::Json(ErrorBody { error })).into_response();
        // They pass: a worker frees a slot, JetStream elects a leader, the
        // caller's jobs run.
        let passing = matches!(
            self,
            Self::TooManyJobs(_)
                | Self::Store(_)
                | Self::Platform {
                    kind: PlatformErrorKind::Overloaded | PlatformErrorKind::Unavailable,
                    ..
                }
        );
        if passing && status != StatusCode::INTERNAL_SERVER_ERROR {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::TooManyRequests { retry_after, .. } = &self {
            // Whole seconds, rounded up: trying at that time succeeds.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
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

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::AlreadyExists => Self::Conflict("already exists".into()),
            other => Self::Store(other),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::Internal(format!("background task failed: {error}"))
    }
}

impl From<nimbus_core::kv::KvError> for ApiError {
    fn from(error: nimbus_core::kv::KvError) -> Self {
        use nimbus_core::kv::KvErrorKind as Kind;
        let message = error.message;
        match error.kind {
            Kind::AccessDenied => Self::Forbidden(message),
            Kind::NoSuchStore | Kind::Invalid => Self::BadRequest(message),
            Kind::TooLarge => Self::PayloadTooLarge(message),
            Kind::QuotaExceeded => Self::QuotaExceeded(message),
            Kind::TooManyOperations => Self::TooManyRequests {
                message,
                retry_after: std::time::Duration::from_secs(1),
            },
            Kind::Unavailable => Self::unavailable(message),
        }
    }
}
