//! `nimbus invoke` and `nimbus invocation`: running a function, at once or
//! queued, and following a queued run to its end.

use std::time::{Duration, Instant};

use clap::Args;
use nimbus_core::FunctionId;
use nimbus_core::wire::InvocationStatus;
use serde_json::Value;
use serde_json::value::RawValue;

use super::args::{ClientArgs, parse_input};

#[derive(Args)]
pub struct InvokeArgs {
    /// Function id, or its URL path (`/fn/<owner>/<name>[/...]`): then the
    /// input is POSTed as the body and the response body printed.
    function: String,
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

impl InvokeArgs {
    /// Print the result (or, with `--async`, the invocation id).
    pub async fn run(self) -> anyhow::Result<()> {
        let input = parse_input(self.input.as_deref())?;
        let client = self.client.client();
        let id = match self.function.parse::<FunctionId>() {
            Ok(id) => id,
            Err(_) if self.function.starts_with("/fn/") && !self.run_async => {
                return self.invoke_url(&client, &input).await;
            }
            Err(_) => anyhow::bail!(
                "{:?} is neither a function id nor a function URL path (/fn/<owner>/<name>)",
                self.function
            ),
        };
        if self.run_async {
            let record = client.invoke_async(id, &input).await?;
            println!("{}", record.id);
            return Ok(());
        }
        let executed = client.invoke(id, &input).await?;
        println!("{}", compact(&executed.result)?);
        if self.verbose {
            eprintln!(
                "fuel {}  duration {} us",
                executed.fuel_consumed, executed.duration_us
            );
        }
        Ok(())
    }
}

impl InvokeArgs {
    async fn invoke_url(
        &self,
        client: &nimbus_cli::client::Client,
        input: &Value,
    ) -> anyhow::Result<()> {
        let answer = client.invoke_url(&self.function, input).await?;
        println!("{}", String::from_utf8_lossy(&answer.body));
        if self.verbose {
            eprintln!(
                "status {}  fuel {}  duration {} us",
                answer.status,
                answer.fuel_consumed.unwrap_or(0),
                answer.duration_us.unwrap_or(0)
            );
        }
        anyhow::ensure!(
            answer.status < 400,
            "the function answered HTTP {}",
            answer.status
        );
        Ok(())
    }
}

#[derive(Args)]
pub struct InvocationArgs {
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

impl InvocationArgs {
    /// Print the record; with `--wait`, poll until it is final and print its
    /// result or fail with its error.
    pub async fn run(self) -> anyhow::Result<()> {
        let client = self.client.client();
        if !self.wait {
            let record = client.invocation(&self.id).await?;
            // Through a `Value` so that the result is indented with the
            // rest (a raw value is written as it came).
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::to_value(&record)?)?
            );
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(self.timeout);
        loop {
            let record = client.invocation(&self.id).await?;
            match record.status {
                InvocationStatus::Failed => match record.error {
                    Some(error) => anyhow::bail!(
                        "invocation failed ({} {}): {}",
                        error.source,
                        error.kind,
                        error.message
                    ),
                    None => anyhow::bail!("invocation failed"),
                },
                InvocationStatus::Succeeded => {
                    let result = match &record.result {
                        Some(result) => compact(result)?,
                        None => Value::Null,
                    };
                    println!("{result}");
                    return Ok(());
                }
                status if Instant::now() >= deadline => anyhow::bail!(
                    "invocation still {} after {} s",
                    serde_json::to_value(status)?,
                    self.timeout
                ),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// A function's result as the CLI prints it: compact JSON, whatever
/// spacing the function wrote it with.
fn compact(result: &RawValue) -> serde_json::Result<Value> {
    serde_json::from_str(result.get())
}
