//! `nimbus`: run the platform (`up`, `api`, `worker`) and use it (`register`,
//! `login`, `deploy`, `invoke`, `ls`, `rm`, `logs`, `bench`).
//!
//! `main` only parses flags and wires components together; behaviour lives in
//! the library crates. Every flag can also be set through the environment
//! variable named in its help.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use nimbus_api::ApiConfig;
use nimbus_cli::nats_server::{self, NatsServer};
use nimbus_cli::{bench, client, platform};
use nimbus_store::StoreConfig;
use nimbus_worker::WorkerConfig;

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
    /// Create an account.
    Register(CredentialArgs),
    /// Log in and remember the token and URL for the other commands.
    Login(CredentialArgs),
    /// Upload a function: FILE is .wasm, .wat or .js. Prints its id.
    ///
    /// .wasm: a WASI command (`_start`: JSON on stdin, JSON on stdout) or a
    /// module exporting a numeric `handle`. .wat: the same, as text.
    /// .js: a function body with `input` bound (`return input + 1;`), a script
    /// defining `handler(input)`, or an ES module exporting `handler` or a
    /// default function; the return value (a Promise is awaited) is the
    /// JSON result, console.* goes to the logs, a thrown error fails the call,
    /// and a syntax error is refused at upload with its line and column.
    Deploy(DeployArgs),
    /// Run a function and print its result.
    Invoke(InvokeArgs),
    /// Show an asynchronous invocation (from `invoke --async`).
    Invocation(InvocationArgs),
    /// List your functions.
    Ls(ClientArgs),
    /// Delete a function.
    Rm(IdArgs),
    /// Show a function's recent log output.
    Logs(LogsArgs),
    /// Load-test a function over HTTP and report throughput, latency and fuel.
    Bench(BenchArgs),
}

#[derive(Args)]
struct ClientArgs {
    /// API URL (default: the one saved by `login`, else http://127.0.0.1:8080).
    #[arg(long, env = "NIMBUS_URL")]
    url: Option<String>,
    /// Bearer token (default: the one saved by `login`).
    #[arg(long, env = "NIMBUS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl ClientArgs {
    fn client(&self) -> client::Client {
        let saved = client::Config::load();
        let url = self
            .url
            .clone()
            .or(saved.url)
            .unwrap_or_else(|| client::DEFAULT_URL.to_owned());
        client::Client::new(&url, self.token.clone().or(saved.token))
    }
}

