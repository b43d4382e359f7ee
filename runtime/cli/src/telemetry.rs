//! Span export over OTLP/HTTP (protobuf), for `--otlp-endpoint`: the
//! OpenTelemetry SDK's tracer provider, installed as the process's global
//! one, with a batch processor that sends from a thread of its own. API
//! servers and workers make their spans through the global provider
//! (`nimbus_api::invocation_context`, `nimbus_worker::run_span`) when their
//! `export_spans` is on.

use anyhow::Context;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The installed exporter; [`Telemetry::shutdown`] sends what is left.
#[derive(Clone)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

/// Export spans to the OTLP collector at `endpoint` (its base URL, as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` takes it: `http://collector:4318`; spans
/// go to `<endpoint>/v1/traces`), named as service `service`.
pub fn install(endpoint: &str, service: &str) -> anyhow::Result<Telemetry> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .context("could not set up the OTLP span exporter")?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(Telemetry { provider })
}

impl Telemetry {
    /// Send the spans made so far now.
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "could not export spans");
        }
    }

    /// Send what is left and stop exporting.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "could not export the last spans");
        }
    }
}
