//! Functions' key-value state: every owner's stores in one JetStream KV
//! bucket (`kv_data`), keyed `<owner>.<store>.<key, escaped>`, and each
//! owner's usage in another (`kv_usage`). API servers only: workers reach
//! state through them (`nimbus_api::kv_service`), never the buckets.
//!
//! One bucket for all tenants, not one per tenant or per store: a
//! JetStream stream is a Raft group with its own files and consumers, so
//! thousands of streams cost thousands of those, while one stream holds
//! millions of subjects and serves a read by subject (a direct get) or a
//! listing of one store (a consumer filtered on `<owner>.<store>.>`)
//! without touching the others. Stores need no creating: a store is the
//! keys under its name.
//!
//! Keys are escaped into one subject token and listed by
//! `kv_listing.rs`.
//!
//! Every write is a compare-and-set on the revision it read; an increment
//! or a swap that loses a race reads again. The owner's usage (keys and
//! bytes per store) is a compare-and-set of its own, made *before* a write
//! that grows it (so a quota is never passed, whatever the concurrency) and
//! *after* one that shrinks it. A process that stops between the two leaves
//! the usage counted too high, never too low.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use nimbus_core::kv::{KvError, KvErrorKind, KvQuota};
use serde::{Deserialize, Serialize};

use crate::failover::Retry;
use crate::kv_listing::data_key;
use crate::{Storage, StoreError};

/// The two buckets; opened by API servers only.
#[derive(Clone)]
pub(crate) struct StateBuckets {
    pub(crate) data: kv::Store,
    pub(crate) usage: kv::Store,
}

/// One owner's usage, per store with at least one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvUsage {
    /// By store name.
    #[serde(default)]
    pub stores: BTreeMap<String, StoreUsage>,
}

/// What one store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreUsage {
    /// Keys.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

impl KvUsage {
    /// Keys in all stores.
    pub fn keys(&self) -> u64 {
        self.stores.values().map(|s| s.keys).sum()
    }

    /// Bytes in all stores.
    pub fn bytes(&self) -> u64 {
        self.stores.values().map(|s| s.bytes).sum()
    }
}

/// A key as [`Storage::kv_read`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The value, `None` if the key does not exist.
    pub value: Option<Bytes>,
    /// Its revision; for an absent key, its deletion's (or 0): what a
    /// compare-and-set of it names.
    pub revision: u64,
}

/// How long one operation keeps retrying compare-and-sets it loses to
/// concurrent writers before giving up.
const CONTENTION_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn unavailable(e: impl std::fmt::Display) -> KvError {
    KvError::unavailable(format!("the key-value state could not be reached: {e}"))
}

fn contention() -> KvError {
    KvError::unavailable(format!(
        "the key changed under every attempt for {} s; try again",
        CONTENTION_WAIT.as_secs()
    ))
}

/// The change one write makes to its store's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Delta {
    keys: i64,
    bytes: i64,
}

impl Delta {
    /// From what the key held (`None`: nothing) to `new` (`None`: deleted).
    fn of(key: &str, old: Option<usize>, new: Option<usize>) -> Self {
        let size = |len: Option<usize>| len.map_or(0, |len| (key.len() + len) as i64);
        Self {
            keys: i64::from(new.is_some()) - i64::from(old.is_some()),
            bytes: size(new) - size(old),
        }
    }

    fn grows(self) -> bool {
        self.keys > 0 || self.bytes > 0
    }

    fn negated(self) -> Self {
        Self {
            keys: -self.keys,
            bytes: -self.bytes,
        }
    }
}

impl Storage {
    pub(crate) fn state(&self) -> Result<&StateBuckets, KvError> {
        self.state.as_ref().ok_or_else(|| {
            unavailable("this component does not open the key-value buckets (workers never do)")
        })
    }

