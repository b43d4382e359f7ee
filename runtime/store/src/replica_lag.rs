//! Listings that see every acknowledged write.
//!
//! A write to a replicated stream is acknowledged once a majority of its
//! replicas hold it; the others catch up a moment later. Listings read
//! through an ordered consumer, and JetStream places such a consumer on any
//! live replica of the stream, at random: one that is behind lists the stream
//! as it was a moment ago. Seen here: right after a node of a three-node
//! cluster died, a user's listing missed the function created just before
//! (the one replica that had not received it yet was asked).
//!
//! The stream's leader holds every acknowledged write, and answers (alone)
//! for the last message matching a filter. A listing reads the last message
//! of each subject, so the highest stream sequence it saw is the last
//! message matching its filter on the replica that answered: if that is
//! below the leader's, the replica is behind (a key missing, a deleted one
//! still there, an old value) and the listing is read again (see
//! [`ReplicaBehind`]). Writes made after the leader answered may or may not
//! be in the listing, as with any snapshot.
//!
//! Reads of one key are direct gets, which any replica answers too: one
//! that is behind may not have a key created a moment ago (a function
//! uploaded through one API server and called through another). A direct get
//! that finds nothing is asked again of the leader ([`last_at_leader`]);
//! absence is rare on the paths that need it, so this costs little.

use std::error::Error as StdError;
use std::fmt;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use bytes::Bytes;

use crate::failover::{NatsError, Retry};
use crate::{Storage, StoreError};

/// A listing came from a replica that is behind the stream's leader: a
/// retry ([`crate::failover::ride_out`]) reads again.
#[derive(Debug)]
pub(crate) struct ReplicaBehind {
    /// The highest stream sequence the listing saw.
    seen: u64,
    /// The leader's last message matching the filter.
    leader: u64,
}

impl fmt::Display for ReplicaBehind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a replica that is behind answered a listing (it had up to message {}, the leader {})",
            self.seen, self.leader
        )
    }
}

impl StdError for ReplicaBehind {}

/// The stream sequence of the last message matching `filter` at the
/// stream's leader (only the leader answers; without one the request fails
/// as retryable); 0 when none matches.
pub(crate) async fn last_sequence_at_leader(
    stream: &Stream,
    filter: &str,
) -> Result<u64, NatsError> {
    match stream.get_last_raw_message_by_subject(filter).await {
        Ok(message) => Ok(message.sequence),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
        Err(e) => Err(NatsError::new(e)),
    }
}

/// `Err(ReplicaBehind)` unless a listing whose highest stream sequence was
/// `seen` saw the leader's last message, `leader`.
pub(crate) fn check_listing(leader: u64, seen: u64) -> Result<(), NatsError> {
    if seen >= leader {
        Ok(())
    } else {
        Err(NatsError::new(ReplicaBehind { seen, leader }))
    }
}

impl Storage {
    /// The value and revision of `key` in `bucket`, `None` if it has none or
    /// was deleted: a direct get, confirmed by the stream's leader when it
    /// finds nothing (see the module docs).
    pub(crate) async fn read_key(
        &self,
        bucket: &kv::Store,
        what: &'static str,
        key: &str,
    ) -> Result<Option<(Bytes, u64)>, StoreError> {
        self.ride_out(Retry::Idempotent, what, || async {
            let entry = bucket.entry(key).await.map_err(NatsError::new)?;
            match entry.filter(|e| e.operation == kv::Operation::Put) {
                Some(e) => Ok(Some((e.value, e.revision))),
                None => last_at_leader(bucket, key).await,
            }
        })
        .await
    }
}

/// The value and revision of `key` in `bucket` as the stream's leader has
/// it; `None` if it has none or its last operation deleted it.
async fn last_at_leader(bucket: &kv::Store, key: &str) -> Result<Option<(Bytes, u64)>, NatsError> {
    let subject = format!("{}{key}", bucket.prefix);
    let message = match bucket
        .stream
        .get_last_raw_message_by_subject(&subject)
        .await
    {
        Ok(message) => message,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(e) => return Err(NatsError::new(e)),
    };
    let deleted = message
        .headers
        .get("KV-Operation")
        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
    Ok((!deleted).then_some((message.payload, message.sequence)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::{Transient, transient};

    #[test]
    fn a_listing_must_reach_the_leaders_last_message() {
        let behind = check_listing(12, 9).unwrap_err();
        assert!(
            behind
                .to_string()
                .contains("up to message 9, the leader 12"),
            "{behind}"
        );
        assert_eq!(transient(&behind), Some(Transient::Undelivered));
        check_listing(12, 12).unwrap();
        // Written since the leader answered: fine.
        check_listing(12, 15).unwrap();
        check_listing(0, 0).unwrap();
    }
}