#[derive(Args)]
struct CredentialArgs {
    /// Username.
    username: String,
    /// Password (default: read one line from stdin).
    #[arg(long, env = "NIMBUS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

impl CredentialArgs {
    fn password(&self) -> anyhow::Result<String> {
        if let Some(password) = &self.password {
            return Ok(password.clone());
        }
        eprint!("password for {}: ", self.username);
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

#[derive(Args)]
struct DeployArgs {
    /// The module or source: .wasm, .wat or .js.
    file: PathBuf,
    /// A name for the function.
    #[arg(long)]
    name: Option<String>,
    /// Fuel budget per invocation.
    #[arg(long)]
    fuel: Option<u64>,
    /// Memory cap per invocation, bytes.
    #[arg(long)]
    memory_bytes: Option<u64>,
    /// Deadline per invocation, milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Largest input, bytes.
    #[arg(long)]
    max_input_bytes: Option<u64>,
    /// Largest output, bytes.
    #[arg(long)]
    max_output_bytes: Option<u64>,
    /// Log bytes kept per invocation.
    #[arg(long)]
    max_log_bytes: Option<u64>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct InvokeArgs {
    /// Function id.
    id: u64,
    /// Input JSON (default: null; `-` reads it from stdin).
    input: Option<String>,
    /// Also print fuel consumed and duration (to stderr).
    #[arg(short, long)]
    verbose: bool,
    /// Queue the invocation and print its id instead of waiting for the
    /// result; follow it with `nimbus invocation <id>`.
    #[arg(long = "async")]
    run_async: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct InvocationArgs {
    /// Invocation id, as printed by `invoke --async`.
    id: String,
    /// Wait until it has finished, then print its result (or fail with its error).
    #[arg(short, long)]
    wait: bool,
    /// How long `--wait` waits, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct IdArgs {
    /// Function id.
    id: u64,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct LogsArgs {
    /// Function id.
    id: u64,
    /// How many recent entries.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct BenchArgs {
    /// Function id.
    id: u64,
    /// Requests in flight at once.
    #[arg(short, long, default_value_t = 16)]
    concurrency: usize,
    /// Run for this many seconds.
    #[arg(short, long, default_value_t = 10.0, conflicts_with = "requests")]
    duration: f64,
    /// Send exactly this many requests instead.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Input JSON sent with every request.
    #[arg(long, default_value = "null")]
    input: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct StoreFlags {
    /// Replicas per JetStream bucket: 1 on a single server, 3 on a cluster.
    #[arg(long, env = "NIMBUS_REPLICAS", default_value_t = 1)]
    replicas: usize,
    /// Seconds one store operation keeps retrying while JetStream refuses
    /// it (a stream leader election after a node died); then 503.
    #[arg(long, env = "NIMBUS_STORE_FAILOVER_SECS", default_value_t = 15)]
    store_failover_secs: u64,
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
    /// Asynchronous invocations one user may have queued or running.
    #[arg(long, env = "NIMBUS_MAX_JOBS_PER_USER", default_value_t = 1000)]
    max_jobs_per_user: u64,
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
    /// Invocations one worker holds waiting for a slot; past that it answers
    /// new ones `overloaded` (HTTP 503 with Retry-After) at once.
    #[arg(
        long = "worker-queue",
        env = "NIMBUS_WORKER_QUEUE",
        default_value_t = 256
    )]
    queue_capacity: usize,
    /// Share compiled native artifacts through the object store (trusts it with native code).
    #[arg(long, env = "NIMBUS_SHARE_COMPILED")]
    share_compiled: bool,
    /// Benchmarking only: answer every invocation with its input without
    /// running it, to measure the platform's own round trip.
    #[arg(long, env = "NIMBUS_BENCHMARK_FLOOR")]
    benchmark_floor: bool,
    /// Attempts at an asynchronous invocation (platform failures and dead
    /// workers count) before it is recorded as failed.
    #[arg(long, env = "NIMBUS_JOB_ATTEMPTS", default_value_t = 3)]
    job_attempts: u32,
    /// Seconds a job may go unacknowledged (running jobs send progress) before
    /// another worker takes it over.
    #[arg(long, env = "NIMBUS_JOB_ACK_WAIT_SECS", default_value_t = 30)]
    job_ack_wait_secs: u64,
    /// MiB of compiled modules a worker keeps in memory (least recently
    /// used dropped first).
    #[arg(long, env = "NIMBUS_MODULE_CACHE_MB", default_value_t = 1024)]
    module_cache_mb: u64,
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
async fn main() {
    let command = Cli::parse().command;
    let serving = matches!(
        command,
        Command::Up(_) | Command::Api(_) | Command::Worker(_)
    );
    let default_filter = if serving {
        "info,async_nats=warn"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = match command {
        Command::Up(args) => up(args).await,
        Command::Api(args) => api(args).await,
        Command::Worker(args) => worker(args).await,
        Command::Register(args) => register(args).await,
        Command::Login(args) => login(args).await,
        Command::Deploy(args) => deploy(args).await,
        Command::Invoke(args) => invoke(args).await,
        Command::Invocation(args) => invocation(args).await,
        Command::Ls(args) => list(args).await,
        Command::Rm(args) => remove(args).await,
        Command::Logs(args) => logs(args).await,
        Command::Bench(args) => run_bench(args).await,
    };
    if let Err(error) = outcome {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

async fn register(args: CredentialArgs) -> anyhow::Result<()> {
    let client = args.client.client();
    let answer = client.register(&args.username, &args.password()?).await?;
    println!("{}", answer["message"].as_str().unwrap_or("registered"));
    Ok(())
}

async fn login(args: CredentialArgs) -> anyhow::Result<()> {
    let client = args.client.client();
    let token = client.login(&args.username, &args.password()?).await?;
    let path = client::Config {
        url: Some(client.url().to_owned()),
        token: Some(token),
    }
    .save()?;
    println!(
        "logged in as {} at {} (token saved in {})",
        args.username,
        client.url(),
        path.display()
    );
    Ok(())
}

async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let limits = client::DeployLimits {
        fuel: args.fuel,
        memory_bytes: args.memory_bytes,
        timeout_ms: args.timeout_ms,
        max_input_bytes: args.max_input_bytes,
        max_output_bytes: args.max_output_bytes,
        max_log_bytes: args.max_log_bytes,
    };
    let created = args
        .client
        .client()
        .deploy(&args.file, args.name.as_deref(), &limits)
        .await?;
    eprintln!(
        "deployed {} as function {} ({}, {} bytes, sha256 {})",
        args.file.display(),
        created["id"],
        created["runtime"].as_str().unwrap_or("?"),
        created["size"],
        created["digest"].as_str().unwrap_or("?"),
    );
    println!("{}", created["id"]);
    Ok(())
}

fn parse_input(text: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let text = match text {
        None => return Ok(serde_json::Value::Null),
        Some("-") => std::io::read_to_string(std::io::stdin())?,
        Some(text) => text.to_owned(),
    };
    serde_json::from_str(&text).with_context(|| format!("the input is not JSON: {text:?}"))
}

async fn invoke(args: InvokeArgs) -> anyhow::Result<()> {
    let input = parse_input(args.input.as_deref())?;
    if args.run_async {
        let record = args.client.client().invoke_async(args.id, &input).await?;
        println!("{}", record["id"].as_str().unwrap_or_default());
        return Ok(());
    }
    let answer = args.client.client().invoke(args.id, &input).await?;
    println!("{}", answer["result"]);
    if args.verbose {
        eprintln!(
            "fuel {}  duration {} us",
            answer["fuel_consumed"], answer["duration_us"]
        );
    }
    Ok(())
}

async fn invocation(args: InvocationArgs) -> anyhow::Result<()> {
    use nimbus_core::wire::InvocationStatus;
    let client = args.client.client();
    if !args.wait {
        let record = client.invocation(&args.id).await?;
        println!("{}", serde_json::to_string_pretty(&record)?);
        return Ok(());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let record = client.invocation(&args.id).await?;
        let status = serde_json::from_value::<InvocationStatus>(record["status"].clone()).ok();
        match status {
            Some(InvocationStatus::Failed) => anyhow::bail!(
                "invocation failed ({} {}): {}",
                record["error"]["source"].as_str().unwrap_or_default(),
                record["error"]["kind"].as_str().unwrap_or_default(),
                record["error"]["message"].as_str().unwrap_or_default()
            ),
            Some(InvocationStatus::Succeeded) => {
                println!("{}", record["result"]);
                return Ok(());
            }
            _ if std::time::Instant::now() >= deadline => {
                anyhow::bail!(
                    "invocation still {} after {} s",
                    record["status"],
                    args.timeout
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn list(args: ClientArgs) -> anyhow::Result<()> {
    let functions = args.client().list().await?;
    println!(
        "{:>6}  {:<20}  {:<7}  {:>9}  CREATED",
        "ID", "NAME", "RUNTIME", "SIZE"
    );
    for f in functions {
        println!(
            "{:>6}  {:<20}  {:<7}  {:>9}  {}",
            f["id"],
            f["name"].as_str().unwrap_or("-"),
            f["runtime"].as_str().unwrap_or("?"),
            f["size"],
            f["created"].as_str().unwrap_or("?"),
        );
    }
    Ok(())
}

async fn remove(args: IdArgs) -> anyhow::Result<()> {
    args.client.client().remove(args.id).await?;
    println!("deleted function {}", args.id);
    Ok(())
}

async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    for entry in args.client.client().logs(args.id, args.limit).await? {
        let text = entry["text"].as_str().unwrap_or_default();
        let truncated = if entry["truncated"] == true {
            " [truncated]"
        } else {
            ""
        };
        for line in text.lines() {
            println!(
                "{} {}{truncated}",
                entry["time"].as_str().unwrap_or("?"),
                line
            );
        }
    }
    Ok(())
}

async fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let config = bench::BenchConfig {
        id: args.id,
        concurrency: args.concurrency,
        stop: match args.requests {
            Some(n) => bench::Stop::Requests(n),
            None => bench::Stop::After(
                Duration::try_from_secs_f64(args.duration)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .context("--duration must be a positive number of seconds")?,
            ),
        },
        input: parse_input(Some(&args.input))?,
        progress: !args.json,
    };
    let report = bench::run(&args.client.client(), &config).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

impl ApiFlags {
    fn config(&self) -> ApiConfig {
        ApiConfig {
            bcrypt_cost: self.bcrypt_cost,
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            max_jobs_per_user: self.max_jobs_per_user,
            ..ApiConfig::default()
        }
    }
}

impl WorkerFlags {
    fn config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency,
            queue_capacity: self.queue_capacity,
            share_compiled: self.share_compiled,
            benchmark_floor: self.benchmark_floor,
            module_cache_bytes: self.module_cache_mb.saturating_mul(1 << 20),
            job_attempts: self.job_attempts,
            job_ack_wait: Duration::from_secs(self.job_ack_wait_secs.max(1)),
            ..WorkerConfig::default()
        }
    }
}

impl StoreFlags {
    fn config(&self) -> StoreConfig {
        StoreConfig {
            replicas: self.replicas,
            failover_wait: Duration::from_secs(self.store_failover_secs),
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
    let listener = tokio::net::TcpListener::bind(args.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.api.listen))?;
    let components = platform::Components::start(platform::ComponentSettings {
        api_nats_url: nats_url.clone(),
        worker_nats_url: nats_url.clone(),
        store: args.store.config(),
        listener,
        api: args.api.config(),
        jwt_secret: secret.into_bytes(),
        worker: args.worker.config(),
    })
    .await?;
    println!("Nimbus is up");
    println!("  API   http://{}", args.api.listen);
    println!("  NATS  {nats_url}");
    println!("  data  {}", args.data_dir.display());
    println!("Ctrl-C to stop.");

    shutdown_signal().await;
    tracing::info!("shutting down");
    let stopped = components.stop().await;
    if let Some(server) = nats {
        server.stop();
    }
    stopped
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
    client::write_private(path, &secret)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(secret)
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
