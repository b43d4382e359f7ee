//! `nimbus bench`: an HTTP load generator for one function, or several
//! called round-robin (many distinct functions at once, as a platform sees
//! after a deploy or a restart).
//!
//! N concurrent loops send the same request (an execute call, or a POST to
//! a URL: a function URL, or any HTTP server, such as `wasmtime serve`, to
//! compare with) for a duration or until a request count is reached, each
//! recording its latency, the fuel reported and, for failures, the error
//! kind. The report gives throughput, latency percentiles, fuel per
//! invocation and errors by kind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::client::Client;

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this long.
    After(Duration),
    /// After this many requests.
    Requests(u64),
}

/// What a bench run calls.
#[derive(Debug, Clone)]
pub enum Target {
    /// `POST /functions/{id}/execute` with `{"input": ...}`.
    Function(u64),
    /// `POST <url>` with the input as the body: a function URL (absolute,
    /// or a path on the client's API) or any HTTP endpoint. Fuel is read
    /// from the `Nimbus-Fuel-Consumed` header when there is one.
    Url(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Function(id) => write!(f, "{id}"),
            Self::Url(url) => f.write_str(url),
        }
    }
}

/// A bench run's settings.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// What to call: one target, or several called round-robin.
    pub targets: Vec<Target>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// When to stop.
    pub stop: Stop,
    /// The input sent with every request.
    pub input: Value,
    /// Draw a progress bar on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Fuel per successful invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Fuel {
    /// Least.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Most.
    pub max: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The function (its id) or URL; for several, how many and the first.
    pub function: String,
    /// Concurrency used.
    pub concurrency: usize,
    /// Requests sent (and answered or failed).
    pub requests: u64,
    /// 200 answers.
    pub ok: u64,
    /// Failures by error kind (`connection` when no HTTP answer came back).
    pub errors: BTreeMap<String, u64>,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
    /// Requests per second.
    pub throughput_rps: f64,
    /// Latency of all requests.
    pub latency_ms: Latency,
    /// Fuel of successful invocations (absent if none succeeded).
    pub fuel: Option<Fuel>,
}

#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    fuel: Vec<u64>,
    errors: BTreeMap<String, u64>,
}

/// Run the benchmark.
pub async fn run(client: &Client, config: &BenchConfig) -> anyhow::Result<Report> {
    anyhow::ensure!(!config.targets.is_empty(), "nothing to call");
    let mut requests = Vec::with_capacity(config.targets.len());
    for (i, target) in config.targets.iter().enumerate() {
        // Fail fast on a bad id, URL or token instead of reporting a run of
        // errors; only the first target, so the others stay cold.
        requests.push(prepare(client, target, &config.input, i == 0).await?);
    }
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicU64::new(0));

    let progress = progress_bar(config);
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(config.concurrency);
    for _ in 0..config.concurrency.max(1) {
        let (requests, next) = (requests.clone(), next.clone());
        let issued = issued.clone();
        let stop = config.stop;
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            loop {
                let may_send = match stop {
                    Stop::After(duration) => started.elapsed() < duration,
                    Stop::Requests(n) => issued.fetch_add(1, Ordering::Relaxed) < n,
                };
                if !may_send {
                    break;
                }
                let turn = next.fetch_add(1, Ordering::Relaxed) as usize;
                let request = requests[turn % requests.len()]
                    .try_clone()
                    .expect("a bytes body clones");
                let sent = Instant::now();
                let outcome = send(request).await;
                samples.latencies.push(sent.elapsed());
                match outcome {
                    Ok(fuel) => samples.fuel.push(fuel),
                    Err(kind) => *samples.errors.entry(kind).or_default() += 1,
                }
                if let Stop::Requests(_) = stop {
                    progress.inc(1);
                } else {
                    progress.set_position(started.elapsed().as_millis() as u64);
                }
            }
            samples
        }));
    }
    let mut all = Samples::default();
    for task in tasks {
        let samples = task.await?;
        all.latencies.extend(samples.latencies);
        all.fuel.extend(samples.fuel);
        for (kind, n) in samples.errors {
            *all.errors.entry(kind).or_default() += n;
        }
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    Ok(report(config, all, elapsed))
}

