//! What every handler shares: settings, the storage, the function cache,
//! the dispatcher, the upload engine, the JWT keys and the CPU slots.

use std::sync::Arc;

use nimbus_core::call_stats::CallStats;
use nimbus_engine::Engine;
use nimbus_store::Storage;

use crate::auth::JwtKeys;
use crate::auth_limits::AuthLimits;
use crate::dispatch::{Dispatch, NatsDispatch};
use crate::fair_slots::{FairSlots, Slot};
use crate::function_cache::FunctionCache;
use crate::function_env::EnvCache;
use crate::metrics::ApiMetrics;
use crate::observed_dispatch::ObservedDispatch;
use crate::tenant_rate::TenantRate;
use crate::user_turns::UserTurns;
use crate::{ApiConfig, ApiError};

/// Shared state of every handler.
pub struct AppState {
    pub(crate) config: ApiConfig,
    /// `None` only for a [detached](AppState::detached) state.
    storage: Option<Storage>,
    pub(crate) nats: Option<async_nats::Client>,
    pub(crate) functions: Arc<FunctionCache>,
    /// Sealed environments of functions with variables or secrets.
    pub(crate) envs: EnvCache,
    /// The dispatcher, counted and traced (`observed_dispatch.rs`).
    pub(crate) dispatch: Arc<dyn Dispatch>,
    pub(crate) metrics: Arc<ApiMetrics>,
    /// The last hour of calls by function, for the console's charts.
    pub(crate) call_stats: Arc<CallStats>,
    pub(crate) engine: Engine,
    /// Built on the first JavaScript upload: it compiles the QuickJS shim.
    js: tokio::sync::OnceCell<Arc<nimbus_js::JsCompiler>>,
    pub(crate) jwt: JwtKeys,
    /// Bounds CPU-heavy work requests run on the async runtime (bcrypt,
    /// evaluating JavaScript) to the number of cores, so a burst of logins
    /// queues instead of starving everything else, and serves waiting
    /// clients in turn (`fair_slots.rs`). Compiles have a pool of their
    /// own, at a lower priority (the engine's `compile_job`), and never
    /// take these slots.
    cpu_slots: Arc<FairSlots>,
    /// Login and registration rates, and locked usernames.
    pub(crate) auth_limits: AuthLimits,
    /// Invocations per second per tenant.
    pub(crate) tenant_rate: TenantRate,
    /// Each user's turns at the compile pool (`ApiConfig::compiles_per_user`).
    pub(crate) compile_turns: Arc<UserTurns>,
    /// Each user's live log follows (`routes/live_logs.rs`), and all of
    /// them.
    pub(crate) log_follows: Arc<UserTurns>,
    pub(crate) all_log_follows: Arc<tokio::sync::Semaphore>,
    /// Set when the server shuts down: long-lived answers (log follows)
    /// end, so that shutting down does not wait for them.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
    /// One turn per user from the quota check to the function written
    /// (`quotas.rs`).
    pub(crate) quota_turns: Arc<UserTurns>,
    /// A bcrypt hash of a random password at the configured cost; logins for
    /// unknown users are checked against it to take the same time.
    pub(crate) dummy_hash: String,
}

impl AppState {
    /// Build the state, and start following the `functions` bucket (the
    /// function cache's watch). `engine` is used to validate and compile
    /// uploads; it runs nothing.
    pub async fn new(
        config: ApiConfig,
        storage: Storage,
        nats: async_nats::Client,
        engine: Engine,
        jwt_secret: &[u8],
    ) -> anyhow::Result<Self> {
        let functions = Arc::new(FunctionCache::new(config.function_cache_entries));
        functions.follow(storage.clone()).await?;
        let dispatch = Arc::new(NatsDispatch::new(
            nats.clone(),
            storage.clone(),
            config.max_jobs_per_user,
        ));
        let mut metrics = ApiMetrics::new(config.metrics_function_series);
        metrics.watch_nats(&nats);
        let mut state = Self::detached_with(config, dispatch, metrics, engine, jwt_secret)?;
        state.functions = functions;
        state.storage = Some(storage);
        state.nats = Some(nats);
        Ok(state)
    }

