//! `nimbus`: run the platform (`up`, `api`, `worker`).
//!
//! `main` only parses flags and wires components together; each component's
//! behaviour lives in its own crate. Every flag can also be set through the
//! environment variable named in its help.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use nimbus_api::ApiConfig;
use nimbus_cli::nats_server::{self, NatsServer};
use nimbus_cli::platform;
use nimbus_store::StoreConfig;
use nimbus_worker::WorkerConfig;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "nimbus",
    version,
    about = "Nimbus: WebAssembly functions as a service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything locally: nats-server, one API server and one worker.
    Up(UpArgs),
    /// Run an API server against an existing NATS.
    Api(ApiArgs),
    /// Run a worker against an existing NATS.
    Worker(WorkerArgs),
}

#[derive(Args)]
struct StoreFlags {
    /// Replicas per JetStream bucket: 1 on a single server, 3 on a cluster.
    #[arg(long, env = "NIMBUS_REPLICAS", default_value_t = 1)]
    replicas: usize,
}

#[derive(Args)]
struct ApiFlags {
    /// Address the HTTP API listens on.
    #[arg(long, env = "NIMBUS_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// HS256 secret for tokens (at least 32 bytes); every API server of a
    /// deployment needs the same one.
    #[arg(long, env = "NIMBUS_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// bcrypt cost for new passwords.
    #[arg(long, env = "NIMBUS_BCRYPT_COST", default_value_t = 12)]
    bcrypt_cost: u32,
    /// Token lifetime in seconds.
    #[arg(long, env = "NIMBUS_TOKEN_TTL_SECS", default_value_t = 24 * 3600)]
    token_ttl_secs: u64,
}

#[derive(Args)]
struct WorkerFlags {
    /// Invocations one worker runs at once.
    #[arg(
        long = "worker-concurrency",
        env = "NIMBUS_WORKER_CONCURRENCY",
        default_value_t = 32
    )]
    concurrency: usize,
    /// Share compiled native artifacts through the object store (trusts it with native code).
    #[arg(long, env = "NIMBUS_SHARE_COMPILED")]
    share_compiled: bool,
}

#[derive(Args)]
struct UpArgs {
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
    store: StoreFlags,
}

#[derive(Args)]
struct ApiArgs {
    /// NATS server URL.
    #[arg(long, env = "NIMBUS_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[command(flatten)]
    api: ApiFlags,
    #[command(flatten)]
    store: StoreFlags,
}

#[derive(Args)]
struct WorkerArgs {
    /// NATS server URL.
    #[arg(long, env = "NIMBUS_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[command(flatten)]
    worker: WorkerFlags,
    #[command(flatten)]
    store: StoreFlags,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,async_nats=warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Up(args) => up(args).await,
        Command::Api(args) => api(args).await,
        Command::Worker(args) => worker(args).await,
    }
}

impl ApiFlags {
    fn config(&self) -> ApiConfig {
        ApiConfig {
            bcrypt_cost: self.bcrypt_cost,
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            ..ApiConfig::default()
        }
    }
}

impl WorkerFlags {
    fn config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency,
            share_compiled: self.share_compiled,
            ..WorkerConfig::default()
        }
    }
}

impl StoreFlags {
    fn config(&self) -> StoreConfig {
        StoreConfig {
            replicas: self.replicas,
            ..StoreConfig::default()
        }
    }
}

async fn api(args: ApiArgs) -> anyhow::Result<()> {
    let secret = args.api.jwt_secret.clone().context(
        "set NIMBUS_JWT_SECRET (or --jwt-secret): every API server must share one secret",
    )?;
    let (client, store) =
        platform::open_store(&args.nats_url, "nimbus-api", &args.store.config()).await?;
    let listener = tokio::net::TcpListener::bind(args.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.api.listen))?;
    platform::run_api(
        client,
        store,
        listener,
        args.api.config(),
        secret.into_bytes(),
        shutdown_signal(),
    )
    .await
}

async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let (client, store) =
        platform::open_store(&args.nats_url, "nimbus-worker", &args.store.config()).await?;
    platform::run_worker(client, store, args.worker.config(), shutdown_signal()).await
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let secret = match &args.api.jwt_secret {
        Some(secret) => secret.clone(),
        None => load_or_create_secret(&args.data_dir.join("jwt-secret"))?,
    };
    let nats = match &args.nats_url {
        Some(_) => None,
        None => {
            let binary = nats_server::locate(args.nats_server.as_deref())?;
            let store_dir = std::path::absolute(args.data_dir.join("nats"))?;
            Some(NatsServer::start(&binary, &store_dir, args.nats_port).await?)
        }
    };
    let nats_url = match (&args.nats_url, &nats) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.url(),
        (None, None) => unreachable!("a server was started when no URL was given"),
    };
    let store_config = args.store.config();
    let (api_client, api_store) =
        platform::open_store(&nats_url, "nimbus-api", &store_config).await?;
    let (worker_client, worker_store) =
        platform::open_store(&nats_url, "nimbus-worker", &store_config).await?;
    let listener = tokio::net::TcpListener::bind(args.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.api.listen))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let api = tokio::spawn(platform::run_api(
        api_client,
        api_store,
        listener,
        args.api.config(),
        secret.into_bytes(),
        stopped(stop_rx.clone()),
    ));
    let worker = tokio::spawn(platform::run_worker(
        worker_client,
        worker_store,
        args.worker.config(),
        stopped(stop_rx),
    ));
    println!("Nimbus is up");
    println!("  API   http://{}", args.api.listen);
    println!("  NATS  {nats_url}");
    println!("  data  {}", args.data_dir.display());
    println!("Ctrl-C to stop.");

    shutdown_signal().await;
    tracing::info!("shutting down");
    stop_tx.send(true).ok();
    let (api, worker) = tokio::join!(api, worker);
    if let Some(server) = nats {
        server.stop();
    }
    api??;
    worker??;
    Ok(())
}

/// The secret `up` signs tokens with when none is given: generated once and
/// kept (mode 0600) so tokens survive restarts.
fn load_or_create_secret(path: &Path) -> anyhow::Result<String> {
    if let Ok(secret) = std::fs::read_to_string(path) {
        let secret = secret.trim().to_owned();
        if secret.len() >= 32 {
            return Ok(secret);
        }
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private(path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
