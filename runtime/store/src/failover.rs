//! Riding out JetStream failovers.
//!
//! When a node of a JetStream cluster dies, every stream it led elects a new
//! leader among the remaining replicas. Until then the stream refuses
//! requests: a publish or a direct get finds nobody listening ("no
//! responders"), and a request to the stream's API may time out. Measured
//! here on a 3-node cluster on loopback: direct gets (served by any replica)
//! answer again within ~1.5 s, requests that need the stream's leader (a
//! consumer, a publish) within 2-8 s.
//! Nimbus retries such failures inside a bounded wait
//! ([`crate::StoreConfig::failover_wait`]), so losing one node of a cluster
//! costs callers latency, not errors. Anything else fails at once.
//!
//! Whether a retry is safe depends on the operation, hence [`Retry`]: a
//! request nobody received did nothing and can always be sent again, while a
//! timed-out one may have been applied, which only reads and idempotent
//! writes may ignore. Each request is bounded by
//! [`crate::StoreConfig::request_timeout`], so a timed-out attempt leaves
//! room for more within the wait.

use std::error::Error as StdError;
use std::time::{Duration, Instant};

use async_nats::StatusCode;
use async_nats::jetstream::{self, context, kv, object_store, stream};

/// Which failures an operation may be retried after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, and writes that are harmless to apply twice (a put of the same
    /// value, a deletion, a publish deduplicated by message id): retried when
    /// the request was not received and when it timed out.
    Idempotent,
    /// Writes that must not be applied twice (a create, a compare-and-set,
    /// whose second application would fail against the first): retried only
    /// when JetStream certainly did not receive the request.
    Undelivered,
}

/// How a request failed, when it failed in a way a failover explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transient {
    /// Nobody took the request: no responders (the stream has no leader, or
    /// the connection's server lost its subscriptions), or JetStream said it
    /// is temporarily unavailable. Nothing was done.
    Undelivered,
    /// The request went out and no answer came back in time: it may or may
    /// not have been applied.
    TimedOut,
}

/// Classify `error` by walking its chain of sources: async-nats wraps the
/// error that says what happened (a publish with no responders, a request
/// that timed out) in one error per layer (KV, object store, consumer).
pub(crate) fn transient(error: &(dyn StdError + 'static)) -> Option<Transient> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = classify(error) {
            return Some(found);
        }
        next = error.source();
    }
    None
}

