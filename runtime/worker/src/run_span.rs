//! A run as an OpenTelemetry span, when the worker exports spans
//! (`WorkerConfig::export_spans`): a child of the span the call names in
//! its `traceparent` (the API server's), with OpenTelemetry's FaaS
//! attributes and the fuel burned.

use nimbus_core::metrics::{Outcome, Trigger};
use nimbus_core::wire::Call;
use opentelemetry::global::{self, BoxedSpan};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue};

/// A run's span, from its start.
pub(crate) struct RunSpan(BoxedSpan);

impl RunSpan {
    pub(crate) fn start(call: &Call, trigger: Trigger) -> Self {
        let parent = match call.trace {
            Some(trace) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(trace.trace_id),
                SpanId::from_bytes(trace.parent_id),
                TraceFlags::new(trace.flags),
                true,
                Default::default(),
            )),
            None => Context::new(),
        };
        let mut attributes = vec![
            KeyValue::new("faas.name", call.function_id.to_string()),
            KeyValue::new("faas.trigger", trigger.as_str()),
        ];
        if let Some(id) = &call.invocation {
            attributes.push(KeyValue::new("faas.invocation_id", id.clone()));
        }
        let tracer = global::tracer("nimbus-worker");
        Self(
            tracer.build_with_context(
                tracer
                    .span_builder("run")
                    .with_kind(SpanKind::Internal)
                    .with_attributes(attributes),
                &parent,
            ),
        )
    }

    /// The run ended with `outcome`, having burned `fuel`.
    pub(crate) fn end(mut self, outcome: Outcome, fuel: Option<u64>) {
        if let Some(fuel) = fuel {
            self.0.set_attribute(KeyValue::new(
                "nimbus.fuel_consumed",
                i64::try_from(fuel).unwrap_or(i64::MAX),
            ));
        }
        if let Some(kind) = outcome {
            self.0
                .set_attribute(KeyValue::new("error.type", kind.as_str()));
            self.0.set_status(Status::error(kind.as_str()));
        }
        self.0.end();
    }
}
