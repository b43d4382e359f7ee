//! `nimbus top`: live calls, errors, fuel and latency per function, from
//! API servers' `/metrics` (the arithmetic is the library's `top` module).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use nimbus_cli::top::{self, Row, Snapshot};

use super::args::ClientArgs;

#[derive(Args)]
pub struct TopArgs {
    /// Seconds between two refreshes.
    #[arg(short, long, default_value_t = 2.0)]
    interval: f64,
    /// Print one table (after one interval) and exit, without redrawing.
    #[arg(long)]
    once: bool,
    /// A `/metrics` URL to read, instead of the API's own; repeat it to add
    /// up several API servers (the platform-wide view).
    #[arg(long = "metrics-url", value_name = "URL")]
    metrics_urls: Vec<String>,
    #[command(flatten)]
    client: ClientArgs,
}

impl TopArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.interval.is_finite() && self.interval >= 0.1,
            "--interval must be at least 0.1 seconds"
        );
        let client = self.client.client();
        let urls = if self.metrics_urls.is_empty() {
            vec![format!("{}/metrics", client.url())]
        } else {
            self.metrics_urls.clone()
        };
        // Names of the caller's functions, when logged in (ids otherwise).
        let names: HashMap<String, String> = match client.list().await {
            Ok(functions) => functions
                .into_iter()
                .filter_map(|f| Some((f.id.to_string(), f.name?)))
                .collect(),
            Err(_) => HashMap::new(),
        };
        let http = reqwest::Client::new();
        let mut before = scrape(&http, &urls).await?;
        loop {
            tokio::time::sleep(Duration::from_secs_f64(self.interval)).await;
            let after = scrape(&http, &urls).await?;
            let table = render(&top::rows(&before, &after), &names, self.interval);
            if self.once {
                print!("{table}");
                return Ok(());
            }
            // Clear the screen, then draw.
            print!("\x1b[2J\x1b[H{table}");
            before = after;
        }
    }
}

/// All `urls` read now, added up.
async fn scrape(http: &reqwest::Client, urls: &[String]) -> anyhow::Result<Snapshot> {
    let mut snapshots = Vec::with_capacity(urls.len());
    for url in urls {
        let text = http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("could not read {url}"))?
            .text()
            .await?;
        snapshots.push(Snapshot::parse(&text, Instant::now())?);
    }
    Ok(Snapshot::sum(&snapshots).expect("at least one URL"))
}

fn render(rows: &[Row], names: &HashMap<String, String>, interval: f64) -> String {
    let mut out = format!(
        "nimbus top: the last {interval} s, busiest first\n\n{:<24} {:>9} {:>8} {:>8} {:>10} {:>14}\n",
        "FUNCTION", "CALLS/S", "CALLS", "ERRORS", "MEAN MS", "FUEL"
    );
    if rows.is_empty() {
        out.push_str("(no calls)\n");
    }
    for row in rows {
        let name = match names.get(&row.function) {
            Some(name) => format!("{} {name}", row.function),
            None => row.function.clone(),
        };
        let mean = row.mean_ms.map_or("-".into(), |ms| format!("{ms:.2}"));
        let _ = writeln!(
            out,
            "{name:<24} {:>9.1} {:>8} {:>8} {mean:>10} {:>14}",
            row.calls_per_second, row.calls, row.errors, row.fuel
        );
    }
    out
}
