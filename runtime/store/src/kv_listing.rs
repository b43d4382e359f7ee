//! Listing a store's keys, and the escaping that makes any key one NATS
//! subject token: a key's bytes outside `[A-Za-z0-9_/-]` are written `=XX`
//! (hex), so any UTF-8 key is a valid token, and a prefix of a key escapes
//! to a prefix of the escaped key.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use nimbus_core::kv::{KvError, LIST_PAGE};

use crate::Storage;
use crate::failover::{NatsError, Retry};
use crate::kv_state::unavailable;
use crate::replica_lag::{check_listing, last_sequence_at_leader};

/// `key` escaped for a NATS KV key (see the module docs).
pub fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The key [`escape_key`] escaped.
pub fn unescape_key(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = escaped.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(crate) fn data_key(owner: &str, store: &str, key: &str) -> String {
    format!("{owner}.{store}.{}", escape_key(key))
}

impl Storage {
    /// Keys of `owner`'s `store` that start with `prefix`, in byte order,
    /// after `cursor`: at most [`LIST_PAGE`] of them, and where the next
    /// page starts (`None`: none left).
    ///
    /// Each page reads the names of all the store's keys (bounded by the
    /// owner's key quota): JetStream lists a store's subjects in the order
    /// they were last written, not in key order.
    pub async fn kv_list(
        &self,
        owner: &str,
        store: &str,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), KvError> {
        let data = &self.state()?.data;
        // An escaped key is one subject token: the filter takes the whole
        // store, the prefix is checked here.
        let filter = format!("{}{owner}.{store}.*", data.prefix);
        let strip = format!("{}{owner}.{store}.", data.prefix);
        let list = self.ride_out(Retry::Idempotent, "list keys", || {
            list_subjects(&data.stream, self.client.new_inbox(), &filter, &strip)
        });
        let mut keys = tokio::time::timeout(Duration::from_secs(30), list)
            .await
            .map_err(|_| unavailable("listing the keys took more than 30 s"))?
            .map_err(unavailable)?;
        // In byte order already (a set's).
        keys.retain(|k| k.starts_with(prefix) && cursor.is_none_or(|c| k.as_str() > c));
        let next = (keys.len() > LIST_PAGE).then(|| keys[LIST_PAGE - 1].clone());
        keys.truncate(LIST_PAGE);
        Ok((keys, next))
    }
}

/// The keys (unescaped, `strip` taken off) of the live subjects matching
/// `filter`: their last messages' headers, through an ordered consumer,
/// checked against the stream's leader (`replica_lag.rs`).
async fn list_subjects(
    stream: &jetstream::stream::Stream,
    inbox: String,
    filter: &str,
    strip: &str,
) -> Result<Vec<String>, NatsError> {
    use jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
    let at_leader = last_sequence_at_leader(stream, filter).await?;
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: inbox,
            filter_subject: filter.to_owned(),
            headers_only: true,
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(NatsError::new)?;
    // The snapshot is the last message of each key when the consumer was
    // made: this many. Writes made since come after it and are not waited
    // for (a key written twice, or deleted, meanwhile is counted once, or
    // not at all).
    let snapshot = consumer.cached_info().num_pending;
    let mut keys = BTreeSet::new();
    let mut seen = 0;
    if snapshot == 0 {
        check_listing(at_leader, seen)?;
        return Ok(Vec::new());
    }
    let mut messages = consumer.messages().await.map_err(NatsError::new)?;
    let mut delivered = 0;
    while let Some(message) = messages.next().await {
        let message = message.map_err(NatsError::new)?;
        let info = message.info().map_err(NatsError::boxed)?;
        let pending = info.pending;
        seen = seen.max(info.stream_sequence);
        delivered += 1;
        let deleted = message
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
        if let Some(key) = message.subject.strip_prefix(strip).and_then(unescape_key) {
            if deleted {
                keys.remove(&key);
            } else {
                keys.insert(key);
            }
        }
        if pending == 0 || delivered >= snapshot {
            break;
        }
    }
    check_listing(at_leader, seen)?;
    Ok(keys.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_escape_to_subject_tokens_and_back_keeping_prefixes() {
        for key in ["plain/key-1_x", "a.b c", "ü=*>", "hits"] {
            let escaped = escape_key(key);
            assert!(
                escaped
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-/=".contains(&b)),
                "{escaped}"
            );
            assert_eq!(unescape_key(&escaped).as_deref(), Some(key));
        }
        assert!(escape_key("a.b c").starts_with(&escape_key("a.b")));
        assert_eq!(escape_key("a.b"), "a=2Eb");
        assert_eq!(unescape_key("=Z1"), None);
    }
}