/// The request that calls `target`; with `check`, sent once first and
/// required to succeed.
async fn prepare(
    client: &Client,
    target: &Target,
    input: &Value,
    check: bool,
) -> anyhow::Result<reqwest::RequestBuilder> {
    match target {
        Target::Function(id) => {
            if check {
                client.invoke(*id, input).await?;
            }
            let body = serde_json::to_vec(&serde_json::json!({ "input": input }))?;
            client.execute_request(*id, &body)
        }
        Target::Url(url) => {
            let request = client.url_request(url, serde_json::to_vec(input)?);
            if check {
                let first = request
                    .try_clone()
                    .expect("a bytes body clones")
                    .send()
                    .await?;
                anyhow::ensure!(
                    first.status().is_success(),
                    "{url} answered {}",
                    first.status()
                );
            }
            Ok(request)
        }
    }
}

/// One request: the fuel it reported, or its error kind.
async fn send(request: reqwest::RequestBuilder) -> Result<u64, String> {
    let response = request.send().await.map_err(|_| "connection".to_owned())?;
    let status = response.status();
    let header_fuel = response
        .headers()
        .get("nimbus-fuel-consumed")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if let (true, Some(fuel)) = (status.is_success(), header_fuel) {
        return Ok(fuel);
    }
    if status.is_success() {
        Ok(body["fuel_consumed"].as_u64().unwrap_or(0))
    } else {
        Err(body["error"]["kind"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("http_{}", status.as_u16())))
    }
}

fn progress_bar(config: &BenchConfig) -> indicatif::ProgressBar {
    if !config.progress {
        return indicatif::ProgressBar::hidden();
    }
    let (length, template) = match config.stop {
        Stop::Requests(n) => (n, "{bar:40} {pos}/{len} requests, {per_sec}"),
        Stop::After(duration) => (duration.as_millis() as u64, "{bar:40} {elapsed} of the run"),
    };
    let bar = indicatif::ProgressBar::new(length);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn report(config: &BenchConfig, mut samples: Samples, elapsed: Duration) -> Report {
    samples.latencies.sort_unstable();
    let requests = samples.latencies.len() as u64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let percentile = |p: f64| {
        if samples.latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * samples.latencies.len() as f64).ceil() as usize;
        ms(samples.latencies[rank.clamp(1, samples.latencies.len()) - 1])
    };
    let mean = if requests == 0 {
        0.0
    } else {
        ms(samples.latencies.iter().sum::<Duration>()) / requests as f64
    };
    let fuel = (!samples.fuel.is_empty()).then(|| Fuel {
        min: *samples.fuel.iter().min().expect("not empty"),
        max: *samples.fuel.iter().max().expect("not empty"),
        mean: samples.fuel.iter().sum::<u64>() as f64 / samples.fuel.len() as f64,
    });
    Report {
        function: match &config.targets[..] {
            [one] => one.to_string(),
            [first, ..] => format!("{} targets round-robin, from {first}", config.targets.len()),
            [] => String::new(),
        },
        concurrency: config.concurrency,
        requests,
        ok: samples.fuel.len() as u64,
        errors: samples.errors,
        elapsed_s: elapsed.as_secs_f64(),
        throughput_rps: requests as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        latency_ms: Latency {
            p50: percentile(50.0),
            p90: percentile(90.0),
            p99: percentile(99.0),
            p999: percentile(99.9),
            max: samples.latencies.last().copied().map(ms).unwrap_or(0.0),
            mean,
        },
        fuel,
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "function {}: {} requests in {:.2} s at concurrency {} ({} ok)",
            self.function, self.requests, self.elapsed_s, self.concurrency, self.ok
        )?;
        writeln!(f, "throughput  {:.1} req/s", self.throughput_rps)?;
        let l = &self.latency_ms;
        writeln!(
            f,
            "latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        match &self.fuel {
            Some(fuel) => writeln!(
                f,
                "fuel        min {}  mean {:.1}  max {}",
                fuel.min, fuel.mean, fuel.max
            )?,
            None => writeln!(f, "fuel        (no successful invocation)")?,
        }
        if self.errors.is_empty() {
            write!(f, "errors      none")
        } else {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            write!(f, "errors      {}", errors.join(", "))
        }
    }
}
