//! A Nimbus worker: takes synchronous invocations from the `workers` queue
//! group on `functions.execute.*`, runs them on the engine and replies.
//!
//! Workers hold no state but caches, so any number can join the queue group
//! and NATS spreads invocations among them; a worker that dies simply stops
//! receiving. Each worker bounds how many invocations it runs at once and
//! how many wait for a slot (its queue). It takes requests off its
//! subscription as they arrive, so it knows how long each has waited:
//! - a request that arrives with the queue full is answered at once with
//!   `Overloaded` (the API answers 503 with `Retry-After`), instead of waiting
//!   where nobody can see it;
//! - a request that waited longer than its requester waits for the answer
//!   (`wait_ms`) is skipped rather than run for nobody. Under overload this
//!   keeps a worker's capacity for requests that can still be answered.
//!
//! Asynchronous invocations come from the `FUNCTION_JOBS` work-queue stream
//! through one durable pull consumer that all workers share. A worker pulls a
//! job only when it has a free slot (the same slots as synchronous calls), so
//! jobs go to workers with capacity: real backpressure. A job's record in the
//! `invocations` bucket follows it (running, then succeeded or failed) and
//! the final record is also published on `functions.result.<invocation>`.
//! Delivery is at least once: a running job is kept claimed by progress acks,
//! and a job whose worker dies is delivered again once its ack wait
//! ([`WorkerConfig::job_ack_wait`]) passes. A platform failure (module
//! missing, store unreachable) or a dead worker costs an attempt; after
//! [`WorkerConfig::job_attempts`] of them the record is marked failed (the
//! delivery after a last attempt that never finished does only that). A
//! function failure is a result, not retried.
//!
//! NATS queue groups pick a member at random, without regard to load, so a
//! busy worker can shed a request while another is idle; the queue is sized
//! (default 256) so that this happens only under real overload.
//!
//! Per invocation it also publishes the guest's stderr on
//! `functions.logs.<id>` (kept by the log stream) and, when the function
//! failed, an event on `functions.error`. Stopping drains: invocations
//! already delivered are still answered.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use async_nats::{Client, HeaderMap, Message};
use futures::StreamExt;
use nimbus_core::wire::{InvocationOutput, InvocationReply, InvocationRequest};
use nimbus_core::wire::{InvocationRecord, InvocationStatus, Job, RecordedError};
use nimbus_core::{LimitPolicy, subjects};
use nimbus_engine::{CompiledModule, Engine};
use nimbus_store::{Store, now_rfc3339};
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, mpsc, watch};

/// Backoff after a JetStream error, and the first retry delay of a job.
const JOB_POLL: Duration = Duration::from_secs(1);
/// How often an idle worker looks for a job: the longest a queued job waits
/// for an idle worker.
const JOB_IDLE_POLL: Duration = Duration::from_millis(200);
/// Longest wait for the answer to a job fetch (normally immediate).
const JOB_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the jobs loop steps back when synchronous calls wait for a slot.
const JOB_YIELD: Duration = Duration::from_millis(5);

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Invocations run at once by this worker.
    pub concurrency: usize,
    /// Invocations that may wait for a slot; past that, new ones are
    /// answered `Overloaded` at once.
    pub queue_capacity: usize,
    /// Limits this worker accepts; requests beyond them are refused.
    pub policy: LimitPolicy,
    /// Load and publish precompiled native artifacts through the object
    /// store, so a module compiled by one worker is not compiled again by the
    /// next. Off by default: it means trusting the object store with native
    /// code, so only enable it where NATS permissions keep users out of the
    /// `modules` bucket (they do in deploy/nats).
    pub share_compiled: bool,
    /// Benchmarking only: answer every invocation with its input, without
    /// fetching or running the module. Measures the platform's own round
    /// trip (HTTP -> API -> NATS -> worker -> back), the floor that
    /// `make bench` compares real functions against.
    pub benchmark_floor: bool,
    /// Bytes of compiled modules kept in memory (see
    /// `nimbus_engine::EngineConfig::cache_bytes`).
    pub module_cache_bytes: u64,
    /// Attempts at an asynchronous invocation before it is recorded as
    /// failed, counting runs that failed for platform reasons and runs whose
    /// worker died.
    pub job_attempts: u32,
    /// How long a job may go without an ack (a running job sends progress
    /// acks four times per period) before JetStream hands it to another
    /// worker: how soon a dead worker's job is taken up again.
    pub job_ack_wait: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            queue_capacity: 256,
            policy: LimitPolicy::default(),
            share_compiled: false,
            benchmark_floor: false,
            module_cache_bytes: 1 << 30,
            job_attempts: 3,
            job_ack_wait: Duration::from_secs(30),
        }
    }
}

