//! Each invocation's id and trace context, made where an API server takes
//! the invocation (see `nimbus_core::trace`): the client's `traceparent`
//! continued with a span of this server's, or a new trace when it sent
//! none (or one that does not parse). Answers carry both back:
//! `Nimbus-Invocation-Id` and `Nimbus-Trace-Id`.
//!
//! With span export on (`ApiConfig::export_spans`, `--otlp-endpoint`), this
//! server's span is a real OpenTelemetry span, child of the client's: its
//! ids are the ones the call carries on to the worker, so the worker's span
//! hangs under it. It ends when the answer is stamped.

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use nimbus_core::FunctionId;
use nimbus_core::trace::{TRACEPARENT, TraceParent};
use nimbus_core::wire::headers;
use opentelemetry::global::BoxedSpan;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
use opentelemetry::{KeyValue, global};

use crate::ApiError;

/// Response header: the trace the invocation belongs to (32 hex digits).
pub const TRACE_ID_HEADER: &str = "nimbus-trace-id";

/// An invocation's id and trace context.
pub(crate) struct InvocationContext {
    pub(crate) id: String,
    pub(crate) trace: TraceParent,
    /// This server's span, when spans are exported.
    pub(crate) span: Option<BoxedSpan>,
}

impl InvocationContext {
    /// A new invocation of `function`, in the trace `headers` name if any;
    /// with a span to export if `export`.
    pub(crate) fn from_headers(headers: &HeaderMap, function: FunctionId, export: bool) -> Self {
        let id = new_invocation_id();
        let caller = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        if export {
            let span = exported_span(caller, function);
            let context = span.span_context();
            // (A tracer that makes no spans, such as the no-op one when no
            // provider is installed, gives an invalid context: the ids are
            // then made here, as without export.)
            if context.is_valid() {
                let trace = TraceParent {
                    trace_id: context.trace_id().to_bytes(),
                    parent_id: context.span_id().to_bytes(),
                    flags: context.trace_flags().to_u8(),
                };
                return Self {
                    id,
                    trace,
                    span: Some(span),
                };
            }
        }
        let span = rand::random();
        let trace = caller.map_or_else(
            || TraceParent::root(rand::random(), span),
            |parent| parent.child(span),
        );
        Self {
            id,
            trace,
            span: None,
        }
    }

    /// The answer, success or failure, with the invocation's id and trace;
    /// this server's span, if any, ends with it.
    pub(crate) fn stamp(mut self, answer: Result<Response, ApiError>) -> Response {
        let mut response = answer.unwrap_or_else(IntoResponse::into_response);
        if let Some(mut span) = self.span.take() {
            // The id the answer names (an asynchronous call's is its record's).
            span.set_attribute(KeyValue::new("faas.invocation_id", self.id.clone()));
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(response.status().as_u16()),
            ));
            if response.status().is_server_error() || response.status().as_u16() == 422 {
                span.set_status(opentelemetry::trace::Status::error(
                    response.status().to_string(),
                ));
            }
            span.end();
        }
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

/// The API server's span of an invocation: a child of the client's span
/// when it sent a `traceparent`, else the root of a new trace. Its name and
/// attributes follow OpenTelemetry's FaaS conventions.
fn exported_span(caller: Option<TraceParent>, function: FunctionId) -> BoxedSpan {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId};
    let parent = match caller {
        Some(caller) => opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes(caller.trace_id),
            SpanId::from_bytes(caller.parent_id),
            TraceFlags::new(caller.flags),
            true,
            Default::default(),
        )),
        None => opentelemetry::Context::new(),
    };
    let tracer = global::tracer("nimbus-api");
    tracer.build_with_context(
        tracer
            .span_builder("invoke")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("faas.name", function.to_string()),
                KeyValue::new("faas.trigger", "http"),
            ]),
        &parent,
    )
}

/// A new invocation id: 32 random hex digits.
pub(crate) fn new_invocation_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
