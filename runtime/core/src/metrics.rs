//! The vocabulary of Nimbus's metrics, shared by API servers and workers:
//! the invocation metrics both keep, the bound on per-function series, and
//! the exposition (OpenMetrics text, which Prometheus scrapes), all with the
//! `prometheus-client` crate.
//!
//! Names follow OpenTelemetry's FaaS conventions where one fits, as
//! Prometheus spells them (`faas.invocations` is `faas_invocations_total`,
//! `faas.invoke_duration` is `faas_invoke_duration_seconds`); the rest start
//! with `nimbus_`. API servers count invocations end to end, as callers see
//! them (synchronous calls: `execute` and URLs); workers count runs, jobs
//! included, under `nimbus_worker_`.
//!
//! **Cardinality is bounded**: a process gives its own series to the first
//! [`FunctionSeries::cap`] functions it sees (500 by default, a flag of
//! `nimbus api` and `nimbus worker`), and counts every other function under
//! `function="other"`. Every other label takes a fixed set of values.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::FunctionId;
use crate::error::{ErrorKind, PlatformErrorKind};
use crate::wire::Reply;

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Functions with series of their own, by default (see the module docs).
pub const DEFAULT_FUNCTION_SERIES: usize = 500;

/// `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

/// Bucket bounds of duration histograms, in seconds: 100 µs to ~105 s.
pub fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 21)
}

/// Bucket bounds of fuel histograms: 1 000 to ~4.4 billion units, in steps
/// of 4 (a function's default budget is 1 billion).
pub fn fuel_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1_000.0, 4.0, 12)
}

/// What invoked a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// `POST /functions/{id}/execute`, synchronous.
    Execute,
    /// A request on the function's URL, `/fn/{owner}/{name}`.
    Url,
    /// An asynchronous invocation, run from the job queue.
    Job,
}

impl Trigger {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Execute => "execute",
            Self::Url => "url",
            Self::Job => "job",
        }
    }
}

/// How an invocation ended, for its labels: `None` is a success.
pub type Outcome = Option<ErrorKind>;

/// How the run a worker answered `reply` for ended, and the fuel it burned.
pub fn outcome_of(reply: &Reply) -> (Outcome, Option<u64>) {
    match reply {
        Reply::Ok(success) => (None, Some(success.fuel_consumed)),
        Reply::FunctionError(error) => (
            Some(ErrorKind::Function(error.kind)),
            Some(error.fuel_consumed),
        ),
        Reply::PlatformError(_) => (
            Some(ErrorKind::Platform(PlatformErrorKind::WorkerFailed)),
            None,
        ),
        Reply::Overloaded(_) => (
            Some(ErrorKind::Platform(PlatformErrorKind::Overloaded)),
            None,
        ),
    }
}

/// The `function` label of each function: its id for the first
/// [`FunctionSeries::cap`] functions seen, `other` for the rest (`None`).
#[derive(Debug)]
pub struct FunctionSeries {
    cap: usize,
    labelled: RwLock<HashSet<FunctionId>>,
}

impl FunctionSeries {
    /// Labels for at most `cap` functions.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            labelled: RwLock::new(HashSet::new()),
        }
    }

    /// Functions given series of their own, at most.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// `function`'s label value.
    pub fn label(&self, function: FunctionId) -> String {
        match self.own(function) {
            true => function.to_string(),
            false => "other".into(),
        }
    }

    /// Whether `function` has series of its own.
    fn own(&self, function: FunctionId) -> bool {
        let known = self
            .labelled
            .read()
            .expect("function series lock")
            .contains(&function);
        if known {
            return true;
        }
        let mut labelled = self.labelled.write().expect("function series lock");
        if labelled.contains(&function) || labelled.len() < self.cap {
            labelled.insert(function);
            true
        } else {
            false
        }
    }
}

/// Labels of an invocation's count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvocationLabels {
    /// The function's id, or `other` (see [`FunctionSeries`]).
    pub function: String,
    /// [`Trigger::as_str`].
    pub trigger: &'static str,
    /// `ok`, `function_error` or `platform_error`.
    pub outcome: &'static str,
    /// The error's kind (`out_of_fuel`, `no_worker`...), `none` on success.
    pub error_kind: &'static str,
}

