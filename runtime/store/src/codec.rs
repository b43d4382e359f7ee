//! How records are written: JSON values, `<owner>.<id>` keys, RFC 3339
//! timestamps.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Keys of owned records (functions, invocations): `<owner>.<id>`, so a
/// user's records are a subject filter and nobody else's can be named.
pub(crate) fn owner_key(owner: &str, id: impl std::fmt::Display) -> String {
    format!("{owner}.{id}")
}

/// The current time in RFC 3339, as every record's timestamps are written.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

pub(crate) fn rfc3339(time: time::OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Bytes {
    serde_json::to_vec(value).expect("records serialise").into()
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    key: &str,
    value: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn owned_keys_are_owner_dot_id() {
        assert_eq!(owner_key("alice", 7u64), "alice.7");
        assert_eq!(owner_key("bob", "inv-1"), "bob.inv-1");
    }

    #[test]
    fn records_round_trip() {
        let value: Vec<u64> = decode("k", &encode(&vec![1u64, 2])).unwrap();
        assert_eq!(value, [1, 2]);
    }

    #[test]
    fn a_corrupt_record_names_its_key_and_keeps_the_json_error() {
        let error = decode::<u64>("alice.7", b"{not json").unwrap_err();
        assert!(!error.is_unavailable());
        assert_eq!(error.to_string(), "corrupt record `alice.7`");
        let source = error.source().expect("keeps its source");
        let json = source
            .downcast_ref::<serde_json::Error>()
            .expect("a serde_json error");
        let expected = serde_json::from_slice::<u64>(b"{not json").unwrap_err();
        assert_eq!(json.to_string(), expected.to_string());
        let StoreError::Corrupt { key, .. } = error else {
            panic!("not Corrupt: {error:?}");
        };
        assert_eq!(key, "alice.7");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let epoch = time::OffsetDateTime::UNIX_EPOCH;
        assert_eq!(rfc3339(epoch), "1970-01-01T00:00:00Z");
    }
}
