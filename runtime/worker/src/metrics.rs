//! This worker's metrics, served at `GET /metrics` on its own address
//! (`--metrics-listen`; workers have no other HTTP listener). Names and the
//! bound on per-function series are in `nimbus_core::metrics`:
//!
//! - `nimbus_worker_runs_total`, `nimbus_worker_run_duration_seconds`
//!   (module ready or loaded, then run: the worker's whole share of a call),
//!   `nimbus_worker_fuel_consumed_total`, `nimbus_worker_run_fuel`: every
//!   run, synchronous calls and jobs;
//! - `nimbus_worker_module_loads_total{source}` and
//!   `nimbus_worker_module_load_duration_seconds{source}`: where each run's
//!   module came from, `cache` (warm), `artifact` (a signed artifact loaded,
//!   no compile) or `compile`; a cold start is a load that is not `cache`.
//!   Modules warmed at start count as `warm`. A run that waited for another
//!   run's load of the same module (single flight) counts no load;
//! - `nimbus_worker_slots`, `nimbus_worker_slots_busy`,
//!   `nimbus_worker_queue_depth` (read at each scrape) and
//!   `nimbus_worker_shed_total`: capacity, and calls refused for want of it;
//! - `nimbus_worker_jobs_running` and `nimbus_worker_job_attempts_total
//!   {result}`: `succeeded`, `failed` (the function's error, final),
//!   `retried` (a platform failure, tried again later) or `gave_up` (the
//!   last attempt failed);
//! - `nimbus_nats_*`: the NATS connection's counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use nimbus_core::FunctionId;
use nimbus_core::metrics::{self, InvocationMetrics, Keeper, Trigger};
use nimbus_core::wire::Reply;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::Semaphore;

/// Where a run's module came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ModuleSource {
    Cache,
    Artifact,
    /// An artifact this worker kept on its disk.
    Kept,
    Compile,
    Warm,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

impl ModuleSource {
    fn labels(self) -> SourceLabels {
        SourceLabels {
            source: match self {
                Self::Cache => "cache",
                Self::Artifact => "artifact",
                Self::Kept => "kept",
                Self::Compile => "compile",
                Self::Warm => "warm",
            },
        }
    }
}

/// How preparing a hot JavaScript function ended (`hot_scripts.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Preparation {
    Prepared,
    /// It cannot be prepared (its top level reads the clock, ...).
    Refused,
    /// A passing failure (its interpreter could not be read, preparing
    /// timed out): counted afresh.
    Failed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PreparationLabels {
    result: &'static str,
}

/// How a job's attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Attempt {
    Succeeded,
    Failed,
    Retried,
    GaveUp,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    result: &'static str,
}

/// Every metric this worker keeps.
pub(crate) struct WorkerMetrics {
    registry: Registry,
    runs: InvocationMetrics,
    module_loads: Family<SourceLabels, Counter>,
    module_load_time: Family<SourceLabels, Histogram, fn() -> Histogram>,
    shed: Counter,
    jobs_running: Gauge,
    job_attempts: Family<AttemptLabels, Counter>,
    preparations: Family<PreparationLabels, Counter>,
    /// Calls in the queue (`fair_queue.rs` keeps it).
    queue_depth: Arc<AtomicUsize>,
}

