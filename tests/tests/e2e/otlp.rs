//! Span export over OTLP: with `export_spans` on and the binary's exporter
//! installed (`nimbus_cli::telemetry`, what `--otlp-endpoint` does), a call
//! made with a `traceparent` reaches a real OTLP/HTTP receiver (this test's,
//! decoding the protobuf with the OpenTelemetry project's own types) as the
//! API server's span, child of the client's, and the worker's run, child of
//! the API server's, all in the client's trace.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADD_WAT, Platform, Setup, eventually};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

/// A span as received: ids in hex, name, service, string attributes.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: Vec<(String, String)>,
}

/// An OTLP/HTTP receiver on loopback: what it got, and its base URL.
async fn receiver() -> (Arc<Mutex<Vec<Received>>>, String) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut sink = sink.lock().unwrap();
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .map(|a| format!("{:?}", a.value))
                        .unwrap_or_default();
                    for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                        sink.push(Received {
                            service: service.clone(),
                            trace_id: hex::encode(&span.trace_id),
                            span_id: hex::encode(&span.span_id),
                            parent_span_id: hex::encode(&span.parent_span_id),
                            name: span.name,
                            attributes: span
                                .attributes
                                .into_iter()
                                .map(|a| (a.key, format!("{:?}", a.value)))
                                .collect(),
                        });
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (received, url)
}

#[tokio::test]
async fn spans_of_api_and_worker_reach_an_otlp_receiver_in_the_callers_trace() {
    let (received, url) = receiver().await;
    let telemetry = nimbus_cli::telemetry::install(&url, "nimbus-test").unwrap();
    let mut setup = Setup::default();
    setup.api.export_spans = true;
    setup.worker.export_spans = true;
    let platform = Platform::start_with(setup).await;
    let token = platform.user("traced").await;
    let id = platform.upload(&token, ADD_WAT, None).await;

    let response = platform
        .http
        .post(platform.url(&format!("/functions/{id}/execute")))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .json(&json!({"input": 41}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let invocation = response.headers()["nimbus-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.headers()["nimbus-trace-id"], TRACE_ID);

    let (api, run) = eventually("both spans exported", Duration::from_secs(30), || {
        let telemetry = telemetry.clone();
        let received = received.clone();
        async move {
            // The flush blocks until the receiver (on this runtime) answers.
            tokio::task::spawn_blocking(move || telemetry.flush())
                .await
                .unwrap();
            let spans = received.lock().unwrap().clone();
            let in_trace = |name: &str| {
                spans
                    .iter()
                    .find(|s| s.trace_id == TRACE_ID && s.name == name)
                    .cloned()
            };
            in_trace("invoke").zip(in_trace("run"))
        }
    })
    .await;
    // The API server's span hangs under the client's, the run under it.
    assert_eq!(api.parent_span_id, CLIENT_SPAN, "{api:?}");
    assert_eq!(run.parent_span_id, api.span_id, "{run:?}");
    assert_ne!(run.span_id, api.span_id);
    assert!(api.service.contains("nimbus-test"), "{api:?}");
    for span in [&api, &run] {
        let attribute = |key: &str| {
            span.attributes
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{key} in {span:?}"))
        };
        assert!(attribute("faas.invocation_id").contains(&invocation));
        assert!(attribute("faas.name").contains(&id.to_string()));
    }
    let fuel = run
        .attributes
        .iter()
        .find(|(k, _)| k == "nimbus.fuel_consumed")
        .expect("the run's fuel");
    assert!(!fuel.1.contains("IntValue(0)"), "{fuel:?}");
}
