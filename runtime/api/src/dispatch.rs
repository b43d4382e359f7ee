//! Handing invocations to workers, behind a small trait so that handlers
//! can be tested without NATS (axum's `oneshot` with another [`Dispatch`]).
//!
//! [`NatsDispatch`] is the real one: a synchronous call is a NATS request
//! on `functions.execute.v2.<id>` to the `workers` queue group (envelope in
//! a header, raw input as payload, see `nimbus_core::wire::call`); an
//! asynchronous one is recorded in the `invocations` bucket and queued as a
//! job on the `FUNCTION_JOBS` work queue.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::future::BoxFuture;
use nimbus_core::PlatformErrorKind;
use nimbus_core::subjects;
use nimbus_core::trace::TraceParent;
use nimbus_core::wire::{
    Call, InvocationRecord, InvocationStatus, Job, JobRequest, RecordedError, Reply, headers,
};
use nimbus_store::{Storage, now_rfc3339};

use crate::ApiError;
use crate::invocation_context::new_invocation_id;

/// Where invocations go.
pub trait Dispatch: Send + Sync + 'static {
    /// Run `call` on `input` on a worker, waiting up to `wait` for its reply.
    fn call(
        &self,
        call: Call,
        input: Bytes,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Reply, ApiError>>;

    /// Accept `request` for later: record it as queued and queue its job;
    /// the record as first written.
    fn enqueue(&self, request: JobRequest) -> BoxFuture<'_, Result<InvocationRecord, ApiError>>;
}

/// Dispatch over NATS and JetStream.
pub struct NatsDispatch {
    nats: async_nats::Client,
    storage: Storage,
    max_jobs_per_user: u64,
}

impl NatsDispatch {
    /// Dispatch through `nats`, queueing jobs in `storage`, at most
    /// `max_jobs_per_user` queued or running per user.
    pub fn new(nats: async_nats::Client, storage: Storage, max_jobs_per_user: u64) -> Self {
        Self {
            nats,
            storage,
            max_jobs_per_user,
        }
    }

    async fn request(&self, call: Call, input: Bytes, wait: Duration) -> Result<Reply, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(headers::CALL, call.header().as_str());
        if let Some(id) = &call.invocation {
            headers.insert(headers::INVOCATION, id.as_str());
        }
        if let Some(trace) = &call.trace {
            headers.insert(headers::TRACEPARENT, trace.to_string().as_str());
        }
        let wait_ms = wait.as_millis() as u64;
        let reply = self
            .nats
            .send_request(
                subjects::execute(call.function_id),
                async_nats::Request::new()
                    .headers(headers)
                    .payload(call.payload(input))
                    .timeout(Some(wait)),
            )
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => ApiError::no_worker(),
                async_nats::RequestErrorKind::TimedOut => ApiError::worker_timeout(wait_ms),
                async_nats::RequestErrorKind::MaxPayloadExceeded => ApiError::PayloadTooLarge(
                    "the input is larger than the NATS server's max_payload".into(),
                ),
                _ => ApiError::unavailable(format!("NATS request failed: {e}")),
            })?;
        let header = reply
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::REPLY))
            .map(|v| v.as_str());
        Reply::decode(header, reply.payload.clone())
            .map_err(|e| ApiError::worker_failed(format!("unreadable reply: {e}")))
    }

    /// Record an asynchronous invocation as queued, then queue its job. The
    /// record is written first, so an accepted id can always be looked up.
    async fn queue(&self, request: JobRequest) -> Result<InvocationRecord, ApiError> {
        let quota = self.max_jobs_per_user;
        let held = self.storage.jobs_of(&request.caller).await?;
        if held >= quota {
            return Err(ApiError::TooManyJobs(format!(
                "you have {held} asynchronous invocations queued or running, and one user may \
                 have {quota}; try again once some have finished"
            )));
        }
        let record = InvocationRecord {
            trace_id: request
                .trace
                .as_deref()
                .and_then(TraceParent::parse)
                .map(|t| t.trace_id_hex()),
            ..InvocationRecord::queued(
                new_invocation_id(),
                request.function_id,
                request.caller.clone(),
                now_rfc3339(),
            )
        };
        let revision = self.storage.create_invocation(&record).await?;
        let job = Job {
            record: record.clone(),
            request,
        };
        if let Err(e) = self.storage.enqueue_job(&job).await {
            // Not queued (JetStream down, or the job queue full): the record
            // must not claim otherwise. Unless a worker has written it since:
            // then the job was stored after all (only its ack was lost) and
            // the worker's record is the truth.
            let record = InvocationRecord {
                status: InvocationStatus::Failed,
                error: Some(RecordedError::platform(
                    PlatformErrorKind::Unavailable,
                    format!("the invocation could not be queued: {e}"),
                )),
                updated: now_rfc3339(),
                ..job.record
            };
            self.storage.update_invocation(&record, revision).await.ok();
            return Err(e.into());
        }
        Ok(record)
    }
}

impl Dispatch for NatsDispatch {
    fn call(
        &self,
        call: Call,
        input: Bytes,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Reply, ApiError>> {
        Box::pin(self.request(call, input, wait))
    }

    fn enqueue(&self, request: JobRequest) -> BoxFuture<'_, Result<InvocationRecord, ApiError>> {
        Box::pin(self.queue(request))
    }
}
