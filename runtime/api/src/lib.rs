//! The Nimbus HTTP API: accounts, function uploads and synchronous
//! invocations, dispatched to workers over NATS.
//!
//! API servers are stateless: users and functions live in JetStream, modules
//! in the object store, and invocations go to whichever worker of the
//! `workers` queue group takes them. Run as many as you like behind the
//! gateway. `app` builds the router so tests can drive it without a socket;
//! `serve` runs it on a listener until a shutdown future resolves.

mod auth;
mod body;
mod error;
mod functions;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use nimbus_core::LimitPolicy;
use nimbus_engine::Engine;
use nimbus_store::Store;
use serde_json::{Value, json};

pub use auth::{Claims, ISSUER, JwtKeys};
pub use error::ApiError;

/// API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// bcrypt cost for new passwords (4-31; each step doubles the work).
    pub bcrypt_cost: u32,
    /// How long issued tokens are valid.
    pub token_ttl: Duration,
    /// Limits granted to functions.
    pub policy: LimitPolicy,
    /// Largest request body, in bytes (a base64 module is ~4/3 its size).
    pub max_body_bytes: usize,
    /// Time a worker gets on top of the function's own deadline (fetching
    /// and compiling a module it has not cached) before the API answers 504.
    pub dispatch_grace: Duration,
    /// Asynchronous invocations one user may have queued or running; past
    /// that, new ones answer 429 `too_many_jobs`. Keeps one user from
    /// filling the job queue every user shares. Checked before queueing, so
    /// concurrent requests of one user can overshoot it by their number.
    pub max_jobs_per_user: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            bcrypt_cost: 12,
            token_ttl: Duration::from_secs(24 * 3600),
            policy: LimitPolicy::default(),
            max_body_bytes: 12 << 20,
            dispatch_grace: Duration::from_secs(10),
            max_jobs_per_user: 1000,
        }
    }
}

/// Shared state of every handler.
pub struct AppState {
    config: ApiConfig,
    store: Store,
    nats: async_nats::Client,
    engine: Engine,
    /// Built on the first JavaScript upload: it compiles the QuickJS shim.
    js: tokio::sync::OnceCell<Arc<nimbus_js::JsCompiler>>,
    jwt: JwtKeys,
    /// Bounds CPU-heavy work requests can start (bcrypt, compiling modules,
    /// evaluating JavaScript) to the number of cores, so a burst of logins
    /// or uploads queues instead of starving everything else.
    cpu_slots: tokio::sync::Semaphore,
    /// A bcrypt hash of a random password at the configured cost; logins for
    /// unknown users are checked against it to take the same time.
    dummy_hash: String,
}

impl AppState {
    /// Wait for a CPU slot (see `cpu_slots`).
    async fn cpu_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.cpu_slots
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    /// The JavaScript compiler, built on first use.
    async fn js(&self) -> Result<Arc<nimbus_js::JsCompiler>, ApiError> {
        self.js
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(|| {
                    nimbus_js::JsCompiler::new(nimbus_js::InitLimits::default())
                })
                .await?
                .map(Arc::new)
                .map_err(|e| ApiError::Internal(e.to_string()))
            })
            .await
            .cloned()
    }

    /// Build the state. `engine` is used to validate and compile uploads; it
    /// runs nothing, so it needs no pooling.
    pub fn new(
        config: ApiConfig,
        store: Store,
        nats: async_nats::Client,
        engine: Engine,
        jwt_secret: &[u8],
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            jwt_secret.len() >= 32,
            "the JWT secret must be at least 32 bytes long"
        );
        let dummy_hash = bcrypt::hash(
            format!("{:?}", std::time::Instant::now()),
            config.bcrypt_cost,
        )?;
        Ok(Self {
            jwt: JwtKeys::new(jwt_secret, config.token_ttl),
            config,
            store,
            nats,
            engine,
            js: tokio::sync::OnceCell::new(),
            cpu_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            dummy_hash,
        })
    }
}

/// The router with every route of the HTTP contract.
pub fn app(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(health))
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/functions", post(functions::create).get(functions::list))
        .route(
            "/functions/{id}",
            get(functions::get).delete(functions::delete),
        )
        .route("/functions/{id}/execute", post(functions::execute))
        .route("/functions/{id}/logs", get(functions::logs))
        .route("/invocations/{id}", get(functions::invocation))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(Arc::new(state))
}

/// Serve `app(state)` on `listener` until `shutdown` resolves, then finish
/// the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    match state.nats.connection_state() {
        async_nats::connection::State::Connected => Ok(Json(json!({"status": "ok"}))),
        other => Err(ApiError::Unavailable(format!("NATS connection is {other}"))),
    }
}
