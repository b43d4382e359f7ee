//! Running the API and the worker against a NATS URL; shared by `nimbus up`,
//! `nimbus api`, `nimbus worker` and the end-to-end tests, so that they all
//! run the same code, started and stopped as [`Component`]s.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use nimbus_api::{ApiConfig, AppState};
use nimbus_engine::{Engine, EngineConfig};
use nimbus_store::{Storage, StoreConfig};
use nimbus_worker::WorkerConfig;

use crate::component::{Component, Shutdown};

/// What a process is to NATS: the inbox its replies arrive in (only its
/// own kind may subscribe there, `deploy/nats/nats.conf`) and whether it
/// provisions the buckets and streams (API servers) or only attaches to
/// them (workers, whose NATS user may not administer streams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An API server.
    Api,
    /// A worker.
    Worker,
}

impl Role {
    fn inbox_prefix(self) -> &'static str {
        match self {
            Self::Api => nimbus_core::subjects::API_INBOX_PREFIX,
            Self::Worker => nimbus_core::subjects::WORKER_INBOX_PREFIX,
        }
    }
}

/// Connect to NATS, naming the connection after the component. `urls` may
/// list several servers of a cluster, comma-separated; the client fails over
/// between them (and learns the rest of the cluster from the server).
/// Credentials go in the URL (`nats://user:password@host:4222`, URL-safe
/// characters only): async-nats 0.51 does not read them from there itself.
pub async fn connect(urls: &str, name: &str, role: Role) -> anyhow::Result<async_nats::Client> {
    let servers = urls
        .split(',')
        .map(|url| url.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("invalid NATS URL list {:?}", redact(urls)))?;
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .custom_inbox_prefix(role.inbox_prefix())
        .connection_timeout(Duration::from_secs(5));
    if let Some(server) = servers.iter().find(|s| s.has_user_pass()) {
        let user = server.username().unwrap_or_default().to_owned();
        let password = server.password().unwrap_or_default().to_owned();
        options = options.user_and_password(user, password);
    }
    options
        .connect(servers)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", redact(urls)))
}

/// The addresses of the NATS servers `urls` names (as for [`connect`]), to
/// keep guests away from them; a server that cannot be resolved now is left
/// out (connecting to it fails the same way).
pub async fn nats_endpoints(urls: &str) -> Vec<std::net::SocketAddr> {
    let mut endpoints = Vec::new();
    for server in urls
        .split(',')
        .filter_map(|url| url.trim().parse::<async_nats::ServerAddr>().ok())
    {
        if let Ok(addresses) = server.socket_addrs().await {
            endpoints.extend(addresses);
        }
    }
    endpoints
}

/// The addresses of `endpoint` (`host:port`), one of the platform's own
/// that guests never reach (`--outbound-deny`).
pub fn resolve_endpoint(endpoint: &str) -> anyhow::Result<Vec<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs as _;
    Ok(endpoint
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {endpoint:?} (host:port expected)"))?
        .collect())
}

/// `urls` with passwords replaced, for messages and logs.
fn redact(urls: &str) -> String {
    urls.split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let credentials = &url[scheme + 3..at];
                let user = credentials.split(':').next().unwrap_or_default();
                format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
            }
            _ => url.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Connect and open (creating if needed) the JetStream buckets.
pub async fn open_store(
    url: &str,
    name: &str,
    config: &StoreConfig,
    role: Role,
) -> anyhow::Result<(async_nats::Client, Storage)> {
    let client = connect(url, name, role).await?;
    let store = match role {
        Role::Api => Storage::open(client.clone(), config).await,
        Role::Worker => Storage::attach(client.clone(), config).await,
    }
    .context("cannot open the JetStream buckets")?;
    Ok((client, store))
}

/// The engine an API server validates uploads with. It compiles and never
/// runs, but it is configured like a worker's (pooling allocator included,
/// with one slot), because wasmtime checks a module against the pool's limits
/// when compiling it: what the API accepts, every worker can run.
pub fn upload_engine(config: &ApiConfig) -> anyhow::Result<Engine> {
    Engine::new(EngineConfig {
        max_module_bytes: config.max_module_bytes,
        cache_capacity: 16,
        max_concurrency: 1,
        compiler: config.compiler.clone(),
        compile_budget: config.compile_budget,
        ..EngineConfig::default()
    })
    .map_err(|e| anyhow::anyhow!("cannot build the engine: {e}"))
}

