//! Worker settings. Each default is written once, here: the `nimbus` flags
//! take theirs from [`WorkerConfig::default`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_core::{EnvKey, LimitPolicy};
use nimbus_store::ArtifactVerifier;

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Invocations run at once by this worker.
    pub concurrency: usize,
    /// Invocations that may wait for a slot; past that, new ones are
    /// answered `Overloaded` at once.
    pub queue_capacity: usize,
    /// Synchronous invocations one tenant (the caller) may run at once on
    /// this worker; `None` is half of `concurrency`. Their further calls
    /// wait their turn (see `fair_queue.rs`), so one tenant's burst of slow
    /// calls leaves slots for everybody else.
    pub tenant_concurrency: Option<usize>,
    /// Limits this worker accepts; requests beyond them are refused.
    pub policy: LimitPolicy,
    /// The public half of the platform's artifact key: with it, the worker
    /// loads the native artifacts API servers made and signed at upload
    /// instead of compiling, after checking their signature. Without it, or
    /// for a module with no artifact for this worker's engine, the worker
    /// compiles the module on its first call and keeps it to itself: a
    /// worker cannot sign, so it shares nothing (a compromised worker
    /// cannot plant native code for the others).
    pub artifact_verifier: Option<ArtifactVerifier>,
    /// The platform's environment key, which opens the environment
    /// (variables and secrets) calls carry (derived from the secrets key,
    /// which workers do not hold). Without it, functions that have an
    /// environment fail with a platform error.
    pub env_key: Option<EnvKey>,
    /// Which addresses guests may connect to (`nimbus_engine::Reach`):
    /// private ones only as the operator allows, never the platform's own
    /// endpoints (the worker adds the NATS servers it learns of at start).
    pub outbound_reach: nimbus_engine::Reach,
    /// Outbound HTTP requests one invocation may make.
    pub max_outbound_requests: u32,
    /// Key-value operations one invocation may make.
    pub max_kv_operations: u32,
    /// Benchmarking only: answer every invocation with its input, without
    /// fetching or running the module. Measures the platform's own round
    /// trip (HTTP -> API -> NATS -> worker -> back), the floor that
    /// `make bench` compares real functions against.
    pub benchmark_floor: bool,
    /// Bytes of compiled modules kept in memory (see
    /// `nimbus_engine::EngineConfig::cache_bytes`).
    pub module_cache_bytes: u64,
    /// Attempts at an asynchronous invocation before it is recorded as
    /// failed, counting runs that failed for platform reasons and runs whose
    /// worker died.
    pub job_attempts: u32,
    /// How long a job may go without an ack (a running job sends progress
    /// acks four times per period) before JetStream hands it to another
    /// worker: how soon a dead worker's job is taken up again.
    pub job_ack_wait: Duration,
    /// Modules loaded at start, before any call asks for them: the ones
    /// whose artifacts (for this worker's engine) were stored most
    /// recently. A restart or a new worker then does not turn the next
    /// burst of calls into first calls. 0 turns it off; needs the artifact
    /// key.
    pub warm_modules: usize,
    /// Where this worker keeps copies of the signed artifacts it loaded
    /// (`nimbus_store::LocalArtifacts`), so that loading one again (after a
    /// restart, or once the memory cache dropped it) reads a local file,
    /// checked like the stored one, instead of the object store. `None`:
    /// nowhere.
    pub artifact_dir: Option<std::path::PathBuf>,
    /// Bytes of artifacts kept in `artifact_dir`; the least recently used
    /// go first. 0 keeps none.
    pub artifact_dir_bytes: u64,
    /// Calls of a JavaScript function on this worker after which it is
    /// prepared: snapshotted after its top level, so later calls skip it
    /// at the same fuel (`hot_scripts.rs`). 0: never.
    pub prepare_scripts_after: u32,
    /// Where to serve `GET /metrics` (`metrics.rs`); `None`: nowhere.
    pub metrics_listener: Option<MetricsListener>,
    /// Functions given series of their own in the metrics; the others are
    /// counted together as `function="other"` (`nimbus_core::metrics`).
    pub metrics_function_series: usize,
    /// Export a span per run through the process's OpenTelemetry tracer
    /// provider (`nimbus worker --otlp-endpoint` installs one), child of
    /// the span the call names.
    pub export_spans: bool,
}

/// A bound socket for the worker's `/metrics`, bound before the worker
/// starts (so a taken address fails at once, and tests can bind port 0
/// and know the port). The worker takes it when it starts: of several
/// workers run with clones of one config, only the first serves it.
#[derive(Debug, Clone)]
pub struct MetricsListener(Arc<Mutex<Option<std::net::TcpListener>>>);

impl MetricsListener {
    /// Serve on `listener`.
    pub fn new(listener: std::net::TcpListener) -> Self {
        Self(Arc::new(Mutex::new(Some(listener))))
    }

    /// The socket, unless a worker took it already.
    pub(crate) fn take(&self) -> Option<std::net::TcpListener> {
        self.0.lock().expect("metrics listener lock").take()
    }
}

impl WorkerConfig {
    /// Calls one tenant may run at once (see `tenant_concurrency`).
    pub fn tenant_concurrency(&self) -> usize {
        self.tenant_concurrency
            .unwrap_or(self.concurrency / 2)
            .clamp(1, self.concurrency.max(1))
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            queue_capacity: 256,
            tenant_concurrency: None,
            policy: LimitPolicy::default(),
            artifact_verifier: None,
            env_key: None,
            outbound_reach: nimbus_engine::Reach::default(),
            max_outbound_requests: nimbus_engine::Outbound::DEFAULT_MAX_REQUESTS,
            max_kv_operations: nimbus_engine::KvAccess::DEFAULT_MAX_OPERATIONS,
            benchmark_floor: false,
            module_cache_bytes: nimbus_engine::EngineConfig::default().cache_bytes,
            job_attempts: 3,
            job_ack_wait: Duration::from_secs(30),
            warm_modules: 64,
            artifact_dir: None,
            artifact_dir_bytes: 4 << 30,
            prepare_scripts_after: 100,
            metrics_listener: None,
            metrics_function_series: nimbus_core::metrics::DEFAULT_FUNCTION_SERIES,
            export_spans: false,
        }
    }
}