    /// `owner`'s usage and the revision of its record (0: none).
    pub async fn kv_usage(&self, owner: &str) -> Result<(KvUsage, u64), KvError> {
        let usage = &self.state()?.usage;
        let entry = self
            .ride_out(Retry::Idempotent, "read key-value usage", || {
                usage.entry(owner)
            })
            .await
            .map_err(unavailable)?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let usage = serde_json::from_slice(&entry.value)
                    .map_err(|e| unavailable(format!("corrupt usage record of {owner}: {e}")))?;
                Ok((usage, entry.revision))
            }
            Some(entry) => Ok((KvUsage::default(), entry.revision)),
            None => Ok((KvUsage::default(), 0)),
        }
    }

    /// Apply `delta` to `owner`'s usage of `store`; when it grows, only
    /// within `quota`.
    async fn adjust_usage(
        &self,
        owner: &str,
        store: &str,
        delta: Delta,
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        if delta == (Delta { keys: 0, bytes: 0 }) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + CONTENTION_WAIT;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut usage, revision) = self.kv_usage(owner).await?;
            let entry = usage.stores.entry(store.to_owned()).or_default();
            entry.keys = entry.keys.saturating_add_signed(delta.keys);
            entry.bytes = entry.bytes.saturating_add_signed(delta.bytes);
            if entry.keys == 0 {
                usage.stores.remove(store);
            }
            if delta.grows() {
                check_quota(&usage, quota)?;
            }
            let value = Bytes::from(serde_json::to_vec(&usage).expect("plain structs serialise"));
            match self
                .update_at(
                    &self.state()?.usage,
                    "write key-value usage",
                    owner,
                    value,
                    revision,
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::AlreadyExists) if tokio::time::Instant::now() < deadline => {
                    backoff(attempt).await
                }
                Err(StoreError::AlreadyExists) => return Err(contention()),
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// `key` of `owner`'s `store`: its value and revision.
    pub async fn kv_read(&self, owner: &str, store: &str, key: &str) -> Result<KvEntry, KvError> {
        let data = &self.state()?.data;
        let name = data_key(owner, store, key);
        let entry = self
            .ride_out(Retry::Idempotent, "read a key", || data.entry(&name))
            .await
            .map_err(unavailable)?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => KvEntry {
                value: Some(entry.value),
                revision: entry.revision,
            },
            Some(entry) => KvEntry {
                value: None,
                revision: entry.revision,
            },
            None => KvEntry {
                value: None,
                revision: 0,
            },
        })
    }

    /// Write `value` (`None`: delete) to `key` if it is still at `seen`
    /// (as [`Storage::kv_read`] answered): the new revision, or `None` if
    /// somebody wrote it since. Usage follows, within `quota`.
    #[allow(clippy::too_many_arguments)]
    pub async fn kv_swap(
        &self,
        owner: &str,
        store: &str,
        key: &str,
        seen: &KvEntry,
        value: Option<Bytes>,
        quota: &KvQuota,
    ) -> Result<Option<u64>, KvError> {
        let delta = Delta::of(
            key,
            seen.value.as_ref().map(Bytes::len),
            value.as_ref().map(Bytes::len),
        );
        if delta.grows() {
            self.adjust_usage(owner, store, delta, quota).await?;
        }
        let data = &self.state()?.data;
        let name = data_key(owner, store, key);
        let written = match value {
            Some(value) => self
                .update_at(data, "write a key", &name, value, seen.revision)
                .await
                .map(Some),
            None if seen.value.is_none() => return Ok(Some(0)),
            None => self
                .ride_out_raw(Retry::Undelivered, "delete a key", || {
                    data.delete_expect_revision(&name, Some(seen.revision))
                })
                .await
                .map(|()| Some(0))
                .map_err(|e| {
                    if e.kind() == kv::DeleteErrorKind::WrongLastRevision {
                        StoreError::AlreadyExists
                    } else {
                        crate::unavailable("delete a key", e)
                    }
                }),
        };
        match written {
            Ok(revision) => {
                // The write is done: a usage update that fails leaves the
                // usage high (never low), and must not report the write
                // as failed (a guest would make it again).
                if !delta.grows()
                    && let Err(e) = self.adjust_usage(owner, store, delta, quota).await
                {
                    tracing::warn!(%owner, %store, error = %e, "key-value usage left high");
                }
                Ok(revision)
            }
            // Refused: the reservation goes back.
            Err(StoreError::AlreadyExists) => {
                if delta.grows() {
                    self.adjust_usage(owner, store, delta.negated(), quota)
                        .await?;
                }
                Ok(None)
            }
            // Maybe applied (a timeout): the reservation stays, so usage
            // is never counted low.
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Set `key` to `value` (`None`: delete it) whatever it held: its new
    /// revision (0 for a deletion).
    pub async fn kv_set(
        &self,
        owner: &str,
        store: &str,
        key: &str,
        value: Option<Bytes>,
        quota: &KvQuota,
    ) -> Result<u64, KvError> {
        self.kv_update(owner, store, key, quota, |_| Ok(value.clone()))
            .await
            .map(|(revision, _)| revision)
    }

    /// Add `delta` to `key`'s value, a decimal integer (absent: 0): the
    /// new value and revision.
    pub async fn kv_increment(
        &self,
        owner: &str,
        store: &str,
        key: &str,
        delta: i64,
        quota: &KvQuota,
    ) -> Result<(i64, u64), KvError> {
        let (revision, value) = self
            .kv_update(owner, store, key, quota, |old| {
                let current = match old {
                    None => 0,
                    Some(value) => std::str::from_utf8(value)
                        .ok()
                        .and_then(|text| text.trim().parse::<i64>().ok())
                        .ok_or_else(|| {
                            KvError::invalid(format!(
                                "increment: the value of {key:?} is not a decimal integer"
                            ))
                        })?,
                };
                let next = current.checked_add(delta).ok_or_else(|| {
                    KvError::invalid(format!("increment: {current} + {delta} overflows"))
                })?;
                Ok(Some(Bytes::from(next.to_string())))
            })
            .await?;
        let counter = std::str::from_utf8(&value.unwrap_or_default())
            .ok()
            .and_then(|text| text.parse().ok())
            .expect("written as a decimal integer above");
        Ok((counter, revision))
    }

    /// Read `key`, compute its new value with `next`, and write it if the
    /// key did not change meanwhile; again otherwise.
    async fn kv_update(
        &self,
        owner: &str,
        store: &str,
        key: &str,
        quota: &KvQuota,
        next: impl Fn(Option<&Bytes>) -> Result<Option<Bytes>, KvError>,
    ) -> Result<(u64, Option<Bytes>), KvError> {
        let deadline = tokio::time::Instant::now() + CONTENTION_WAIT;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let seen = self.kv_read(owner, store, key).await?;
            let value = next(seen.value.as_ref())?;
            if let Some(revision) = self
                .kv_swap(owner, store, key, &seen, value.clone(), quota)
                .await?
            {
                return Ok((revision, value));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(contention());
            }
            backoff(attempt).await;
        }
    }
}

