//! `nimbus up`, `nimbus api` and `nimbus worker`: running the platform.
//!
//! Every setting is a flag with an environment variable, and its default is
//! read from the config type the flag fills (`ApiConfig`, `WorkerConfig`,
//! `StoreConfig`), so each default is written once, there. Each command
//! runs its parts as [`Component`]s until SIGINT or SIGTERM, then stops them
//! gracefully; a part that fails ends the command with its error.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nimbus_api::ApiConfig;
use nimbus_cli::component::{Component, Shutdown};
use nimbus_cli::nats_server::{self, NatsServer};
use nimbus_cli::platform;
use nimbus_cli::platform::Role;
use nimbus_cli::telemetry::{self, Telemetry};
use nimbus_store::StoreConfig;
use nimbus_worker::{MetricsListener, WorkerConfig};

use super::api_flags::ApiFlags;
use super::keys::{ArtifactFlags, SecretsFlags, load_or_create_secret};

/// Where `api` and `worker` find NATS unless told.
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// `--module-cache-mb` counts in these.
pub(super) const MIB: u64 = 1 << 20;

#[derive(Args)]
pub struct StoreFlags {
    /// Replicas per JetStream bucket: 1 on a single server, 3 on a cluster.
    #[arg(long, env = "NIMBUS_REPLICAS", default_value_t = StoreConfig::default().replicas)]
    replicas: usize,
    /// Seconds one store operation keeps retrying while JetStream refuses
    /// it (a stream leader election after a node died); then 503.
    #[arg(
        long,
        env = "NIMBUS_STORE_FAILOVER_SECS",
        default_value_t = StoreConfig::default().failover_wait.as_secs()
    )]
    store_failover_secs: u64,
    /// Cap on all function logs together, in MiB: the disk's safety net
    /// (each tenant's logs are bounded by its quota; past this cap the
    /// oldest entries of any function go).
    #[arg(
        long,
        env = "NIMBUS_LOG_MAX_MB",
        default_value_t = StoreConfig::default().log_max_bytes as u64 / MIB
    )]
    log_max_mb: u64,
}

impl StoreFlags {
    fn config(&self) -> StoreConfig {
        StoreConfig {
            replicas: self.replicas,
            failover_wait: Duration::from_secs(self.store_failover_secs),
            log_max_bytes: i64::try_from(self.log_max_mb.saturating_mul(MIB)).unwrap_or(i64::MAX),
            ..StoreConfig::default()
        }
    }
}