/// Labels of an invocation's duration.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// The function's id, or `other`.
    pub function: String,
    /// [`Trigger::as_str`].
    pub trigger: &'static str,
}

/// Labels of fuel metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    /// The function's id, or `other`.
    pub function: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The invocation metrics an API server or a worker keeps (see the module
/// docs for which counts what).
#[derive(Debug)]
pub struct InvocationMetrics {
    functions: FunctionSeries,
    invocations: Family<InvocationLabels, Counter>,
    duration: HistogramFamily<TriggerLabels>,
    fuel: Family<FunctionLabels, Counter>,
    fuel_per_invocation: HistogramFamily<FunctionLabels>,
    /// The series a success updates, by function and trigger, for the
    /// functions with series of their own: a success (the common case)
    /// costs one map lookup, no label to build.
    successes: RwLock<HashMap<(FunctionId, Trigger), Success>>,
}

/// Handles on the series one function's successes (for one trigger)
/// update; they share their counts with the families'.
#[derive(Debug, Clone)]
struct Success {
    count: Counter,
    duration: Histogram,
    fuel: Counter,
    fuel_per_invocation: Histogram,
}

impl Success {
    fn observe(&self, duration: Duration, fuel: Option<u64>) {
        self.count.inc();
        self.duration.observe(duration.as_secs_f64());
        if let Some(fuel) = fuel {
            self.fuel.inc_by(fuel);
            self.fuel_per_invocation.observe(fuel as f64);
        }
    }
}

/// Which process keeps [`InvocationMetrics`]: it names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keeper {
    /// An API server: invocations end to end.
    Api,
    /// A worker: runs.
    Worker,
}

impl InvocationMetrics {
    /// The metrics, registered in `registry` under `keeper`'s names, with
    /// series of their own for at most `function_series` functions.
    pub fn register(registry: &mut Registry, keeper: Keeper, function_series: usize) -> Self {
        let metrics = Self {
            functions: FunctionSeries::new(function_series),
            invocations: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(duration_buckets())),
            fuel: Family::default(),
            fuel_per_invocation: Family::new_with_constructor(|| Histogram::new(fuel_buckets())),
            successes: RwLock::default(),
        };
        let (calls, duration, fuel, per_call) = match keeper {
            Keeper::Api => (
                "faas_invocations",
                "faas_invoke_duration",
                "nimbus_fuel_consumed",
                "nimbus_invocation_fuel",
            ),
            Keeper::Worker => (
                "nimbus_worker_runs",
                "nimbus_worker_run_duration",
                "nimbus_worker_fuel_consumed",
                "nimbus_worker_run_fuel",
            ),
        };
        let (what, time) = match keeper {
            Keeper::Api => (
                "Invocations answered, by function, trigger, outcome and error kind",
                "Invocation time end to end at the API server (dispatch to answer)",
            ),
            Keeper::Worker => (
                "Runs on this worker, by function, trigger, outcome and error kind",
                "Time the worker spent on a run: its module loaded if need be, the run, its logs published",
            ),
        };
        registry.register(calls, what, metrics.invocations.clone());
        registry.register_with_unit(duration, time, Unit::Seconds, metrics.duration.clone());
        registry.register(
            fuel,
            "Fuel consumed, by function (successes and failures alike)",
            metrics.fuel.clone(),
        );
        registry.register(
            per_call,
            "Fuel one invocation consumed, by function",
            metrics.fuel_per_invocation.clone(),
        );
        metrics
    }

    /// Count one invocation of `function` that ended with `outcome` after
    /// `duration`, having consumed `fuel` (`None`: it never ran).
    pub fn record(
        &self,
        function: FunctionId,
        trigger: Trigger,
        outcome: Outcome,
        duration: Duration,
        fuel: Option<u64>,
    ) {
        if outcome.is_none() {
            let successes = self.successes.read().expect("metrics lock");
            if let Some(success) = successes.get(&(function, trigger)) {
                success.observe(duration, fuel);
                return;
            }
            drop(successes);
            if let Some(success) = self.success(function, trigger) {
                success.observe(duration, fuel);
                return;
            }
        }
        let function = self.functions.label(function);
        let (outcome, error_kind) = outcome_labels(outcome);
        let trigger = trigger.as_str();
        self.invocations
            .get_or_create(&InvocationLabels {
                function: function.clone(),
                trigger,
                outcome,
                error_kind,
            })
            .inc();
        self.duration
            .get_or_create(&TriggerLabels {
                function: function.clone(),
                trigger,
            })
            .observe(duration.as_secs_f64());
        if let Some(fuel) = fuel {
            let labels = FunctionLabels { function };
            self.fuel.get_or_create(&labels).inc_by(fuel);
            self.fuel_per_invocation
                .get_or_create(&labels)
                .observe(fuel as f64);
        }
    }

    /// The success series of `function` invoked by `trigger`, made and
    /// remembered, if it has series of its own.
    fn success(&self, function: FunctionId, trigger: Trigger) -> Option<Success> {
        let key = (function, trigger);
        if !self.functions.own(function) {
            return None;
        }
        let label = function.to_string();
        let (outcome, error_kind) = outcome_labels(None);
        let success = Success {
            count: self
                .invocations
                .get_or_create(&InvocationLabels {
                    function: label.clone(),
                    trigger: trigger.as_str(),
                    outcome,
                    error_kind,
                })
                .clone(),
            duration: self
                .duration
                .get_or_create(&TriggerLabels {
                    function: label.clone(),
                    trigger: trigger.as_str(),
                })
                .clone(),
            fuel: self
                .fuel
                .get_or_create(&FunctionLabels {
                    function: label.clone(),
                })
                .clone(),
            fuel_per_invocation: self
                .fuel_per_invocation
                .get_or_create(&FunctionLabels { function: label })
                .clone(),
        };
        self.successes
            .write()
            .expect("metrics lock")
            .insert(key, success.clone());
        Some(success)
    }
}