fn classify(error: &(dyn StdError + 'static)) -> Option<Transient> {
    use Transient::{TimedOut, Undelivered};
    if error.is::<crate::replica_lag::ReplicaBehind>() {
        // Nothing was written: reading again is always safe.
        return Some(Undelivered);
    }
    if let Some(e) = error.downcast_ref::<stream::DirectGetError>() {
        return match e.kind() {
            stream::DirectGetErrorKind::ErrorResponse(StatusCode::NO_RESPONDERS, _) => {
                Some(Undelivered)
            }
            stream::DirectGetErrorKind::TimedOut => Some(TimedOut),
            _ => None,
        };
    }
    if let Some(e) = error.downcast_ref::<context::PublishError>() {
        return match e.kind() {
            // What async-nats reports for a publish with no responders.
            context::PublishErrorKind::StreamNotFound => Some(Undelivered),
            context::PublishErrorKind::TimedOut => Some(TimedOut),
            _ => None,
        };
    }
    if let Some(e) = error.downcast_ref::<context::RequestError>() {
        return match e.kind() {
            context::RequestErrorKind::NoResponders => Some(Undelivered),
            context::RequestErrorKind::TimedOut => Some(TimedOut),
            _ => None,
        };
    }
    if let Some(e) = error.downcast_ref::<async_nats::RequestError>() {
        return match e.kind() {
            async_nats::RequestErrorKind::NoResponders => Some(Undelivered),
            async_nats::RequestErrorKind::TimedOut => Some(TimedOut),
            _ => None,
        };
    }
    if let Some(e) = error.downcast_ref::<jetstream::Error>() {
        return refused(e);
    }
    if let Some(e) = error.downcast_ref::<stream::LastRawMessageError>() {
        return match e.kind() {
            stream::LastRawMessageErrorKind::JetStream(e) => refused(&e),
            _ => None,
        };
    }
    if let Some(e) = error.downcast_ref::<stream::ConsumerError>() {
        // JetStream's own answer is kept in the kind, not as a source.
        return match e.kind() {
            stream::ConsumerErrorKind::JetStream(e) => refused(&e),
            stream::ConsumerErrorKind::TimedOut => Some(TimedOut),
            _ => None,
        };
    }
    if let Some(e) = error.downcast_ref::<std::io::Error>() {
        // An object's reader reports NATS errors wrapped in io::Error, whose
        // `source()` skips the wrapped error itself.
        if e.kind() == std::io::ErrorKind::TimedOut {
            return Some(TimedOut);
        }
        return e.get_ref().and_then(|inner| transient(inner));
    }
    // Layers that report a timeout without keeping its source.
    let timed_out = error
        .downcast_ref::<kv::EntryError>()
        .is_some_and(|e| e.kind() == kv::EntryErrorKind::TimedOut)
        || error
            .downcast_ref::<kv::UpdateError>()
            .is_some_and(|e| e.kind() == kv::UpdateErrorKind::TimedOut)
        || error
            .downcast_ref::<object_store::GetError>()
            .is_some_and(|e| e.kind() == object_store::GetErrorKind::TimedOut);
    timed_out.then_some(TimedOut)
}

/// JetStream refused the request before doing anything: its cluster (or the
/// stream's group) has no leader right now. Other 503s, such as a stream
/// that is full, are lasting and not retried.
fn refused(error: &jetstream::Error) -> Option<Transient> {
    [
        jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE,
        jetstream::ErrorCode::CLUSTER_NOT_LEADER,
    ]
    .contains(&error.error_code())
    .then_some(Transient::Undelivered)
}

/// An error from a sequence of async-nats calls, kept whole so that
/// [`transient`] can look through it.
#[derive(Debug)]
pub(crate) struct NatsError(Box<dyn StdError + Send + Sync>);

impl NatsError {
    pub(crate) fn new(error: impl StdError + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }

    /// From async-nats's catch-all boxed error.
    pub(crate) fn boxed(error: async_nats::Error) -> Self {
        Self(error)
    }

    /// The error it carries.
    pub(crate) fn into_inner(self) -> Box<dyn StdError + Send + Sync> {
        self.0
    }
}

impl std::fmt::Display for NatsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for NatsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// Run `op` until it succeeds, fails in a way `retry` does not cover, or
/// `wait` has passed; pauses grow from 25 ms to 500 ms between attempts.
pub(crate) async fn ride_out<T, E, F, Fut>(
    wait: Duration,
    retry: Retry,
    what: &str,
    mut op: F,
) -> Result<T, E>
where
    E: StdError + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(25);
    let mut attempt = 1u32;
    loop {
        let error = match op().await {
            Ok(value) => {
                if attempt > 1 {
                    tracing::info!(what, attempt, "JetStream answered again");
                }
                return Ok(value);
            }
            Err(error) => error,
        };
        let retryable = matches!(
            (transient(&error), retry),
            (Some(Transient::Undelivered), _) | (Some(Transient::TimedOut), Retry::Idempotent)
        );
        if !retryable {
            return Err(error);
        }
        if Instant::now() + pause > deadline {
            tracing::warn!(what, attempt, %error, "JetStream still unavailable, giving up");
            return Err(error);
        }
        if attempt == 1 {
            tracing::warn!(what, %error, "JetStream unavailable, retrying");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn no_responders_put() -> kv::CreateError {
        // The chain a KV create goes through when the stream has no leader.
        let publish = context::PublishError::new(context::PublishErrorKind::StreamNotFound);
        kv::CreateError::from(kv::UpdateError::from(publish))
    }

    #[test]
    fn failures_are_classified_through_their_sources() {
        assert_eq!(
            transient(&no_responders_put()),
            Some(Transient::Undelivered)
        );
        // What a KV get answers during a leader election.
        let get = kv::EntryError::from(stream::DirectGetError::new(
            stream::DirectGetErrorKind::ErrorResponse(
                StatusCode::NO_RESPONDERS,
                "no responders".into(),
            ),
        ));
        assert_eq!(transient(&get), Some(Transient::Undelivered));
        let timed_out = kv::CreateError::from(kv::UpdateError::from(context::PublishError::new(
            context::PublishErrorKind::TimedOut,
        )));
        assert_eq!(transient(&timed_out), Some(Transient::TimedOut));
        let exists = kv::CreateError::new(kv::CreateErrorKind::AlreadyExists);
        assert_eq!(transient(&exists), None);
        let not_found = stream::DirectGetError::new(stream::DirectGetErrorKind::NotFound);
        assert_eq!(transient(&not_found), None);
        let read = std::io::Error::other(NatsError::new(get));
        assert_eq!(transient(&read), Some(Transient::Undelivered));
        let consumer = stream::ConsumerError::new(stream::ConsumerErrorKind::TimedOut);
        assert_eq!(transient(&consumer), Some(Transient::TimedOut));
    }

    #[tokio::test]
    async fn retries_stop_at_success_at_a_permanent_error_and_at_the_deadline() {
        let calls = AtomicU32::new(0);
        let recovered = ride_out(Duration::from_secs(5), Retry::Undelivered, "t", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(no_responders_put()),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(recovered.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        // A timeout may have been applied: a create is not sent again.
        calls.store(0, Ordering::SeqCst);
        let timed_out: Result<(), _> =
            ride_out(Duration::from_secs(5), Retry::Undelivered, "t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(kv::UpdateError::new(kv::UpdateErrorKind::TimedOut))
            })
            .await;
        assert!(timed_out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // A lasting outage gives up once the wait has passed.
        calls.store(0, Ordering::SeqCst);
        let started = Instant::now();
        let outage: Result<(), _> = ride_out(
            Duration::from_millis(300),
            Retry::Idempotent,
            "t",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(no_responders_put())
            },
        )
        .await;
        assert!(outage.is_err());
        assert!(calls.load(Ordering::SeqCst) >= 2);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