/// A running worker's shared parts.
struct Worker {
    client: Client,
    store: Store,
    engine: Engine,
    config: WorkerConfig,
}

/// Serve invocations until `shutdown` resolves, then finish the ones in
/// flight and return.
pub async fn run(
    client: Client,
    store: Store,
    engine: Engine,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut subscription = client
        .queue_subscribe(
            subjects::EXECUTE_ALL,
            subjects::WORKER_QUEUE_GROUP.to_owned(),
        )
        .await?;
    // Make sure the server has the subscription before we report ready.
    client.flush().await?;
    let concurrency = config.concurrency.max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let (queue, mut queued) = mpsc::channel::<Queued>(config.queue_capacity.max(1));
    // Synchronous requests taken off the subscription and not started yet;
    // jobs give way to them.
    let waiting = Arc::new(AtomicUsize::new(0));
    let worker = Arc::new(Worker {
        client,
        store,
        engine,
        config,
    });
    tracing::info!(
        concurrency,
        queue = worker.config.queue_capacity,
        "worker ready"
    );

    // Intake: every request is taken off the subscription as it arrives and
    // stamped with its arrival time. On shutdown the subscription is drained,
    // not dropped: the server stops sending, and what was already delivered
    // is still queued, run and answered.
    let (stopping, stop) = watch::channel(false);
    let intake = {
        let worker = worker.clone();
        let waiting = waiting.clone();
        async move {
            tokio::pin!(shutdown);
            let mut draining = false;
            loop {
                let message = if draining {
                    subscription.next().await
                } else {
                    tokio::select! {
                        _ = &mut shutdown => {
                            draining = true;
                            stopping.send(true).ok();
                            subscription.drain().await.ok();
                            continue;
                        }
                        message = subscription.next() => message,
                    }
                };
                let Some(message) = message else { break };
                let request = Queued {
                    message,
                    received: Instant::now(),
                };
                waiting.fetch_add(1, Ordering::SeqCst);
                if let Err(mpsc::error::TrySendError::Full(request)) = queue.try_send(request) {
                    waiting.fetch_sub(1, Ordering::SeqCst);
                    worker.shed(request.message).await;
                }
            }
            // The subscription is over (drained, or the connection closed):
            // stop taking jobs too. Closing the queue lets the executor finish
            // what it holds, then stop.
            stopping.send(true).ok();
            drop(queue);
        }
    };
    // Executor: the next queued request, then a slot for it. (Holding a slot
    // while idle would keep it from jobs.) At most one request waits outside
    // the queue, for a slot.
    let execute = async {
        while let Some(request) = queued.recv().await {
            let permit = slots
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            waiting.fetch_sub(1, Ordering::SeqCst);
            let worker = worker.clone();
            tokio::spawn(async move {
                worker.handle(request).await;
                drop(permit);
            });
        }
    };
    let jobs = take_jobs(worker.clone(), slots.clone(), waiting.clone(), stop);
    tokio::join!(intake, execute, jobs);
    // Wait for the invocations in flight.
    let _all = slots.acquire_many(concurrency as u32).await;
    worker.client.flush().await.ok();
    tracing::info!("worker stopped");
    Ok(())
}

/// Pull jobs, one per free slot, until `stop` turns true.
///
/// A slot is taken first and held only for a no-wait fetch (one round
/// trip): a job is pulled only when this worker can start it at once, so
/// queued jobs go to workers with capacity, and an idle poll never holds a
/// slot that a synchronous call needs. Synchronous calls come first: while
/// any wait for a slot, no job is pulled.
async fn take_jobs(
    worker: Arc<Worker>,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) {
    let mut consumer = None;
    while !*stop.borrow() {
        let Some(jobs) = &consumer else {
            match worker.store.jobs_consumer(worker.config.job_ack_wait).await {
                Ok(bound) => consumer = Some(bound),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot bind the jobs consumer; retrying");
                    pause(&mut stop, JOB_POLL).await;
                }
            }
            continue;
        };
        let permit = tokio::select! {
            _ = stop.changed() => continue,
            permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        if waiting.load(Ordering::SeqCst) > 0 {
            drop(permit);
            pause(&mut stop, JOB_YIELD).await;
            continue;
        }
        // A no-wait fetch answers at once; the timeout covers a reply lost
        // with the connection (the slot must not stay held, nor shutdown wait).
        let fetch = async {
            match jobs.fetch().max_messages(1).messages().await {
                Ok(mut batch) => batch.next().await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot pull jobs");
                    None
                }
            }
        };
        let job = tokio::time::timeout(JOB_FETCH_TIMEOUT, fetch)
            .await
            .unwrap_or_else(|_| {
                tracing::warn!("a job fetch went unanswered");
                None
            });
        match job {
            Some(Ok(message)) => {
                let worker = worker.clone();
                tokio::spawn(async move {
                    worker.run_job(message).await;
                    drop(permit);
                });
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot pull jobs");
                drop(permit);
                pause(&mut stop, JOB_POLL).await;
            }
            None => {
                drop(permit);
                pause(&mut stop, JOB_IDLE_POLL).await;
            }
        }
    }
}

