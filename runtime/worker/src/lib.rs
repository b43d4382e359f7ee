//! A Nimbus worker: takes synchronous invocations from the `workers` queue
//! group and asynchronous ones from the `FUNCTION_JOBS` work queue, runs them
//! on the engine, and answers or records the outcome.
//!
//! Workers hold no state but caches, so any number can join the queue group
//! and NATS spreads invocations among them; a worker that dies simply stops
//! receiving. Each worker bounds how many invocations it runs at once (its
//! slots, shared by synchronous calls and jobs) and how many calls wait for a
//! slot (its queue).
//!
//! - `config`: settings.
//! - `intake`: the queue-group subscription, the queue, load shedding and
//!   replies.
//! - `jobs`: pulling jobs when a slot is free, attempts, records.
//! - `invoke`: one run on the engine, its logs and error event.
//! - `metrics`: what the worker counts, served on `--metrics-listen`;
//!   `run_span`: a run as an OpenTelemetry span, when spans are exported.
//! - `modules`: the compiled module for a digest (cache, shared artifact
//!   kept on disk or in the object store, module compiled), and warming up
//!   at start with recent artifacts.
//!
//! Stopping drains: invocations already delivered are still answered.

pub mod config;
mod fair_queue;
mod hot_scripts;
mod intake;
mod invoke;
mod job_turns;
mod jobs;
mod kv_client;
mod metrics;
mod modules;
mod reach;
mod run_span;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use async_nats::Client;
use nimbus_engine::Engine;
use nimbus_store::Storage;
use tokio::sync::{Semaphore, watch};

pub use config::{MetricsListener, WorkerConfig};

use metrics::WorkerMetrics;

/// A running worker's shared parts.
struct Worker {
    /// Where guests may connect ([`WorkerConfig::outbound_reach`] and the
    /// NATS servers).
    reach: Arc<nimbus_engine::Reach>,
    client: Client,
    storage: Storage,
    engine: Engine,
    config: WorkerConfig,
    loading: modules::Loading,
    /// Artifacts kept on disk ([`WorkerConfig::artifact_dir`]).
    local_artifacts: Option<Arc<nimbus_store::LocalArtifacts>>,
    metrics: Arc<WorkerMetrics>,
    /// Calls of JavaScript functions, counted to prepare the hot ones.
    hot_scripts: hot_scripts::HotScripts,
}

/// Serve invocations until `shutdown` resolves, then finish the ones in
/// flight and return.
pub async fn run(
    client: Client,
    storage: Storage,
    engine: Engine,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let concurrency = config.concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    // Synchronous requests taken off the subscription and not started yet;
    // jobs give way to them.
    let waiting = Arc::new(AtomicUsize::new(0));
    let mut metrics = WorkerMetrics::new(config.metrics_function_series, &client);
    metrics.watch_capacity(slots.clone(), concurrency, waiting.clone());
    let metrics = Arc::new(metrics);
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_listener = config.metrics_listener.as_ref().and_then(|l| l.take());
    let metrics_address = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let metrics_server = match metrics_listener {
        Some(listener) => Some(metrics::serve(listener, metrics.clone(), async {
            metrics_stopped.await.ok();
        })?),
        None => None,
    };
    let reach = reach::outbound_reach(&config, &client.server_info(), metrics_address);
    let reach = Arc::new(reach);
    let kept_dir = config
        .artifact_dir
        .as_ref()
        .filter(|_| config.artifact_dir_bytes > 0);
    let local_artifacts = kept_dir.and_then(|dir| {
        nimbus_store::LocalArtifacts::open(dir, config.artifact_dir_bytes)
            .inspect_err(|e| {
                let dir = dir.display();
                tracing::warn!(%dir, error = %e, "not keeping artifacts on disk");
            })
            .ok()
            .map(Arc::new)
    });
    let (hot_scripts, hot) = hot_scripts::HotScripts::new();
    let worker = Arc::new(Worker {
        reach,
        client,
        storage,
        engine,
        config,
        loading: modules::Loading::default(),
        local_artifacts,
        metrics,
        hot_scripts,
    });
    // Before the intake: once a call reaches this worker, so does the news
    // of an artifact stored after it.
    let stored = worker.subscribe_stored().await;
    let intake = intake::Intake::subscribe(&worker).await?;
    let warming = tokio::spawn(worker.clone().warm());
    let loading_stored = tokio::spawn(worker.clone().load_as_stored(stored));
    let preparing = tokio::spawn(worker.clone().prepare_hot_scripts(hot));
    tracing::info!(
        concurrency,
        queue = worker.config.queue_capacity,
        "worker ready"
    );
    let (stopping, stop) = watch::channel(false);
    let calls = intake.run(
        worker.clone(),
        slots.clone(),
        waiting.clone(),
        shutdown,
        stopping,
    );
    let jobs = jobs::take_jobs(worker.clone(), slots.clone(), waiting, stop);
    tokio::join!(calls, jobs);
    warming.abort();
    loading_stored.abort();
    preparing.abort();
    // Wait for the invocations in flight.
    let _all = slots.acquire_many(concurrency as u32).await;
    worker.client.flush().await.ok();
    metrics_stop.send(()).ok();
    if let Some(server) = metrics_server {
        server.await.ok();
    }
    tracing::info!("worker stopped");
    Ok(())
}