    /// A state without NATS: invocations go to `dispatch`, functions are
    /// whatever is put in [`AppState::functions`], and the routes that read
    /// or write JetStream answer 503. For handler tests (axum's `oneshot`)
    /// of what does not need JetStream: extractors, body limits, error
    /// mapping, execute.
    pub fn detached(
        config: ApiConfig,
        dispatch: Arc<dyn Dispatch>,
        engine: Engine,
        jwt_secret: &[u8],
    ) -> anyhow::Result<Self> {
        let metrics = ApiMetrics::new(config.metrics_function_series);
        Self::detached_with(config, dispatch, metrics, engine, jwt_secret)
    }

    fn detached_with(
        config: ApiConfig,
        dispatch: Arc<dyn Dispatch>,
        metrics: ApiMetrics,
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
        let metrics = Arc::new(metrics);
        let call_stats = Arc::new(CallStats::default());
        Ok(Self {
            jwt: JwtKeys::new(jwt_secret, config.token_ttl),
            compile_turns: UserTurns::new(config.compiles_per_user),
            log_follows: UserTurns::new(crate::routes::live_logs::FOLLOWS_PER_USER),
            all_log_follows: Arc::new(tokio::sync::Semaphore::new(
                crate::routes::live_logs::FOLLOWS_PER_SERVER,
            )),
            stopping: tokio::sync::watch::Sender::new(false),
            quota_turns: UserTurns::new(1),
            auth_limits: AuthLimits::new(config.auth_limits.clone()),
            tenant_rate: TenantRate::new(config.calls_per_second),
            functions: Arc::new(FunctionCache::new(config.function_cache_entries)),
            envs: EnvCache::new(config.function_cache_entries),
            config,
            storage: None,
            nats: None,
            dispatch: Arc::new(ObservedDispatch {
                inner: dispatch,
                metrics: metrics.clone(),
                call_stats: call_stats.clone(),
            }),
            metrics,
            call_stats,
            engine,
            js: tokio::sync::OnceCell::new(),
            cpu_slots: Arc::new(FairSlots::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            dummy_hash,
        })
    }

    /// The function metadata cache (to seed a detached state in tests).
    pub fn functions(&self) -> &FunctionCache {
        &self.functions
    }

    /// The storage; a detached state has none.
    pub(crate) fn storage(&self) -> Result<&Storage, ApiError> {
        self.storage
            .as_ref()
            .ok_or_else(|| ApiError::unavailable("this API server runs detached from JetStream"))
    }

    /// Wait for a CPU slot in `client`'s turn (see `cpu_slots`): a client
    /// address, or a user.
    pub(crate) async fn cpu_slot(&self, client: &str) -> Slot {
        self.cpu_slots.take(client).await
    }

    /// The JavaScript compiler, ready to use: built on first use (or at
    /// start, with `warm_js`), its interpreter compiled by this engine, kept
    /// loaded, and stored (module, and sealed artifact) for workers.
    pub(crate) async fn js(&self) -> Result<Arc<nimbus_js::JsCompiler>, ApiError> {
        self.js
            .get_or_try_init(|| async {
                let js = nimbus_js::JsCompiler::start(nimbus_js::InitLimits::default())
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                self.install_interpreter(&js).await?;
                Ok(Arc::new(js))
            })
            .await
            .cloned()
    }

    async fn install_interpreter(&self, js: &nimbus_js::JsCompiler) -> Result<(), ApiError> {
        let interpreter = bytes::Bytes::copy_from_slice(js.interpreter());
        let code = interpreter.clone();
        let (module, artifact) = self
            .engine
            .compile_job(move |engine| {
                let (module, _) = engine.compile_trusted(&code)?;
                let artifact = engine.serialize(&module).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "could not serialise the JavaScript interpreter");
                    None
                });
                Ok((module, artifact))
            })
            .await
            .and_then(|compiled| compiled)
            .map_err(|e: nimbus_engine::CompileError| {
                ApiError::Internal(format!("the JavaScript interpreter does not compile: {e}"))
            })?;
        self.engine.keep(&module);
        let Some(storage) = &self.storage else {
            return Ok(());
        };
        let digest = module.digest();
        storage.put_module(digest, &interpreter, true).await?;
        if let (Some(artifact), Some(key)) = (artifact, &self.config.artifact_key)
            && let Err(e) = storage
                .put_artifact(digest, &self.engine.artifact_key(), artifact, key)
                .await
        {
            let error = nimbus_core::error::describe(&e);
            tracing::warn!(%digest, %error, "could not store the interpreter's artifact");
        }
        Ok(())
    }
}