/// The `outcome` and `error_kind` labels of `outcome`.
fn outcome_labels(outcome: Outcome) -> (&'static str, &'static str) {
    match outcome {
        None => ("ok", "none"),
        Some(kind @ ErrorKind::Function(_)) => ("function_error", kind.as_str()),
        Some(kind @ ErrorKind::Platform(_)) => ("platform_error", kind.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FunctionErrorKind;

    #[test]
    fn functions_past_the_cap_share_one_series() {
        let series = FunctionSeries::new(2);
        assert_eq!(series.label(7), "7");
        assert_eq!(series.label(9), "9");
        assert_eq!(series.label(11), "other");
        assert_eq!(series.label(7), "7", "a labelled function keeps its label");
    }

    #[test]
    fn invocations_are_counted_with_their_outcome_fuel_and_time() {
        let mut registry = Registry::default();
        let metrics = InvocationMetrics::register(&mut registry, Keeper::Api, 1);
        let ms = Duration::from_millis;
        // The first success makes the function's series, the second finds them.
        metrics.record(1, Trigger::Execute, None, ms(3), Some(2_000));
        metrics.record(1, Trigger::Execute, None, ms(3), Some(3_000));
        let fuel = Some(ErrorKind::Function(FunctionErrorKind::OutOfFuel));
        metrics.record(1, Trigger::Url, fuel, ms(9), Some(7_000));
        let none = Some(ErrorKind::Platform(PlatformErrorKind::NoWorker));
        metrics.record(2, Trigger::Execute, none, ms(1), None);
        let text = encode(&registry);
        for line in [
            "faas_invocations_total{function=\"1\",trigger=\"execute\",outcome=\"ok\",error_kind=\"none\"} 2",
            "faas_invocations_total{function=\"1\",trigger=\"url\",outcome=\"function_error\",error_kind=\"out_of_fuel\"} 1",
            "faas_invocations_total{function=\"other\",trigger=\"execute\",outcome=\"platform_error\",error_kind=\"no_worker\"} 1",
            "nimbus_fuel_consumed_total{function=\"1\"} 12000",
            "nimbus_invocation_fuel_count{function=\"1\"} 3",
            "faas_invoke_duration_seconds_count{function=\"1\",trigger=\"url\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