/// The engine a worker runs functions with, sized to its concurrency and
/// its module cache budget. It takes modules of any size: it compiles only
/// what an API server accepted (and bounded) at upload.
pub fn worker_engine(config: &WorkerConfig) -> anyhow::Result<Engine> {
    Engine::new(EngineConfig {
        max_module_bytes: usize::MAX,
        max_concurrency: u32::try_from(config.concurrency.max(1))?,
        cache_bytes: config.module_cache_bytes,
        ..EngineConfig::default()
    })
    .map_err(|e| anyhow::anyhow!("cannot build the engine: {e}"))
}

/// Serve the API on `listener` until `shutdown`.
pub async fn run_api(
    client: async_nats::Client,
    store: Storage,
    listener: tokio::net::TcpListener,
    config: ApiConfig,
    jwt_secret: Vec<u8>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let engine = upload_engine(&config)?;
    let state = AppState::new(config, store, client, engine, &jwt_secret).await?;
    tracing::info!(addr = %listener.local_addr()?, "API listening");
    nimbus_api::serve(listener, state, shutdown).await?;
    Ok(())
}

/// Run a worker until `shutdown`.
pub async fn run_worker(
    client: async_nats::Client,
    store: Storage,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let engine = worker_engine(&config)?;
    nimbus_worker::run(client, store, engine, config, shutdown).await
}

/// What [`Components::start`] runs.
pub struct ComponentSettings {
    /// NATS URL(s) of the API server (with its credentials).
    pub api_nats_url: String,
    /// NATS URL(s) of the worker (with its credentials).
    pub worker_nats_url: String,
    /// Bucket settings.
    pub store: StoreConfig,
    /// Where the API listens.
    pub listener: tokio::net::TcpListener,
    /// API settings.
    pub api: ApiConfig,
    /// JWT secret.
    pub jwt_secret: Vec<u8>,
    /// Worker settings.
    pub worker: WorkerConfig,
}

/// An API server and a worker running as [`Component`]s of this process,
/// each with its own NATS connection: what `nimbus up` runs, and what tests
/// start.
pub struct Components {
    api: Component,
    worker: Component,
    /// The API's address.
    pub api_addr: std::net::SocketAddr,
}

impl Components {
    /// Connect both, open the buckets and start serving.
    pub async fn start(mut settings: ComponentSettings) -> anyhow::Result<Self> {
        let (api_client, api_store) = open_store(
            &settings.api_nats_url,
            "nimbus-api",
            &settings.store,
            Role::Api,
        )
        .await?;
        let (worker_client, worker_store) = open_store(
            &settings.worker_nats_url,
            "nimbus-worker",
            &settings.store,
            Role::Worker,
        )
        .await?;
        let api_addr = settings.listener.local_addr()?;
        // Guests never reach the platform itself.
        let platform = &mut settings.worker.outbound_reach.platform;
        platform.extend(nats_endpoints(&settings.worker_nats_url).await);
        platform.push(api_addr);
        let api = Component::spawn("API server", move |shutdown| {
            run_api(
                api_client,
                api_store,
                settings.listener,
                settings.api,
                settings.jwt_secret,
                shutdown.requested(),
            )
        });
        let worker = Component::spawn("worker", move |shutdown| {
            run_worker(
                worker_client,
                worker_store,
                settings.worker,
                shutdown.requested(),
            )
        });
        Ok(Self {
            api,
            worker,
            api_addr,
        })
    }

    /// Run until `shutdown` resolves or either component ends, then stop
    /// both. A component that ended while nobody asked is an error, even if
    /// it ended cleanly.
    pub async fn run_until(mut self, shutdown: Shutdown) -> anyhow::Result<()> {
        let ended = tokio::select! {
            () = shutdown.requested() => {
                tracing::info!("shutting down");
                None
            }
            () = self.api.ended() => Some("API server"),
            () = self.worker.ended() => Some("worker"),
        };
        self.stop().await?;
        match ended {
            Some(name) => anyhow::bail!("the {name} stopped by itself"),
            None => Ok(()),
        }
    }

    /// Stop both gracefully (requests and invocations in flight finish);
    /// the errors of both, if both failed.
    pub async fn stop(self) -> anyhow::Result<()> {
        match tokio::join!(self.api.stop(), self.worker.stop()) {
            (Err(api), Err(worker)) => Err(anyhow::anyhow!("{api:#}; and {worker:#}")),
            (api, worker) => api.and(worker),
        }
    }
}
