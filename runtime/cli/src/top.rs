//! What `nimbus top` shows: per function, the calls, errors, fuel and mean
//! latency between two scrapes of API servers' `/metrics` (parsed with the
//! `prometheus-parse` crate). Several API servers' scrapes add up, so the
//! figures are the platform's when every API server is scraped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_parse::{Scrape, Value};

/// One function's counters, as scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Invocations answered.
    pub calls: f64,
    /// Of those, the ones that failed (the function's fault or the
    /// platform's).
    pub errors: f64,
    /// Fuel burned.
    pub fuel: f64,
    /// Seconds spent answering, summed.
    pub seconds: f64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.fuel += other.fuel;
        self.seconds += other.seconds;
    }
}

/// Counters by function (`function` label: an id, or `other` past the
/// per-function series cap) at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When it was taken.
    pub at: Instant,
    /// By function.
    pub functions: BTreeMap<String, Totals>,
}

fn value_of(value: &Value) -> f64 {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(_) | Value::Summary(_) => 0.0,
    }
}

impl Snapshot {
    /// The counters of one `/metrics` text (OpenMetrics, as API servers
    /// write it).
    pub fn parse(text: &str, at: Instant) -> anyhow::Result<Self> {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .context("could not parse /metrics")?;
        let mut functions: BTreeMap<String, Totals> = BTreeMap::new();
        for sample in &scrape.samples {
            let Some(function) = sample.labels.get("function") else {
                continue;
            };
            let totals = functions.entry(function.to_owned()).or_default();
            let value = value_of(&sample.value);
            match sample.metric.as_str() {
                "faas_invocations_total" => {
                    totals.calls += value;
                    if sample.labels.get("outcome") != Some("ok") {
                        totals.errors += value;
                    }
                }
                "nimbus_fuel_consumed_total" => totals.fuel += value,
                "faas_invoke_duration_seconds_sum" => totals.seconds += value,
                _ => {}
            }
        }
        functions.retain(|_, t| *t != Totals::default());
        Ok(Self { at, functions })
    }

    /// Several servers' snapshots as one.
    pub fn sum(snapshots: &[Snapshot]) -> Option<Snapshot> {
        let mut all = snapshots.first()?.clone();
        for snapshot in &snapshots[1..] {
            for (function, totals) in &snapshot.functions {
                all.functions
                    .entry(function.clone())
                    .or_default()
                    .add(totals);
            }
        }
        Some(all)
    }
}

/// One line of `nimbus top`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The function's id (or `other`).
    pub function: String,
    /// Calls in the interval.
    pub calls: f64,
    /// Failed calls in the interval.
    pub errors: f64,
    /// Fuel burned in the interval (exact: the sum of what answers reported).
    pub fuel: f64,
    /// Calls per second.
    pub calls_per_second: f64,
    /// Mean latency of the interval's calls, milliseconds.
    pub mean_ms: Option<f64>,
}

/// What happened between `before` and `after`, busiest function first;
/// functions without calls in between are left out. A counter that went
/// down (a server restarted) counts from zero.
pub fn rows(before: &Snapshot, after: &Snapshot) -> Vec<Row> {
    let seconds = after
        .at
        .saturating_duration_since(before.at)
        .max(Duration::from_millis(1))
        .as_secs_f64();
    let mut rows: Vec<Row> = after
        .functions
        .iter()
        .filter_map(|(function, now)| {
            let then = before.functions.get(function).copied().unwrap_or_default();
            let delta = |now: f64, then: f64| if now >= then { now - then } else { now };
            let calls = delta(now.calls, then.calls);
            (calls > 0.0).then(|| Row {
                function: function.clone(),
                calls,
                errors: delta(now.errors, then.errors),
                fuel: delta(now.fuel, then.fuel),
                calls_per_second: calls / seconds,
                mean_ms: Some(delta(now.seconds, then.seconds) / calls * 1000.0),
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        b.calls
            .total_cmp(&a.calls)
            .then(a.function.cmp(&b.function))
    });
    rows
}
