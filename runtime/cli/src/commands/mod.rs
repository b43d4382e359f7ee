//! The `nimbus` subcommands, one file per family, so that a command's flags
//! and what it does with them are read together: each is an `Args` struct
//! that clap parses and an `async fn run(self)` that does the work.
//!
//! - `serve.rs` runs the platform: `up`, `api`, `worker` (the API's flags
//!   in `api_flags.rs`);
//! - `account.rs`: `register`, `login`;
//! - `functions.rs`: `deploy`, `ls`, `rm`, `logs`;
//! - `invoke.rs`: `invoke`, `invocation`;
//! - `bench.rs`: `bench`; `top.rs`: `top`;
//! - `args.rs`: what the client commands share (which API, JSON input).

pub mod account;
mod api_flags;
pub mod args;
pub mod bench;
pub mod function_config;
pub mod functions;
pub mod invoke;
pub mod keys;
pub mod kv;
pub mod serve;
pub mod top;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Run everything locally: nats-server, one API server and one worker.
    Up(Box<serve::UpArgs>),
    /// Run an API server against an existing NATS.
    Api(serve::ApiArgs),
    /// Run a worker against an existing NATS.
    Worker(serve::WorkerArgs),
    /// Print the public half of NIMBUS_ARTIFACT_KEY, for the workers'
    /// NIMBUS_ARTIFACT_PUBLIC_KEY.
    ArtifactPublicKey(keys::PublicKeyArgs),
    /// Print the environment key derived from NIMBUS_SECRETS_KEY, for the
    /// workers' NIMBUS_ENV_KEY.
    EnvKey(keys::EnvKeyArgs),
    /// Create an account.
    Register(account::RegisterArgs),
    /// Log in and remember the token and URL for the other commands.
    Login(account::LoginArgs),
    /// Show what you use of your quotas (functions, module bytes, jobs,
    /// logs per function).
    Account(account::AccountArgs),
    /// Upload a function: FILE is .wasm, .wat or .js. Prints its id.
    ///
    /// .wasm: a WASI command (`_start`: JSON on stdin, JSON on stdout) or a
    /// module exporting a numeric `handle`. .wat: the same, as text.
    /// .js: a function body with `input` bound (`return input + 1;`), a script
    /// defining `handler(input)`, or an ES module exporting `handler` or a
    /// default function; the return value (a Promise is awaited) is the
    /// JSON result, console.* goes to the logs, a thrown error fails the call,
    /// and a syntax error is refused at upload with its line and column.
    Deploy(functions::DeployArgs),
    /// Run a function and print its result.
    Invoke(invoke::InvokeArgs),
    /// Show an asynchronous invocation (from `invoke --async`).
    Invocation(invoke::InvocationArgs),
    /// List your functions.
    Ls(functions::ListArgs),
    /// Delete a function.
    Rm(functions::RemoveArgs),
    /// Show a function's recent log output.
    Logs(functions::LogsArgs),
    /// A function's variables, which its code reads as environment
    /// variables (`nimbus config set ID NAME=value`).
    Config(function_config::ConfigArgs),
    /// A function's secrets: environment variables stored encrypted, never
    /// shown again (`nimbus secret put ID NAME`, value on stdin).
    Secret(function_config::SecretArgs),
    /// Your key-value stores, the state your functions keep
    /// (`nimbus kv put default KEY VALUE`, `nimbus kv ls default`).
    Kv(kv::KvArgs),
    /// Load-test a function over HTTP and report throughput, latency and fuel.
    Bench(bench::BenchArgs),
    /// Live calls, errors, latency and fuel per function, from the API
    /// servers' /metrics.
    Top(top::TopArgs),
}

impl Command {
    /// Whether it runs part of the platform (and logs like a server) rather
    /// than calling it.
    pub fn serves(&self) -> bool {
        matches!(self, Self::Up(_) | Self::Api(_) | Self::Worker(_))
    }

    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Up(args) => (*args).run().await,
            Self::Api(args) => args.run().await,
            Self::Worker(args) => args.run().await,
            Self::ArtifactPublicKey(args) => args.run(),
            Self::EnvKey(args) => args.run(),
            Self::Register(args) => args.run().await,
            Self::Login(args) => args.run().await,
            Self::Deploy(args) => args.run().await,
            Self::Invoke(args) => args.run().await,
            Self::Invocation(args) => args.run().await,
            Self::Account(args) => args.run().await,
            Self::Ls(args) => args.run().await,
            Self::Rm(args) => args.run().await,
            Self::Logs(args) => args.run().await,
            Self::Config(args) => args.run().await,
            Self::Secret(args) => args.run().await,
            Self::Kv(args) => args.run().await,
            Self::Bench(args) => args.run().await,
            Self::Top(args) => args.run().await,
        }
    }
}
