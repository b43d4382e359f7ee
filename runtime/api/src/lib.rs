//! The Nimbus HTTP API: accounts, function uploads and invocations,
//! dispatched to workers over NATS.
//!
//! API servers are stateless but for caches: users and functions live in
//! JetStream, modules in the object store, and invocations go to whichever
//! worker of the `workers` queue group takes them. Run as many as you like
//! behind the gateway. The API compiles modules (to refuse bad ones at
//! upload) but never runs them.
//!
//! - `config`: settings; `state`: what handlers share.
//! - `routes/`: one file per resource (accounts, functions, their
//!   configuration and secrets, invocations, and `urls`: functions called on
//!   their own URL).
//! - `auth`: tokens and the `Caller` extractor; `body`: body and path
//!   extractors with our error format; `upload`: reading an upload.
//! - `dispatch`: handing invocations to workers, behind a trait;
//!   `invocation_context`: each invocation's id and trace;
//!   `observed_dispatch`: the dispatcher counted and traced.
//! - `function_cache`: function metadata in memory, fed by a KV watch;
//!   `function_env`: the sealed environment each call carries;
//!   `kv_service`: workers' key-value operations, checked against the
//!   grant each call carries.
//! - `metrics`: `GET /metrics`, and HTTP requests timed.
//! - `openapi`: the HTTP contract, generated from the handlers'
//!   annotations and served at `GET /openapi.json`.
//! - `error`: the one place errors become HTTP answers.
//!
//! [`app`] builds the router, so tests drive it without a socket
//! (`tower::ServiceExt::oneshot`); [`serve`] runs it on a listener until a
//! shutdown future resolves.

mod auth;
mod auth_limits;
mod background;
mod body;
mod client_addr;
pub mod config;
pub mod dispatch;
pub mod error;
mod fair_slots;
mod function_cache;
mod function_env;
mod invocation_context;
mod kv_service;
mod metrics;
mod module_gc;
mod observed_dispatch;
mod openapi;
mod quotas;
mod reseal;
mod routes;
mod state;
mod tenant_rate;
mod upload;
mod user_turns;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{MethodRouter, any, get};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

pub use auth::{Caller, Claims, ISSUER, JwtKeys};
pub use config::ApiConfig;
pub use dispatch::{Dispatch, NatsDispatch};
pub use error::ApiError;
pub use function_cache::FunctionCache;
pub use state::AppState;

use body::BodyCap;
use routes::{
    account, accounts, console, function_config, functions, invocations, kv, logs, stats, urls,
};
use utoipa::{Modify as _, OpenApi as _};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub use invocation_context::TRACE_ID_HEADER;
pub use routes::urls::{DURATION_HEADER, FUEL_HEADER};

/// The router with every route of the HTTP contract.
pub fn app(state: AppState) -> Router {
    routes(Arc::new(state))
}

fn routes(state: Arc<AppState>) -> Router {
    let (router, doc) = documented(&state.config);
    // The document goes to its one route, not into every request.
    let rendered = openapi::Rendered::of(&doc);
    router
        .route(
            "/openapi.json",
            get(move || openapi::serve(rendered.clone())),
        )
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(Extension(BodyCap {
            bytes: state.config.max_body_bytes,
            module: None,
        }))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(metrics::TrackHttp(state.metrics.clone()))
        .with_state(state)
}

/// The OpenAPI document of every route [`routes`] serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    documented(&ApiConfig::default()).1
}

fn documented(config: &ApiConfig) -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = documented_routes(config).split_for_parts();
    openapi::Contract.modify(&mut doc);
    (router, doc)
}

/// Every route but `/openapi.json`, each with its OpenAPI description:
/// `routes!` takes method and path from the handler's `#[utoipa::path]`.
/// Routes axum must see in another form (wildcard tails) are registered
/// with `route` and described in [`openapi::ApiDoc`]'s `paths`.
fn documented_routes(config: &ApiConfig) -> OpenApiRouter<Arc<AppState>> {
    // An upload carries a module: as is, or in base64 inside JSON.
    let max_upload = config.max_module_bytes.div_ceil(3) * 4 + (64 << 10);
    let capped = |bytes: usize, module: Option<usize>| {
        move |route: UtoipaMethodRouter<Arc<AppState>>| {
            route
                .layer::<_, Infallible>(DefaultBodyLimit::max(bytes))
                .layer::<_, Infallible>(Extension(BodyCap { bytes, module }))
        }
    };
    let upload = capped(max_upload, Some(config.max_module_bytes));
    let auth_cap = capped(accounts::AUTH_BODY_BYTES, None);
    // A function's whole environment is at most 64 KiB; JSON may escape it.
    let config_cap = capped(8 * nimbus_core::env::MAX_BYTES, None);
    let kv_cap = nimbus_core::kv::MAX_VALUE_BYTES;
    let kv_key = get(kv::get)
        .put(kv::put)
        .delete(kv::delete)
        .layer::<_, Infallible>(DefaultBodyLimit::max(kv_cap))
        .layer::<_, Infallible>(Extension(BodyCap {
            bytes: kv_cap,
            module: None,
        }));
    // Each function caps its own request body (its max_input_bytes).
    let url = |route: MethodRouter<Arc<AppState>>| {
        route.layer::<_, Infallible>(DefaultBodyLimit::disable())
    };
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(metrics::serve))
        .routes(routes!(console::index))
        .routes(routes!(console::asset))
        .routes(auth_cap(routes!(accounts::register)))
        .routes(auth_cap(routes!(accounts::login)))
        .routes(routes!(account::account))
        .routes(routes!(functions::list))
        .routes(upload(routes!(functions::create)))
        .routes(routes!(
            functions::get,
            functions::change,
            functions::delete
        ))
        .routes(config_cap(routes!(
            function_config::get_config,
            function_config::put_config
        )))
        .routes(routes!(function_config::list_secrets))
        .routes(config_cap(routes!(
            function_config::put_secret,
            function_config::delete_secret
        )))
        .routes(routes!(invocations::execute))
        .routes(routes!(logs::logs))
        .routes(routes!(stats::stats))
        .routes(routes!(invocations::invocation))
        .routes(routes!(kv::stores))
        .routes(routes!(kv::list))
        .route("/kv/{store}/{*key}", kv_key)
        .route("/fn/{owner}/{name}", url(any(urls::call)))
        .route("/fn/{owner}/{name}/{*rest}", url(any(urls::call_subpath)))
}

/// Serve `app(state)` on `listener` until `shutdown` resolves, then finish
/// the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new(state);
    let _sweeper = module_gc::start(&state);
    let _reseal = reseal::start(&state);
    let _kv_service = kv_service::start(&state)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if state.config.warm_js {
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = state.js().await {
                tracing::warn!(error = %e, "could not prepare JavaScript; the first JS upload will try again");
            }
        });
    }
    let stopping = state.stopping.clone();
    let app = routes(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // End the log follows: graceful shutdown waits for every answer.
            stopping.send_replace(true);
        })
        .await
}

/// `GET /healthz`
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "health",
    security(()),
    responses(
        (status = 200, description = "Connected to NATS", body = Object, example = json!({"status": "ok"})),
        (status = 503, description = "Not connected to NATS", body = nimbus_core::http::ErrorBody),
    ),
)]
async fn health(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let Some(nats) = &state.nats else {
        return Err(ApiError::unavailable("no NATS connection"));
    };
    match nats.connection_state() {
        async_nats::connection::State::Connected => Ok(Json(json!({"status": "ok"}))),
        other => Err(ApiError::unavailable(format!("NATS connection is {other}"))),
    }
}
