//! This API server's metrics, served at `GET /metrics` (OpenMetrics text;
//! names and the bound on per-function series in `nimbus_core::metrics`):
//!
//! - `faas_invocations_total`, `faas_invoke_duration_seconds`,
//!   `nimbus_fuel_consumed_total`, `nimbus_invocation_fuel`: synchronous
//!   invocations (`execute` and URLs) end to end, counted around the
//!   dispatcher (`observed_dispatch.rs`);
//! - `nimbus_jobs_queued_total`: asynchronous invocations accepted;
//! - `http_server_request_duration_seconds`: every HTTP request by method,
//!   route (the route's template, `/functions/{id}`, never the path itself)
//!   and status, by [`TrackHttp`];
//! - `nimbus_nats_*`: the NATS connection's counters.
//!
//! `/metrics` needs no token: like `/healthz`, it is for the operator's
//! network. The gateway does not route it (`deploy/apisix`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use nimbus_core::metrics::{self, InvocationMetrics, Keeper};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::AppState;

/// Labels of an HTTP request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    /// The matched route's template; `unmatched` when none matched.
    route: String,
    status: u16,
}

/// One route's request histograms, by method and status.
type ByMethodAndStatus = HashMap<(&'static str, u16), Histogram>;

/// Every metric this API server keeps.
pub struct ApiMetrics {
    registry: Registry,
    pub(crate) invocations: InvocationMetrics,
    pub(crate) jobs_queued: Counter,
    http: Family<HttpLabels, Histogram, fn() -> Histogram>,
    /// The family's histograms by route, then method and status: found
    /// without building a label set (an allocation) on every request.
    http_by_route: RwLock<HashMap<String, ByMethodAndStatus>>,
}

impl ApiMetrics {
    /// The metrics, with series of their own for at most `function_series`
    /// functions.
    pub fn new(function_series: usize) -> Self {
        let mut registry = Registry::default();
        let invocations = InvocationMetrics::register(&mut registry, Keeper::Api, function_series);
        let jobs_queued = Counter::default();
        registry.register(
            "nimbus_jobs_queued",
            "Asynchronous invocations accepted and queued",
            jobs_queued.clone(),
        );
        let http: Family<HttpLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(metrics::duration_buckets()));
        registry.register_with_unit(
            "http_server_request_duration",
            "HTTP requests by method, route and status, and how long they took to answer",
            Unit::Seconds,
            http.clone(),
        );
        Self {
            registry,
            invocations,
            jobs_queued,
            http,
            http_by_route: RwLock::default(),
        }
    }

    /// Count a request to `route` answered `status` after `elapsed`.
    fn http_request(&self, method: &'static str, route: &str, status: u16, elapsed: f64) {
        let known = self.http_by_route.read().expect("metrics lock");
        if let Some(histogram) = known.get(route).and_then(|m| m.get(&(method, status))) {
            histogram.observe(elapsed);
            return;
        }
        drop(known);
        let histogram = self
            .http
            .get_or_create(&HttpLabels {
                method,
                route: route.to_owned(),
                status,
            })
            .clone();
        histogram.observe(elapsed);
        self.http_by_route
            .write()
            .expect("metrics lock")
            .entry(route.to_owned())
            .or_default()
            .insert((method, status), histogram);
    }

    /// Also report `client`'s connection counters.
    pub fn watch_nats(&mut self, client: &async_nats::Client) {
        self.registry
            .register_collector(Box::new(nimbus_store::NatsMetrics::new(client)));
    }

    /// Everything, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        metrics::encode(&self.registry)
    }
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    security(()),
    responses((status = 200, description = "This server's metrics (OpenMetrics text; for the operators' \
        network: the gateway does not route it)", content_type = "application/openmetrics-text", body = String)),
)]
pub async fn serve(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// A layer timing every request and counting it by method, route and
/// status (a tower layer of its own rather than `middleware::from_fn`,
/// which clones the whole inner router for every request).
#[derive(Clone)]
pub struct TrackHttp(pub(crate) Arc<ApiMetrics>);

impl<S> tower::Layer<S> for TrackHttp {
    type Service = TrackedHttp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackedHttp {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service [`TrackHttp`] makes.
#[derive(Clone)]
pub struct TrackedHttp<S> {
    inner: S,
    metrics: Arc<ApiMetrics>,
}

impl<S> tower::Service<Request> for TrackedHttp<S>
where
    S: tower::Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let method = method_label(request.method());
        let route = request.extensions().get::<MatchedPath>().cloned();
        let metrics = self.metrics.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
            let elapsed = started.elapsed().as_secs_f64();
            metrics.http_request(method, route, response.status().as_u16(), elapsed);
            Ok(response)
        })
    }
}

/// A bounded label for `method`: the standard ones, else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
