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
mod quotas;
mod routes;
mod state;
mod tenant_rate;
mod upload;
mod user_turns;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{any, get, post, put};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

pub use auth::{Caller, Claims, ISSUER, JwtKeys};
pub use config::ApiConfig;
pub use dispatch::{Dispatch, NatsDispatch};
pub use error::ApiError;
pub use function_cache::FunctionCache;
pub use state::AppState;

use body::BodyCap;
use routes::{account, accounts, function_config, functions, invocations, kv, urls};

pub use invocation_context::TRACE_ID_HEADER;
pub use routes::urls::{DURATION_HEADER, FUEL_HEADER};

/// The router with every route of the HTTP contract.
pub fn app(state: AppState) -> Router {
    routes(Arc::new(state))
}

fn routes(state: Arc<AppState>) -> Router {
    let max_body = state.config.max_body_bytes;
    // An upload carries a module: as is, or in base64 inside JSON.
    let max_upload = state.config.max_module_bytes.div_ceil(3) * 4 + (64 << 10);
    let upload = post(functions::create)
        .layer::<_, Infallible>(DefaultBodyLimit::max(max_upload))
        .layer::<_, Infallible>(Extension(BodyCap {
            bytes: max_upload,
            module: Some(state.config.max_module_bytes),
        }));
    let auth_cap = |route: axum::routing::MethodRouter<Arc<AppState>>| {
        route
            .layer::<_, Infallible>(DefaultBodyLimit::max(accounts::AUTH_BODY_BYTES))
            .layer::<_, Infallible>(Extension(BodyCap {
                bytes: accounts::AUTH_BODY_BYTES,
                module: None,
            }))
    };
    let capped = |bytes: usize, route: axum::routing::MethodRouter<Arc<AppState>>| {
        route
            .layer::<_, Infallible>(DefaultBodyLimit::max(bytes))
            .layer::<_, Infallible>(Extension(BodyCap {
                bytes,
                module: None,
            }))
    };
    // A function's whole environment is at most 64 KiB; JSON may escape it.
    let config_cap = |route| capped(8 * nimbus_core::env::MAX_BYTES, route);
    let kv_cap = |route| capped(nimbus_core::kv::MAX_VALUE_BYTES, route);
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics::serve))
        .route("/auth/register", auth_cap(post(accounts::register)))
        .route("/auth/login", auth_cap(post(accounts::login)))
        .route("/account", get(account::account))
        .route("/functions", upload.get(functions::list))
        .route(
            "/functions/{id}",
            get(functions::get)
                .patch(functions::change)
                .delete(functions::delete),
        )
        .route(
            "/functions/{id}/config",
            config_cap(get(function_config::get_config).put(function_config::put_config)),
        )
        .route(
            "/functions/{id}/secrets",
            get(function_config::list_secrets),
        )
        .route(
            "/functions/{id}/secrets/{name}",
            config_cap(put(function_config::put_secret).delete(function_config::delete_secret)),
        )
        .route("/functions/{id}/execute", post(invocations::execute))
        .route("/functions/{id}/logs", get(functions::logs))
        .route("/invocations/{id}", get(invocations::invocation))
        .route("/kv", get(kv::stores))
        .route("/kv/{store}", get(kv::list))
        .route(
            "/kv/{store}/{*key}",
            kv_cap(get(kv::get).put(kv::put).delete(kv::delete)),
        )
        // Each function caps its own request body (its max_input_bytes).
        .route(
            "/fn/{owner}/{name}",
            any(urls::call).layer::<_, Infallible>(DefaultBodyLimit::disable()),
        )
        .route(
            "/fn/{owner}/{name}/{*rest}",
            any(urls::call).layer::<_, Infallible>(DefaultBodyLimit::disable()),
        )
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(Extension(BodyCap {
            bytes: max_body,
            module: None,
        }))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(metrics::TrackHttp(state.metrics.clone()))
        .with_state(state)
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

async fn health(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let Some(nats) = &state.nats else {
        return Err(ApiError::unavailable("no NATS connection"));
    };
    match nats.connection_state() {
        async_nats::connection::State::Connected => Ok(Json(json!({"status": "ok"}))),
        other => Err(ApiError::unavailable(format!("NATS connection is {other}"))),
    }
}