#[derive(Args)]
pub struct WorkerFlags {
    /// Invocations one worker runs at once.
    #[arg(
        long = "worker-concurrency",
        env = "NIMBUS_WORKER_CONCURRENCY",
        default_value_t = WorkerConfig::default().concurrency
    )]
    concurrency: usize,
    /// Invocations one worker holds waiting for a slot; past that it answers
    /// new ones `overloaded` (HTTP 503 with Retry-After) at once.
    #[arg(
        long = "worker-queue",
        env = "NIMBUS_WORKER_QUEUE",
        default_value_t = WorkerConfig::default().queue_capacity
    )]
    queue_capacity: usize,
    /// Synchronous invocations one tenant may run at once on a worker
    /// (default: half of --worker-concurrency); their others wait their
    /// turn, tenants served in turn.
    #[arg(long, env = "NIMBUS_TENANT_CONCURRENCY")]
    tenant_concurrency: Option<usize>,
    /// Benchmarking only: answer every invocation with its input without
    /// running it, to measure the platform's own round trip.
    #[arg(long, env = "NIMBUS_BENCHMARK_FLOOR")]
    benchmark_floor: bool,
    /// Attempts at an asynchronous invocation (platform failures and dead
    /// workers count) before it is recorded as failed.
    #[arg(
        long,
        env = "NIMBUS_JOB_ATTEMPTS",
        default_value_t = WorkerConfig::default().job_attempts
    )]
    job_attempts: u32,
    /// Seconds a job may go unacknowledged (running jobs send progress) before
    /// another worker takes it over.
    #[arg(
        long,
        env = "NIMBUS_JOB_ACK_WAIT_SECS",
        default_value_t = WorkerConfig::default().job_ack_wait.as_secs()
    )]
    job_ack_wait_secs: u64,
    /// MiB of compiled modules a worker keeps in memory (least recently
    /// used dropped first).
    #[arg(
        long,
        env = "NIMBUS_MODULE_CACHE_MB",
        default_value_t = WorkerConfig::default().module_cache_bytes / MIB
    )]
    module_cache_mb: u64,
    /// Modules a starting worker loads before any call asks for them (the
    /// most recently stored artifacts); 0 turns warming off.
    #[arg(
        long,
        env = "NIMBUS_WARM_MODULES",
        default_value_t = WorkerConfig::default().warm_modules
    )]
    warm_modules: usize,
    /// Directory where a worker keeps copies of the signed artifacts it
    /// loaded, checked again on every load, so that a restart loads them
    /// from disk instead of NATS (`nimbus up`: <data-dir>/worker-artifacts).
    #[arg(long, env = "NIMBUS_ARTIFACT_DIR")]
    artifact_dir: Option<PathBuf>,
    /// MiB of artifacts kept in --artifact-dir (least recently used
    /// removed first); 0 keeps none.
    #[arg(
        long,
        env = "NIMBUS_ARTIFACT_DIR_MB",
        default_value_t = WorkerConfig::default().artifact_dir_bytes / MIB
    )]
    artifact_dir_mb: u64,
    /// Calls of a JavaScript function on a worker after which the worker
    /// prepares it (a snapshot after its top level: later calls skip it,
    /// at the same fuel); 0 never prepares.
    #[arg(
        long,
        env = "NIMBUS_PREPARE_SCRIPTS_AFTER",
        default_value_t = WorkerConfig::default().prepare_scripts_after
    )]
    prepare_scripts_after: u32,
    /// Let functions reach loopback, private and link-local addresses over
    /// HTTP (tests, development). Off, a function reaches only public
    /// addresses and --outbound-allow-net, whatever hosts it is allowed.
    #[arg(long, env = "NIMBUS_OUTBOUND_ALLOW_PRIVATE")]
    outbound_allow_private: bool,
    /// Private networks functions may reach all the same (CIDR, e.g.
    /// 10.20.0.0/16: a service of yours on your network), comma-separated
    /// or repeated.
    #[arg(
        long = "outbound-allow-net",
        env = "NIMBUS_OUTBOUND_ALLOW_NETS",
        value_delimiter = ','
    )]
    outbound_allow_nets: Vec<ipnet::IpNet>,
    /// The platform's own endpoints that functions never reach, whatever
    /// else is allowed (host:port, comma-separated or repeated): API
    /// servers, the gateway. The worker adds its NATS servers by itself,
    /// and `nimbus up` its API.
    #[arg(
        long = "outbound-deny",
        env = "NIMBUS_OUTBOUND_DENY",
        value_delimiter = ','
    )]
    outbound_deny: Vec<String>,
    /// Outbound HTTP requests one invocation may make.
    #[arg(
        long,
        env = "NIMBUS_MAX_OUTBOUND_REQUESTS",
        default_value_t = WorkerConfig::default().max_outbound_requests
    )]
    max_outbound_requests: u32,
    /// Key-value operations one invocation may make.
    #[arg(
        long,
        env = "NIMBUS_MAX_KV_OPERATIONS",
        default_value_t = WorkerConfig::default().max_kv_operations
    )]
    max_kv_operations: u32,
    /// Where the worker serves GET /metrics (host:port; port 0 picks a free
    /// one, logged). Workers serve nothing else; none by default.
    #[arg(long = "metrics-listen", env = "NIMBUS_WORKER_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Functions given series of their own in the worker's metrics (the
    /// first seen); the others are counted together as function="other".
    #[arg(
        long = "worker-metrics-functions",
        env = "NIMBUS_WORKER_METRICS_FUNCTIONS",
        default_value_t = WorkerConfig::default().metrics_function_series
    )]
    worker_metrics_functions: usize,
}

impl WorkerFlags {
    fn config(&self) -> anyhow::Result<WorkerConfig> {
        let metrics_listener = match self.metrics_listen {
            Some(address) => Some(MetricsListener::new(
                std::net::TcpListener::bind(address)
                    .with_context(|| format!("cannot listen on {address} for metrics"))?,
            )),
            None => None,
        };
        Ok(WorkerConfig {
            concurrency: self.concurrency,
            queue_capacity: self.queue_capacity,
            tenant_concurrency: self.tenant_concurrency,
            benchmark_floor: self.benchmark_floor,
            module_cache_bytes: self.module_cache_mb.saturating_mul(MIB),
            job_attempts: self.job_attempts,
            job_ack_wait: Duration::from_secs(self.job_ack_wait_secs.max(1)),
            warm_modules: self.warm_modules,
            artifact_dir: self.artifact_dir.clone(),
            artifact_dir_bytes: self.artifact_dir_mb.saturating_mul(MIB),
            prepare_scripts_after: self.prepare_scripts_after,
            outbound_reach: nimbus_engine::Reach {
                private: self.outbound_allow_private,
                networks: self.outbound_allow_nets.clone(),
                platform: self
                    .outbound_deny
                    .iter()
                    .map(|endpoint| platform::resolve_endpoint(endpoint))
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .concat(),
            },
            max_outbound_requests: self.max_outbound_requests,
            max_kv_operations: self.max_kv_operations,
            metrics_listener,
            metrics_function_series: self.worker_metrics_functions,
            ..WorkerConfig::default()
        })
    }
}