/// Sleep for `duration`, or less if `stop` turns true.
async fn pause(stop: &mut watch::Receiver<bool>, duration: Duration) {
    tokio::select! {
        _ = stop.changed() => {}
        _ = tokio::time::sleep(duration) => {}
    }
}

/// A request taken off the subscription, waiting for a slot.
struct Queued {
    message: Message,
    received: Instant,
}

impl Worker {
    async fn handle(&self, queued: Queued) {
        let Queued { message, received } = queued;
        let reply = match serde_json::from_slice::<InvocationRequest>(&message.payload) {
            Ok(request) => {
                let waited = received.elapsed();
                if request.wait_ms > 0 && waited >= Duration::from_millis(request.wait_ms) {
                    tracing::debug!(
                        function = request.function_id,
                        waited_ms = waited.as_millis() as u64,
                        "skipped an invocation nobody waits for any more"
                    );
                    return;
                }
                self.invoke(request).await
            }
            Err(e) => InvocationReply::PlatformError(format!("malformed invocation request: {e}")),
        };
        self.reply(&message, &reply).await;
    }

    /// Run one job and record how it went; ack it once the record is final.
    async fn run_job(&self, message: jetstream::Message) {
        let job = match serde_json::from_slice::<Job>(&message.payload) {
            Ok(job) if nimbus_core::wire::is_invocation_id(&job.record.id) => job,
            Ok(_) | Err(_) => {
                tracing::error!(subject = %message.subject, "malformed job dropped");
                message.ack_with(AckKind::Term).await.ok();
                return;
            }
        };
        let attempt = message
            .info()
            .map(|info| info.delivered)
            .unwrap_or(1)
            .max(1) as u64;
        let attempts = self.job_attempts();
        let last_attempt = attempt >= attempts;
        // Every write below is a compare-and-set on the record's revision:
        // if another worker got the same job (a redelivery while this one
        // still runs it), neither overwrites what the other wrote.
        let revision = match self
            .store
            .invocation_with_revision(&job.record.owner, &job.record.id)
            .await
        {
            // Delivery is at least once: a job whose previous worker
            // recorded the result but died before acking comes back. It is
            // not run again.
            Ok(Some((stored, _))) if stored.status.is_final() => {
                message.double_ack().await.ok();
                return;
            }
            // Delivered again after the last attempt: that attempt's worker
            // died before finishing it (a failed attempt would have ended it).
            Ok(Some((stored, _))) if attempt > attempts => {
                let record = InvocationRecord {
                    error: Some(RecordedError::platform(
                        "worker_failed",
                        format!(
                            "gave up after {} attempts: the worker running it stopped before finishing",
                            stored.attempts
                        ),
                    )),
                    ..stored
                };
                return self.retry_later(message, Some(record), attempt).await;
            }
            Ok(Some((_, revision))) => revision,
            // Expired (or never written): nobody can read the outcome.
            Ok(None) => {
                message.ack_with(AckKind::Term).await.ok();
                return;
            }
            Err(e) => {
                tracing::warn!(invocation = %job.record.id, error = %e, "cannot read a job's record");
                return self.retry_later(message, None, attempt).await;
            }
        };
        let mut record = InvocationRecord {
            status: InvocationStatus::Running,
            attempts: attempt,
            updated: now_rfc3339(),
            ..job.record
        };
        let revision = match self.store.update_invocation(&record, revision).await {
            Ok(Some(revision)) => revision,
            Ok(None) => {
                // Another worker is on it right now; leave it to that one.
                message.double_ack().await.ok();
                return;
            }
            Err(e) => {
                tracing::warn!(invocation = %record.id, error = %e, "cannot record a job");
                return self.retry_later(message, Some(record), attempt).await;
            }
        };
        // Keep the job ours while it runs: JetStream restarts its ack timer
        // at every progress ack.
        let reply = {
            let run = self.invoke(job.request);
            let keep_alive = async {
                loop {
                    message.ack_with(AckKind::Progress).await.ok();
                    tokio::time::sleep(self.config.job_ack_wait / 4).await;
                }
            };
            tokio::select! {
                reply = run => reply,
                () = keep_alive => unreachable!("the keep-alive loop never ends"),
            }
        };
        record.updated = now_rfc3339();
        match reply {
            InvocationReply::Ok(output) => {
                record.status = InvocationStatus::Succeeded;
                record.result = Some(output.result);
                record.error = None;
                record.fuel_consumed = Some(output.fuel_consumed);
                record.duration_us = Some(output.duration_us);
            }
            InvocationReply::FunctionError(error) => {
                record.status = InvocationStatus::Failed;
                record.fuel_consumed = Some(error.fuel_consumed);
                record.error = Some(RecordedError::function(error));
            }
            InvocationReply::PlatformError(message_text)
            | InvocationReply::Overloaded(message_text) => {
                record.error = Some(RecordedError::platform("worker_failed", message_text));
                if !last_attempt {
                    record.status = InvocationStatus::Queued;
                    self.store.update_invocation(&record, revision).await.ok();
                }
                return self.retry_later(message, Some(record), attempt).await;
            }
        }
        match self.store.update_invocation(&record, revision).await {
            Ok(Some(_)) => {
                let payload = serde_json::to_vec(&record).expect("record serialises");
                self.client
                    .publish(subjects::result(&record.id), payload.into())
                    .await
                    .ok();
            }
            // Somebody else recorded an outcome meanwhile: theirs stands.
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(invocation = %record.id, error = %e, "cannot record a job's result");
                return self.retry_later(message, Some(record), attempt).await;
            }
        }
        if let Err(e) = message.double_ack().await {
            tracing::warn!(invocation = %record.id, error = %e, "cannot ack a finished job");
        }
    }

    /// Attempts a job gets (see [`WorkerConfig::job_attempts`]).
    fn job_attempts(&self) -> u64 {
        u64::from(self.config.job_attempts.max(1))
    }

    /// Hand a job back for a later attempt, with a growing delay. After the
    /// last attempt the job is terminated instead, and its record marked
    /// failed (best effort, with the last error) so that it does not stay
    /// `queued` or `running`.
    async fn retry_later(
        &self,
        message: jetstream::Message,
        record: Option<InvocationRecord>,
        attempt: u64,
    ) {
        if attempt < self.job_attempts() {
            let delay = JOB_POLL * 5u32.pow(attempt as u32 - 1);
            message.ack_with(AckKind::Nak(Some(delay))).await.ok();
            return;
        }
        if let Some(mut record) = record {
            record.status = InvocationStatus::Failed;
            record.updated = now_rfc3339();
            record.error.get_or_insert_with(|| {
                RecordedError::platform(
                    "unavailable",
                    "the platform could not record this invocation's outcome",
                )
            });
            self.store.put_invocation(&record).await.ok();
        }
        message.ack_with(AckKind::Term).await.ok();
    }

    /// Answer a request that arrived with the queue full.
    async fn shed(&self, message: Message) {
        tracing::debug!(subject = %message.subject, "queue full: request shed");
        let reply = InvocationReply::Overloaded(format!(
            "a worker had {} invocations running and {} waiting",
            self.config.concurrency.max(1),
            self.config.queue_capacity.max(1)
        ));
        self.reply(&message, &reply).await;
    }

    async fn reply(&self, message: &Message, reply: &InvocationReply) {
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!(subject = %message.subject, "invocation without a reply subject dropped");
            return;
        };
        let payload = serde_json::to_vec(reply).expect("reply serialises");
        if let Err(e) = self.client.publish(reply_to, payload.into()).await {
            tracing::warn!(error = %e, "could not send a reply");
        }
    }

    async fn invoke(&self, request: InvocationRequest) -> InvocationReply {
        if let Err(e) = self.config.policy.check(&request.limits) {
            return InvocationReply::PlatformError(format!("limits refused by this worker: {e}"));
        }
        if self.config.benchmark_floor {
            return InvocationReply::Ok(InvocationOutput {
                result: request.input,
                fuel_consumed: 0,
                duration_us: 0,
            });
        }
        let module = match self.module(&request.digest).await {
            Ok(module) => module,
            Err(message) => {
                tracing::error!(function = request.function_id, digest = %request.digest, %message);
                return InvocationReply::PlatformError(message);
            }
        };
        let invocation = self
            .engine
            .invoke(&module, request.input.get().as_bytes(), &request.limits)
            .await;
        if !invocation.logs.is_empty() {
            self.publish_logs(&request, &invocation.logs, invocation.logs_truncated)
                .await;
        }
        match invocation.result {
            Ok(output) => match String::from_utf8(output)
                .ok()
                .and_then(|s| RawValue::from_string(s).ok())
            {
                Some(result) => InvocationReply::Ok(InvocationOutput {
                    result,
                    fuel_consumed: invocation.fuel_consumed,
                    duration_us: invocation.duration.as_micros() as u64,
                }),
                None => {
                    InvocationReply::PlatformError("engine produced output that is not JSON".into())
                }
            },
            Err(error) => {
                let event = serde_json::json!({
                    "function_id": request.function_id,
                    "caller": request.caller,
                    "kind": error.kind,
                    "message": error.message,
                    "fuel_consumed": error.fuel_consumed,
                });
                self.client
                    .publish(subjects::ERRORS, event.to_string().into())
                    .await
                    .ok();
                InvocationReply::FunctionError(error)
            }
        }
    }

    /// The compiled module for `digest`: from the engine's cache, else a
    /// shared precompiled artifact (when enabled), else compiled from the
    /// object store's bytes, checked against the digest they are stored under.
    async fn module(&self, digest: &str) -> Result<Arc<CompiledModule>, String> {
        if let Some(module) = self.engine.cached(digest) {
            return Ok(module);
        }
        let engine_key = self.engine.artifact_key();
        if self.config.share_compiled
            && let Some(module) = self.shared_artifact(digest, &engine_key).await
        {
            return Ok(module);
        }
        let bytes = self
            .store
            .module(digest)
            .await
            .map_err(|e| format!("could not fetch module {digest}: {e}"))?
            .ok_or_else(|| format!("module {digest} is missing from the object store"))?;
        let engine = self.engine.clone();
        let module =
            tokio::task::spawn_blocking(move || engine.compile(&bytes).map(|(module, _)| module))
                .await
                .map_err(|e| format!("compiling module {digest} panicked: {e}"))?
                .map_err(|e| format!("stored module {digest} does not compile: {e}"))?;
        if module.digest() != digest {
            return Err(format!(
                "module stored as {digest} has digest {}; refusing to run it",
                module.digest()
            ));
        }
        if self.config.share_compiled {
            match self.engine.serialize(&module) {
                Ok(artifact) => {
                    if let Err(e) = self
                        .store
                        .put_artifact(digest, &engine_key, &artifact)
                        .await
                    {
                        tracing::warn!(%digest, error = %e, "could not share the compiled artifact");
                    }
                }
                Err(e) => tracing::warn!(%digest, error = %e, "could not serialise the module"),
            }
        }
        Ok(module)
    }

    /// A precompiled artifact another worker shared, if there is a usable one.
    async fn shared_artifact(&self, digest: &str, engine_key: &str) -> Option<Arc<CompiledModule>> {
        let artifact = self.store.artifact(digest, engine_key).await.ok()??;
        let engine = self.engine.clone();
        let digest_owned = digest.to_owned();
        let loaded =
            tokio::task::spawn_blocking(move || engine.load_precompiled(&digest_owned, &artifact))
                .await;
        match loaded {
            Ok(Ok(module)) => Some(module),
            Ok(Err(e)) => {
                tracing::warn!(%digest, error = %e, "ignoring unusable artifact");
                None
            }
            Err(e) => {
                tracing::warn!(%digest, error = %e, "artifact loading panicked");
                None
            }
        }
    }

    async fn publish_logs(&self, request: &InvocationRequest, logs: &[u8], truncated: bool) {
        let mut headers = HeaderMap::new();
        headers.insert("Nimbus-Caller", request.caller.as_str());
        if truncated {
            headers.insert("Nimbus-Logs-Truncated", "true");
        }
        let subject = subjects::logs(request.function_id);
        if let Err(e) = self
            .client
            .publish_with_headers(subject, headers, logs.to_vec().into())
            .await
        {
            tracing::warn!(function = request.function_id, error = %e, "could not publish logs");
        }
    }
}
