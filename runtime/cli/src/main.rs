//! `nimbus`: run the platform (`up`, `api`, `worker`) and use it (`register`,
//! `login`, `deploy`, `invoke`, `ls`, `rm`, `logs`, `bench`).
//!
//! `main` only parses flags, sets up logging and hands over to the command,
//! one file per command family under `commands/`; behaviour lives in the
//! library crates. Every flag can also be set through the environment
//! variable named in its help.

mod commands;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "nimbus",
    version,
    about = "Nimbus: WebAssembly functions as a service"
)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() {
    // The compiler child of an API server (`nimbus_engine`'s
    // `compile_process.rs`): no runtime, no logging, no flags of its own.
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(nimbus_engine::COMPILE_MODULE_COMMAND.as_ref()) {
        let settings = args.next().unwrap_or_default();
        std::process::exit(nimbus_engine::serve_compile_module(
            &settings.to_string_lossy(),
        ));
    }
    tokio::runtime::Runtime::new()
        .expect("cannot start the async runtime")
        .block_on(run());
}

async fn run() {
    let command = Cli::parse().command;
    // Servers log their progress; client commands only what went wrong.
    let default_filter = if command.serves() {
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
    if let Err(error) = command.run().await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