impl WorkerMetrics {
    pub(crate) fn new(function_series: usize, client: &async_nats::Client) -> Self {
        let mut registry = Registry::default();
        let runs = InvocationMetrics::register(&mut registry, Keeper::Worker, function_series);
        let module_loads = Family::<SourceLabels, Counter>::default();
        registry.register(
            "nimbus_worker_module_loads",
            "Modules a run needed, by where they came from (cache, artifact, compile, warm)",
            module_loads.clone(),
        );
        let module_load_time: Family<SourceLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(metrics::duration_buckets()));
        registry.register_with_unit(
            "nimbus_worker_module_load_duration",
            "Time to load a module that was not in memory, by source",
            Unit::Seconds,
            module_load_time.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "nimbus_worker_shed",
            "Calls refused (overloaded) because every slot was busy and the queue full",
            shed.clone(),
        );
        let jobs_running = Gauge::default();
        registry.register(
            "nimbus_worker_jobs_running",
            "Asynchronous invocations running",
            jobs_running.clone(),
        );
        let job_attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "nimbus_worker_job_attempts",
            "Attempts at asynchronous invocations, by result",
            job_attempts.clone(),
        );
        let preparations = Family::<PreparationLabels, Counter>::default();
        registry.register(
            "nimbus_worker_script_preparations",
            "Hot JavaScript functions prepared (snapshotted after their top level), by result",
            preparations.clone(),
        );
        registry.register_collector(Box::new(nimbus_store::NatsMetrics::new(client)));
        Self {
            registry,
            runs,
            module_loads,
            module_load_time,
            shed,
            jobs_running,
            job_attempts,
            preparations,
            queue_depth: Arc::default(),
        }
    }

    /// The count the call queue keeps of the calls waiting in it.
    pub(crate) fn queue_depth(&self) -> Arc<AtomicUsize> {
        self.queue_depth.clone()
    }

    /// Also report the slots and the queue, read at each scrape.
    pub(crate) fn watch_capacity(
        &mut self,
        slots: Arc<Semaphore>,
        concurrency: usize,
        waiting: Arc<AtomicUsize>,
    ) {
        self.registry.register_collector(Box::new(Capacity {
            slots,
            concurrency,
            waiting,
            queued: self.queue_depth.clone(),
        }));
    }

    pub(crate) fn run(
        &self,
        function: FunctionId,
        trigger: Trigger,
        reply: &Reply,
        duration: Duration,
    ) {
        let (outcome, fuel) = metrics::outcome_of(reply);
        self.runs.record(function, trigger, outcome, duration, fuel);
    }

    /// A module taken from `source`, in `duration` (nothing for the cache).
    pub(crate) fn module(&self, source: ModuleSource, duration: Duration) {
        self.module_loads.get_or_create(&source.labels()).inc();
        if source != ModuleSource::Cache {
            self.module_load_time
                .get_or_create(&source.labels())
                .observe(duration.as_secs_f64());
        }
    }

    /// A hot JavaScript function's preparation ended.
    pub(crate) fn preparation(&self, result: Preparation) {
        let result = match result {
            Preparation::Prepared => "prepared",
            Preparation::Refused => "refused",
            Preparation::Failed => "failed",
        };
        self.preparations
            .get_or_create(&PreparationLabels { result })
            .inc();
    }

    pub(crate) fn shed(&self) {
        self.shed.inc();
    }

    /// A job started: running until the guard drops.
    pub(crate) fn job_running(&self) -> impl Drop + use<> {
        struct Running(Gauge);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        self.jobs_running.inc();
        Running(self.jobs_running.clone())
    }

    pub(crate) fn attempt(&self, attempt: Attempt) {
        let result = match attempt {
            Attempt::Succeeded => "succeeded",
            Attempt::Failed => "failed",
            Attempt::Retried => "retried",
            Attempt::GaveUp => "gave_up",
        };
        self.job_attempts
            .get_or_create(&AttemptLabels { result })
            .inc();
    }

    fn encode(&self) -> String {
        metrics::encode(&self.registry)
    }
}

/// Slots and queue, read at each scrape.
#[derive(Debug)]
struct Capacity {
    slots: Arc<Semaphore>,
    concurrency: usize,
    /// The call taken off the queue, waiting for a slot (0 or 1).
    waiting: Arc<AtomicUsize>,
    queued: Arc<AtomicUsize>,
}

impl Collector for Capacity {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let busy = self
            .concurrency
            .saturating_sub(self.slots.available_permits());
        let gauges = [
            (
                "nimbus_worker_slots",
                "Invocations this worker runs at once, at most",
                self.concurrency,
            ),
            (
                "nimbus_worker_slots_busy",
                "Slots running an invocation",
                busy,
            ),
            (
                "nimbus_worker_queue_depth",
                "Synchronous calls waiting for a slot (queued, or next in line)",
                self.queued.load(Ordering::Relaxed) + self.waiting.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// Serve `GET /metrics` on `listener` until `stopped` resolves.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    worker_metrics: Arc<WorkerMetrics>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            let text = worker_metrics.encode();
            ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
        }),
    );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    }))
}
