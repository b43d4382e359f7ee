//! Asynchronous invocations: jobs pulled from the `FUNCTION_JOBS` work-queue
//! stream, tenants in turn (`job_turns.rs`), through durable pull consumers
//! that all workers share (one per tenant).
//!
//! A worker pulls a job only when it has a free slot (the same slots as
//! synchronous calls), so jobs go to workers with capacity: real
//! backpressure. A job's record in the `invocations` bucket follows it
//! (running, then succeeded or failed) and the final record is also
//! published on `functions.result.<invocation>`. Delivery is at least once:
//! a running job is kept claimed by progress acks, and a job whose worker
//! dies is delivered again once its ack wait
//! ([`WorkerConfig::job_ack_wait`](crate::WorkerConfig::job_ack_wait))
//! passes. A platform failure (module missing, store unreachable) or a dead
//! worker costs an attempt; after
//! [`WorkerConfig::job_attempts`](crate::WorkerConfig::job_attempts) of them
//! the record is marked failed (the delivery after a last attempt that never
//! finished does only that). A function failure is a result, not retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use nimbus_core::PlatformErrorKind;
use nimbus_core::metrics::Trigger;
use nimbus_core::subjects;
use nimbus_core::wire::{InvocationRecord, InvocationStatus, Job, RecordedError, Reply};
use nimbus_store::{JobQueue, now_rfc3339};
use tokio::sync::{Semaphore, watch};

use crate::Worker;
use crate::job_turns::{JobTurns, Next};
use crate::metrics::Attempt;

/// Backoff after a JetStream error, and the first retry delay of a job.
const JOB_POLL: Duration = Duration::from_secs(1);
/// How often an idle worker looks for a job, at first: each empty look
/// doubles the pause up to [`JOB_IDLE_POLL_MAX`], and a job found starts
/// over. A look costs the server one STREAM.INFO request plus a fetch per
/// tenant with jobs (`job_turns.rs`).
const JOB_IDLE_POLL: Duration = Duration::from_millis(200);
/// The longest a queued job waits for an idle worker to look.
const JOB_IDLE_POLL_MAX: Duration = Duration::from_secs(1);
/// How long the jobs loop steps back when synchronous calls wait for a slot.
const JOB_YIELD: Duration = Duration::from_millis(5);

/// Pull jobs, one per free slot, tenants in turn ([`JobTurns`]), until
/// `stop` turns true.
///
/// A slot is taken first and held only while looking for a job (no-wait
/// fetches): a job is pulled only when this worker can start it at once,
/// so queued jobs go to workers with capacity, and an idle poll never holds
/// a slot for long. Synchronous calls come first: while any wait for a
/// slot, no job is pulled (checked before each tenant's fetch).
pub(crate) async fn take_jobs(
    worker: Arc<Worker>,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) {
    // The consumer of the previous release's jobs, bound first: it also
    // narrows a consumer left by a release that took every job through it,
    // which would otherwise overlap every tenant's.
    while !*stop.borrow() {
        match worker
            .storage
            .jobs_consumer(&JobQueue::Legacy, worker.config.job_ack_wait)
            .await
        {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot bind the jobs consumer; retrying");
                pause(&mut stop, JOB_POLL).await;
            }
        }
    }
    let mut turns = JobTurns::new(worker.storage.clone(), worker.config.job_ack_wait);
    let mut idle_poll = JOB_IDLE_POLL;
    let calls_wait = || waiting.load(Ordering::SeqCst) > 0;
    while !*stop.borrow() {
        let permit = tokio::select! {
            _ = stop.changed() => continue,
            permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        match turns.next(|| calls_wait() || *stop.borrow()).await {
            Ok(Next::Job(message)) => {
                idle_poll = JOB_IDLE_POLL;
                let worker = worker.clone();
                tokio::spawn(async move {
                    worker.run_job(*message).await;
                    drop(permit);
                });
            }
            Ok(Next::GaveWay) => {
                drop(permit);
                pause(&mut stop, JOB_YIELD).await;
            }
            Ok(Next::Idle) => {
                drop(permit);
                pause(&mut stop, idle_poll).await;
                idle_poll = (idle_poll * 2).min(JOB_IDLE_POLL_MAX);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for jobs");
                drop(permit);
                pause(&mut stop, JOB_POLL).await;
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

impl Worker {
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
        let _running = self.metrics.job_running();
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
            .storage
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
                        PlatformErrorKind::WorkerFailed,
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
        let revision = match self.storage.update_invocation(&record, revision).await {
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
        let (mut call, input) = job.request.into_call();
        call.invocation = Some(record.id.clone());
        let reply = {
            let run = self.invoke(&call, input, Trigger::Job);
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
        // The record keeps the result as JSON text. The engine promises one
        // JSON document; were that broken, the attempt is a platform failure,
        // never a success without a result.
        let result = match &reply {
            Reply::Ok(success) => String::from_utf8(success.result.to_vec())
                .ok()
                .and_then(|text| serde_json::value::RawValue::from_string(text).ok()),
            _ => None,
        };
        let reply = match reply {
            Reply::Ok(_) if result.is_none() => {
                Reply::PlatformError("the engine produced output that is not JSON".into())
            }
            reply => reply,
        };
        match reply {
            Reply::Ok(success) => {
                self.metrics.attempt(Attempt::Succeeded);
                record.status = InvocationStatus::Succeeded;
                record.result = result;
                record.error = None;
                record.fuel_consumed = Some(success.fuel_consumed);
                record.duration_us = Some(success.duration_us);
            }
            Reply::FunctionError(error) => {
                self.metrics.attempt(Attempt::Failed);
                record.status = InvocationStatus::Failed;
                record.fuel_consumed = Some(error.fuel_consumed);
                record.error = Some(RecordedError::function(error));
            }
            Reply::PlatformError(message_text) | Reply::Overloaded(message_text) => {
                record.error = Some(RecordedError::platform(
                    PlatformErrorKind::WorkerFailed,
                    message_text,
                ));
                if !last_attempt {
                    record.status = InvocationStatus::Queued;
                    self.storage.update_invocation(&record, revision).await.ok();
                }
                return self.retry_later(message, Some(record), attempt).await;
            }
        }
        match self.storage.update_invocation(&record, revision).await {
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

    /// Attempts a job gets (see [`WorkerConfig::job_attempts`](crate::WorkerConfig::job_attempts)).
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
            self.metrics.attempt(Attempt::Retried);
            let delay = JOB_POLL * 5u32.pow(attempt as u32 - 1);
            message.ack_with(AckKind::Nak(Some(delay))).await.ok();
            return;
        }
        self.metrics.attempt(Attempt::GaveUp);
        if let Some(mut record) = record {
            record.status = InvocationStatus::Failed;
            record.updated = now_rfc3339();
            record.error.get_or_insert_with(|| {
                RecordedError::platform(
                    PlatformErrorKind::Unavailable,
                    "the platform could not record this invocation's outcome",
                )
            });
            self.storage.put_invocation(&record).await.ok();
        }
        message.ack_with(AckKind::Term).await.ok();
    }
}
