//! `nimbus bench`: its flags and its report on stdout. The load generator
//! itself is the library's `bench` module, kept apart from flag parsing.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nimbus_cli::bench::{self, BenchConfig, Stop, Target};
use nimbus_core::FunctionId;

use super::args::{ClientArgs, parse_input};

#[derive(Args)]
pub struct BenchArgs {
    /// Function id (calls `execute`), or a URL to POST the input to: a
    /// function URL path (`/fn/<owner>/<name>`), or an absolute URL (another
    /// server to compare with, such as `wasmtime serve`). Several are
    /// called round-robin.
    #[arg(required = true, num_args = 1..)]
    functions: Vec<String>,
    /// Requests in flight at once.
    #[arg(short, long, default_value_t = 16)]
    concurrency: usize,
    /// Run for this many seconds.
    #[arg(short, long, default_value_t = 10.0, conflicts_with = "requests")]
    duration: f64,
    /// Send exactly this many requests instead.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Input JSON sent with every request (for a URL, the body itself).
    #[arg(long, default_value = "null")]
    input: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

impl BenchArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let stop = match self.requests {
            Some(n) => Stop::Requests(n),
            None => Stop::After(
                Duration::try_from_secs_f64(self.duration)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .context("--duration must be a positive number of seconds")?,
            ),
        };
        let targets = self
            .functions
            .iter()
            .map(|function| match function.parse::<FunctionId>() {
                Ok(id) => Target::Function(id),
                Err(_) => Target::Url(function.clone()),
            })
            .collect();
        let config = BenchConfig {
            targets,
            concurrency: self.concurrency,
            stop,
            input: parse_input(Some(&self.input))?,
            progress: !self.json,
        };
        let report = bench::run(&self.client.client(), &config).await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{report}");
        }
        Ok(())
    }
}