/// Span export.
#[derive(Args)]
struct TelemetryFlags {
    /// Export a span per invocation (API server) and per run (worker) over
    /// OTLP/HTTP to this collector (base URL: spans go to
    /// <URL>/v1/traces). Off by default.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

impl TelemetryFlags {
    /// The exporter, installed, if asked for.
    fn start(&self, service: &str) -> anyhow::Result<Option<Telemetry>> {
        self.otlp_endpoint
            .as_deref()
            .map(|endpoint| {
                tracing::info!(endpoint, "exporting spans over OTLP");
                telemetry::install(endpoint, service)
            })
            .transpose()
    }
}

/// Stop exporting, with the last spans sent, once `stopped` is known.
fn finish<T>(telemetry: Option<Telemetry>, stopped: T) -> T {
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    stopped
}

#[derive(Args)]
pub struct UpArgs {
    /// Directory for nats-server's store, its config and the generated JWT secret.
    #[arg(long, env = "NIMBUS_DATA_DIR", default_value = ".nimbus")]
    data_dir: PathBuf,
    /// Use this NATS server instead of starting one.
    #[arg(long, env = "NIMBUS_NATS_URL")]
    nats_url: Option<String>,
    /// The nats-server binary to start (default: PATH, then .tools/bin).
    #[arg(long, env = "NIMBUS_NATS_SERVER")]
    nats_server: Option<PathBuf>,
    /// Client port for the nats-server started by `up` (default: a free one).
    #[arg(long, env = "NIMBUS_NATS_PORT")]
    nats_port: Option<u16>,
    #[command(flatten)]
    api: ApiFlags,
    #[command(flatten)]
    worker: WorkerFlags,
    #[command(flatten)]
    artifacts: ArtifactFlags,
    #[command(flatten)]
    secrets: SecretsFlags,
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    telemetry: TelemetryFlags,
}

impl UpArgs {
    /// Start nats-server (unless given a URL), then an API server and a
    /// worker in this process; on a signal, stop them, then nats-server.
    pub async fn run(self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create {}", self.data_dir.display()))?;
        let secret = match &self.api.jwt_secret {
            Some(secret) => secret.clone(),
            None => load_or_create_secret(&self.data_dir.join("jwt-secret"))?,
        };
        let artifact_key = self.artifacts.key_or_kept(&self.data_dir)?;
        let secrets_key = self.secrets.key_or_kept(&self.data_dir)?;
        let (nats, nats_url) = match &self.nats_url {
            Some(url) => (None, url.clone()),
            None => {
                let binary = nats_server::locate(self.nats_server.as_deref())?;
                let store_dir = std::path::absolute(self.data_dir.join("nats"))?;
                let server = NatsServer::start(&binary, &store_dir, self.nats_port).await?;
                let url = server.url();
                (Some(server), url)
            }
        };
        let listener = self.api.bind().await?;
        let telemetry = self.telemetry.start("nimbus")?;
        let export_spans = telemetry.is_some();
        // From here on a signal stops nats-server too, even mid-start.
        let shutdown = Shutdown::on_terminate()?;
        let starting = platform::Components::start(platform::ComponentSettings {
            api_nats_url: nats_url.clone(),
            worker_nats_url: nats_url.clone(),
            store: self.store.config(),
            listener,
            api: ApiConfig {
                artifact_key: Some(artifact_key.clone()),
                secrets_key: Some(secrets_key.clone()),
                export_spans,
                ..self.api.config()?
            },
            jwt_secret: secret.into_bytes(),
            worker: {
                let config = self.worker.config()?;
                WorkerConfig {
                    artifact_verifier: Some(artifact_key.verifier()),
                    env_key: Some(secrets_key.env_key().clone()),
                    export_spans,
                    artifact_dir: (config.artifact_dir.clone())
                        .or_else(|| Some(self.data_dir.join("worker-artifacts"))),
                    ..config
                }
            },
        });
        let started = tokio::select! {
            started = starting => Some(started?),
            () = shutdown.clone().requested() => None,
        };
        let stopped = match started {
            Some(components) => {
                println!("Nimbus is up");
                println!("  API   http://{}", self.api.listen);
                println!("  NATS  {nats_url}");
                println!("  data  {}", self.data_dir.display());
                println!("Ctrl-C to stop.");
                components.run_until(shutdown).await
            }
            None => Ok(()),
        };
        if let Some(server) = nats {
            server.stop();
        }
        finish(telemetry, stopped)
    }
}

#[derive(Args)]
pub struct ApiArgs {
    /// NATS server URL.
    #[arg(long, env = "NIMBUS_NATS_URL", default_value = DEFAULT_NATS_URL)]
    nats_url: String,
    #[command(flatten)]
    api: ApiFlags,
    #[command(flatten)]
    artifacts: ArtifactFlags,
    #[command(flatten)]
    secrets: SecretsFlags,
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    telemetry: TelemetryFlags,
}

impl ApiArgs {
    /// Serve the API until a signal.
    pub async fn run(self) -> anyhow::Result<()> {
        let secret = self.api.jwt_secret.clone().context(
            "set NIMBUS_JWT_SECRET (or --jwt-secret): every API server must share one secret",
        )?;
        let (client, store) = platform::open_store(
            &self.nats_url,
            "nimbus-api",
            &self.store.config(),
            Role::Api,
        )
        .await?;
        let listener = self.api.bind().await?;
        let telemetry = self.telemetry.start("nimbus-api")?;
        let config = ApiConfig {
            artifact_key: self.artifacts.key()?,
            secrets_key: self.secrets.key()?,
            export_spans: telemetry.is_some(),
            ..self.api.config()?
        };
        if config.artifact_key.is_none() {
            tracing::warn!("no NIMBUS_ARTIFACT_KEY: uploads store no artifacts, workers compile");
        }
        if config.secrets_key.is_none() {
            tracing::warn!("no NIMBUS_SECRETS_KEY: functions can have no variables or secrets");
        }
        let shutdown = Shutdown::on_terminate()?;
        let stopped = Component::spawn("API server", move |stop| {
            platform::run_api(
                client,
                store,
                listener,
                config,
                secret.into_bytes(),
                stop.requested(),
            )
        })
        .run_until(shutdown)
        .await;
        finish(telemetry, stopped)
    }
}

#[derive(Args)]
pub struct WorkerArgs {
    /// NATS server URL.
    #[arg(long, env = "NIMBUS_NATS_URL", default_value = DEFAULT_NATS_URL)]
    nats_url: String,
    #[command(flatten)]
    worker: WorkerFlags,
    #[command(flatten)]
    artifacts: ArtifactFlags,
    #[command(flatten)]
    secrets: SecretsFlags,
    #[command(flatten)]
    store: StoreFlags,
    #[command(flatten)]
    telemetry: TelemetryFlags,
}

impl WorkerArgs {
    /// Run a worker until a signal.
    pub async fn run(self) -> anyhow::Result<()> {
        let (client, store) = platform::open_store(
            &self.nats_url,
            "nimbus-worker",
            &self.store.config(),
            Role::Worker,
        )
        .await?;
        let telemetry = self.telemetry.start("nimbus-worker")?;
        let mut config = WorkerConfig {
            artifact_verifier: self.artifacts.verifier()?,
            env_key: self.secrets.env_key()?,
            export_spans: telemetry.is_some(),
            ..self.worker.config()?
        };
        let nats_servers = platform::nats_endpoints(&self.nats_url).await;
        config.outbound_reach.platform.extend(nats_servers);
        if config.env_key.is_none() {
            tracing::warn!(
                "no NIMBUS_ENV_KEY: functions with variables or secrets fail on this worker"
            );
        }
        if config.artifact_verifier.is_none() {
            tracing::warn!(
                "no NIMBUS_ARTIFACT_PUBLIC_KEY: this worker compiles every module it runs"
            );
        }
        let shutdown = Shutdown::on_terminate()?;
        let stopped = Component::spawn("worker", move |stop| {
            platform::run_worker(client, store, config, stop.requested())
        })
        .run_until(shutdown)
        .await;
        finish(telemetry, stopped)
    }
}
