//! API settings. Each default is written once, here: the `nimbus` flags
//! take theirs from [`ApiConfig::default`].

use std::path::PathBuf;
use std::time::Duration;

use nimbus_core::{LimitPolicy, SecretsKey};
use nimbus_engine::CompileBudget;
use nimbus_store::ArtifactKey;

pub use crate::auth_limits::AuthLimitConfig;
pub use crate::quotas::Quotas;

/// API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// bcrypt cost for new passwords (4-31; each step doubles the work).
    pub bcrypt_cost: u32,
    /// How long issued tokens are valid.
    pub token_ttl: Duration,
    /// Limits granted to functions.
    pub policy: LimitPolicy,
    /// Largest request body, in bytes, but for uploads (see
    /// `max_module_bytes`).
    pub max_body_bytes: usize,
    /// Largest module or component an upload may carry, in bytes. A raw
    /// `application/wasm` body may be this large; a JSON upload, which
    /// carries the module in base64, 4/3 of it.
    pub max_module_bytes: usize,
    /// Time a worker gets on top of the function's own deadline (fetching
    /// and compiling a module it has not cached) before the API answers 504.
    pub dispatch_grace: Duration,
    /// Asynchronous invocations one user may have queued or running; past
    /// that, new ones answer 429 `too_many_jobs`. Keeps one user from
    /// filling the job queue every user shares. Checked before queueing, so
    /// concurrent requests of one user can overshoot it by their number.
    pub max_jobs_per_user: u64,
    /// Function metadata records the API keeps in memory (see
    /// `function_cache.rs`).
    pub function_cache_entries: usize,
    /// Functions given series of their own in `/metrics`; the others are
    /// counted together as `function="other"` (`nimbus_core::metrics`).
    pub metrics_function_series: usize,
    /// Export a span per invocation through the process's OpenTelemetry
    /// tracer provider (`nimbus api --otlp-endpoint` installs one).
    pub export_spans: bool,
    /// The platform's artifact key: with it, an upload also stores the
    /// native artifact it compiled, sealed, for workers to load instead of
    /// compiling again.
    pub artifact_key: Option<ArtifactKey>,
    /// Prepare JavaScript at start (compile the QuickJS shim, make, compile
    /// and store the interpreter, about a second of CPU) rather than on the
    /// first JavaScript upload. Off in tests that upload no JavaScript.
    pub warm_js: bool,
    /// The program uploads are compiled in, killed past `compile_budget`
    /// (`nimbus` sets itself; see `nimbus_engine::EngineConfig::compiler`).
    /// `None` compiles in this process, under the static limits only.
    pub compiler: Option<PathBuf>,
    /// Time and memory one upload's compile may take (with `compiler`).
    pub compile_budget: CompileBudget,
    /// Compiles one user may have running at once; their further uploads
    /// wait, so one user's uploads cannot take every turn of the compile
    /// pool.
    pub compiles_per_user: usize,
    /// Login and registration rates per client address, and the lockout of
    /// usernames after failed logins (see `auth_limits.rs`).
    pub auth_limits: AuthLimitConfig,
    /// The request header a trusted gateway puts the client's address in
    /// (APISIX sets `X-Real-IP`). `None` takes the address the connection
    /// comes from. Set it only when every request passes the gateway: a
    /// client could otherwise name any address.
    pub client_ip_header: Option<String>,
    /// Invocations per second one tenant may start through this API
    /// server (synchronous, asynchronous and URL calls together, bursts up
    /// to the same number); past that, 429 with `Retry-After`. The default
    /// is above what one tenant reaches on a small machine (~10k/s here):
    /// set it to what a tenant is entitled to.
    pub calls_per_second: u32,
    /// Functions and module bytes per tenant (`quotas.rs`).
    pub quotas: Quotas,
    /// How often this API server sweeps the modules store for objects no
    /// function uses (`Duration::ZERO`: never). Sweeps of several API
    /// servers do not conflict.
    pub module_gc_interval: Duration,
    /// How long an unused object is kept after it was last written or
    /// touched by an upload: longer than any upload takes between storing
    /// its module and writing its function.
    pub module_gc_grace: Duration,
    /// The platform's secrets key (workers hold it too): secrets are stored
    /// sealed with it and functions' environments travel sealed with it.
    /// Without it, functions can have no variables or secrets.
    pub secrets_key: Option<SecretsKey>,
    /// Each owner's key-value keys, bytes and stores (`nimbus_core::kv`).
    pub kv_quota: nimbus_core::kv::KvQuota,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            bcrypt_cost: 12,
            token_ttl: Duration::from_secs(24 * 3600),
            policy: LimitPolicy::default(),
            max_body_bytes: 12 << 20,
            max_module_bytes: nimbus_engine::EngineConfig::default().max_module_bytes,
            dispatch_grace: Duration::from_secs(10),
            max_jobs_per_user: 1000,
            function_cache_entries: 100_000,
            metrics_function_series: nimbus_core::metrics::DEFAULT_FUNCTION_SERIES,
            export_spans: false,
            artifact_key: None,
            warm_js: true,
            compiler: None,
            compile_budget: CompileBudget::default(),
            compiles_per_user: 1,
            auth_limits: AuthLimitConfig::default(),
            client_ip_header: None,
            calls_per_second: 20_000,
            quotas: Quotas::default(),
            module_gc_interval: Duration::from_secs(600),
            module_gc_grace: Duration::from_secs(3600),
            secrets_key: None,
            kv_quota: nimbus_core::kv::KvQuota::default(),
        }
    }
}
