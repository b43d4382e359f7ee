//! Each invocation's id and trace context, made where an API server takes
//! the invocation (see `nimbus_core::trace`): the client's `traceparent`
//! continued with a span of this server's, or a new trace when it sent
//! none (or one that does not parse). Answers carry both back:
//! `Nimbus-Invocation-Id` and `Nimbus-Trace-Id`.

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use nimbus_core::trace::{TRACEPARENT, TraceParent};
use nimbus_core::wire::headers;

use crate::ApiError;

/// Response header: the trace the invocation belongs to (32 hex digits).
pub const TRACE_ID_HEADER: &str = "nimbus-trace-id";

/// An invocation's id and trace context.
pub(crate) struct InvocationContext {
    pub(crate) id: String,
    pub(crate) trace: TraceParent,
}

impl InvocationContext {
    /// A new invocation, in the trace `headers` name if any.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let span = rand::random();
        let trace = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse)
            .map_or_else(
                || TraceParent::root(rand::random(), span),
                |parent| parent.child(span),
            );
        Self {
            id: new_invocation_id(),
            trace,
        }
    }

    /// The answer, success or failure, with the invocation's id and trace.
    pub(crate) fn stamp(&self, answer: Result<Response, ApiError>) -> Response {
        let mut response = answer.unwrap_or_else(IntoResponse::into_response);
        let headers = response.headers_mut();
        for (name, value) in [
            (headers::INVOCATION, self.id.clone()),
            (TRACE_ID_HEADER, self.trace.trace_id_hex()),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// A new invocation id: 32 random hex digits.
pub(crate) fn new_invocation_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
