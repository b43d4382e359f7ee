//! The dispatcher as handlers use it: every invocation counted in this API
//! server's metrics (`metrics.rs`) and its last hour of calls (the
//! console's charts, `nimbus_core::call_stats`), and run in a log span (at debug level)
//! naming its function, invocation id and trace id, so that whatever is
//! logged about it on this server can be found with the ids its answer
//! carried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use nimbus_core::call_stats::CallStats;
use nimbus_core::metrics::{self, Outcome, Trigger};
use nimbus_core::wire::{Call, InvocationRecord, JobRequest, Reply};
use nimbus_core::{ErrorKind, FunctionErrorKind, PlatformErrorKind};
use tracing::Instrument;

use crate::ApiError;
use crate::dispatch::Dispatch;
use crate::metrics::ApiMetrics;

/// A [`Dispatch`] that counts and traces what goes through it.
pub struct ObservedDispatch {
    pub(crate) inner: Arc<dyn Dispatch>,
    pub(crate) metrics: Arc<ApiMetrics>,
    pub(crate) call_stats: Arc<CallStats>,
}

impl Dispatch for ObservedDispatch {
    fn call(
        &self,
        call: Call,
        input: Bytes,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Reply, ApiError>> {
        // At debug level, as on workers (`invoke.rs`): a span costs on
        // every call.
        let span = tracing::debug_span!(
            "invocation",
            function = call.function_id,
            invocation = %call.invocation.as_deref().unwrap_or_default(),
            trace_id = %call.trace.map(|t| t.trace_id_hex()).unwrap_or_default(),
        );
        Box::pin(
            async move {
                let started = Instant::now();
                let function = call.function_id;
                let trigger = match call.http {
                    Some(_) => Trigger::Url,
                    None => Trigger::Execute,
                };
                let reply = self.inner.call(call, input, wait).await;
                let (outcome, fuel) = outcome_of(&reply);
                let took = started.elapsed();
                self.metrics
                    .invocations
                    .record(function, trigger, outcome, took, fuel);
                self.call_stats
                    .record(function, outcome.is_some(), took, fuel);
                reply
            }
            .instrument(span),
        )
    }

    fn enqueue(&self, request: JobRequest) -> BoxFuture<'_, Result<InvocationRecord, ApiError>> {
        Box::pin(async move {
            let record = self.inner.enqueue(request).await?;
            self.metrics.jobs_queued.inc();
            Ok(record)
        })
    }
}

/// How a dispatched call ended, and the fuel it reported.
fn outcome_of(reply: &Result<Reply, ApiError>) -> (Outcome, Option<u64>) {
    match reply {
        Ok(reply) => metrics::outcome_of(reply),
        Err(ApiError::Platform { kind, .. }) => (Some(ErrorKind::Platform(*kind)), None),
        Err(ApiError::PayloadTooLarge(_)) => (
            Some(ErrorKind::Function(FunctionErrorKind::InvalidInput)),
            None,
        ),
        Err(_) => (
            Some(ErrorKind::Platform(PlatformErrorKind::Unavailable)),
            None,
        ),
    }
}
