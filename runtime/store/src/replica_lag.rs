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
//! The stream's leader holds every acknowledged write, and its stream info
//! names every subject that has a message, deletion markers included. A
//! listing is checked against that: one that did not see every subject the
//! leader named before it started came from a replica that is behind, and is
//! read again (see [`ReplicaBehind`]). Writes made after the leader answered
//! may or may not be in the listing, as with any snapshot.
//!
//! Reads of one key are direct gets, which any replica answers too: one
//! that is behind may not have a key created a moment ago (a function
//! uploaded through one API server and called through another). A direct get
//! that finds nothing is asked again of the leader ([`last_at_leader`]);
//! absence is rare on the paths that need it, so this costs little.

use std::collections::HashSet;
use std::error::Error as StdError;
use std::fmt;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use bytes::Bytes;
use futures::TryStreamExt;

use crate::failover::{NatsError, Retry};
use crate::{Storage, StoreError};

/// A listing missed subjects the stream's leader has, or the stream had no
/// leader to ask: a retry ([`crate::failover::ride_out`]) reads again.
#[derive(Debug)]
pub(crate) struct ReplicaBehind {
    /// Subjects the leader named that the listing did not see.
    pub(crate) missed: usize,
}

impl fmt::Display for ReplicaBehind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.missed == 0 {
            write!(f, "the stream has no leader to check a listing against")
        } else {
            write!(
                f,
                "a replica that is behind answered a listing ({} subjects missed)",
                self.missed
            )
        }
    }
}

impl StdError for ReplicaBehind {}

/// The subjects matching `filter` that have a message at the stream's leader.
///
/// Only the leader answers a stream info request, except while the stream
/// has none: then a replica does, naming no leader, and this is
/// [`ReplicaBehind`] so that the caller asks again. A single server names no
/// cluster at all and is its own leader.
pub(crate) async fn subjects_at_leader(
    stream: &Stream,
    filter: &str,
) -> Result<HashSet<String>, NatsError> {
    let mut pages = stream
        .info_with_subjects(filter)
        .await
        .map_err(NatsError::new)?;
    let leaderless = pages
        .info
        .cluster
        .as_ref()
        .is_some_and(|c| c.leader.as_deref().unwrap_or_default().is_empty());
    if leaderless {
        return Err(NatsError::new(ReplicaBehind { missed: 0 }));
    }
    let mut subjects = HashSet::new();
    while let Some((subject, _count)) = pages.try_next().await.map_err(NatsError::new)? {
        subjects.insert(subject);
    }
    Ok(subjects)
}

/// `Err(ReplicaBehind)` unless a listing that `seen` these subjects saw
/// every one of `at_leader`.
pub(crate) fn check_listing(
    at_leader: &HashSet<String>,
    seen: &HashSet<String>,
) -> Result<(), NatsError> {
    let missed = at_leader.difference(seen).count();
    if missed == 0 {
        Ok(())
    } else {
        Err(NatsError::new(ReplicaBehind { missed }))
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
    fn a_listing_must_see_what_the_leader_has() {
        let leader: HashSet<String> = ["a.1", "a.2", "a.3"].map(String::from).into();
        let mut seen: HashSet<String> = ["a.1", "a.2"].map(String::from).into();
        let behind = check_listing(&leader, &seen).unwrap_err();
        assert!(behind.to_string().contains("1 subjects missed"), "{behind}");
        assert_eq!(transient(&behind), Some(Transient::Undelivered));
        seen.insert("a.3".into());
        // Newer subjects than the leader named are fine: written since.
        seen.insert("a.4".into());
        check_listing(&leader, &seen).unwrap();
    }
}