/// Whether `usage` is within `quota`.
fn check_quota(usage: &KvUsage, quota: &KvQuota) -> Result<(), KvError> {
    let over = |what: &str, used: u64, limit: u64| {
        KvError::new(
            KvErrorKind::QuotaExceeded,
            format!("the owner's key-value {what} would be {used}, the quota is {limit}"),
        )
    };
    let stores = usage.stores.len() as u64;
    if stores > quota.stores {
        return Err(over("stores", stores, quota.stores));
    }
    if usage.keys() > quota.keys {
        return Err(over("keys", usage.keys(), quota.keys));
    }
    if usage.bytes() > quota.bytes {
        return Err(over("bytes", usage.bytes(), quota.bytes));
    }
    Ok(())
}

/// A short random pause after the `attempt`th lost compare-and-set, so
/// that writers racing for one key do not collide again in lockstep: up
/// to 1 ms, doubling with each attempt, at most 32 ms.
async fn backoff(attempt: u32) {
    let ceiling = 1_000u64 << attempt.min(5);
    let micros = rand::random::<u64>() % ceiling;
    tokio::time::sleep(Duration::from_micros(micros)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_count_keys_and_bytes() {
        assert_eq!(Delta::of("k", None, Some(3)), Delta { keys: 1, bytes: 4 });
        assert_eq!(
            Delta::of("k", Some(3), None),
            Delta {
                keys: -1,
                bytes: -4
            }
        );
        assert!(!Delta::of("k", Some(3), Some(2)).grows());
        let usage = KvUsage {
            stores: [("a".to_owned(), StoreUsage { keys: 2, bytes: 10 })].into(),
        };
        let quota = KvQuota {
            keys: 2,
            bytes: 10,
            stores: 1,
        };
        assert!(check_quota(&usage, &quota).is_ok());
        let tight = KvQuota { keys: 1, ..quota };
        assert_eq!(
            check_quota(&usage, &tight).unwrap_err().kind,
            KvErrorKind::QuotaExceeded
        );
    }
}
