//! Key-value state: what a store and a key may be called, the operations
//! a function may ask for, their answers, the owner's quota, and the grant
//! that lets a worker act on its function's stores.
//!
//! One framing everywhere an operation travels (from a WASI preview 1
//! guest to its worker through `nimbus_kv`, from a worker to an API server
//! over NATS, and back): a JSON line, then the raw value bytes, if any.
//! JSON escapes newlines inside strings, so the first `\n` ends the line;
//! values are bytes and are never base64'd.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

mod grant;

pub use grant::Grant;

/// The store every owner has.
pub const DEFAULT_STORE: &str = "default";
/// Longest store name.
pub const MAX_STORE_NAME: usize = 64;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one `list` answers.
pub const LIST_PAGE: usize = 1000;
/// Most stores a function may declare.
pub const MAX_DECLARED_STORES: usize = 16;

/// Per-owner quota on key-value state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvQuota {
    /// Keys in all of the owner's stores.
    pub keys: u64,
    /// Bytes of keys and values in all of the owner's stores.
    pub bytes: u64,
    /// Stores holding at least one key.
    pub stores: u64,
}

impl Default for KvQuota {
    fn default() -> Self {
        Self {
            keys: 10_000,
            bytes: 64 << 20,
            stores: 32,
        }
    }
}

/// A store name that is not `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "store name {0:?}: a store name is 1 to {MAX_STORE_NAME} characters of a-z, 0-9, `_` and `-`, \
     starting with a letter or digit"
)]
pub struct InvalidStoreName(pub String);

/// Check a store name.
pub fn check_store(name: &str) -> Result<(), InvalidStoreName> {
    let ok = (1..=MAX_STORE_NAME).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidStoreName(name.chars().take(80).collect()))
    }
}

/// Check a key: 1 to [`MAX_KEY_BYTES`] bytes of UTF-8 without control
/// characters.
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
        return Err(KvError::invalid(format!(
            "a key is 1 to {MAX_KEY_BYTES} bytes of UTF-8 without control characters; got {} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Check the stores a function declares (`key_value_stores`).
pub fn check_declared_stores(stores: &[String]) -> Result<(), String> {
    if stores.len() > MAX_DECLARED_STORES {
        return Err(format!(
            "a function may declare at most {MAX_DECLARED_STORES} key-value stores"
        ));
    }
    for store in stores {
        check_store(store).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One operation on one store. `key` is the key acted on.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum KvOp {
    /// The value, if the key exists.
    Get { key: String },
    /// Set the key to the value that follows the line.
    Set { key: String },
    /// Remove the key (nothing if absent).
    Delete { key: String },
    /// Whether the key exists.
    Exists { key: String },
    /// Keys starting with `prefix`, in byte order, after `cursor`.
    List {
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        cursor: Option<String>,
    },
    /// Add `delta` to the key's value, a decimal integer (absent: 0),
    /// atomically; the new value.
    Increment { key: String, delta: i64 },
    /// The value and its revision, for a later [`KvOp::Swap`].
    Read { key: String },
    /// Set the key to the value that follows only if its revision is still
    /// `revision`, as [`KvOp::Read`] answered it (for an absent key: 0 if
    /// it was never written, else its deletion's revision).
    Swap { key: String, revision: u64 },
}

impl KvOp {
    /// The key it acts on (`None` for a listing).
    pub fn key(&self) -> Option<&str> {
        match self {
            KvOp::Get { key }
            | KvOp::Set { key }
            | KvOp::Delete { key }
            | KvOp::Exists { key }
            | KvOp::Increment { key, .. }
            | KvOp::Read { key }
            | KvOp::Swap { key, .. } => Some(key),
            KvOp::List { .. } => None,
        }
    }

    /// Whether a value follows the line.
    pub fn takes_value(&self) -> bool {
        matches!(self, KvOp::Set { .. } | KvOp::Swap { .. })
    }
}

/// An operation on one of the function's stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRequest {
    /// The store's name.
    pub store: String,
    /// What to do.
    #[serde(flatten)]
    pub op: KvOp,
    /// The value of a `set` or `swap` (after the line on the wire).
    #[serde(skip)]
    pub value: Bytes,
}

impl KvRequest {
    /// The request framed: its JSON line, then its value.
    pub fn frame(&self) -> Vec<u8> {
        frame(self, &self.value)
    }

    /// Read a framed request, checking the store name, the key and the
    /// value's size.
    pub fn parse(framed: &Bytes) -> Result<Self, KvError> {
        let (line, value) = split(framed);
        let mut request: Self = serde_json::from_slice(line)
            .map_err(|e| KvError::invalid(format!("the request is not a valid operation: {e}")))?;
        check_store(&request.store).map_err(|e| KvError::new(KvErrorKind::NoSuchStore, e))?;
        if let Some(key) = request.op.key() {
            check_key(key)?;
        }
        if !request.op.takes_value() && !value.is_empty() {
            return Err(KvError::invalid("only set and swap take a value"));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(KvError::new(
                KvErrorKind::TooLarge,
                format!(
                    "a value of {} bytes; at most {MAX_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
        request.value = value;
        Ok(request)
    }
}

/// The answer to one operation: the fields it sets, and the value after
/// the line (`get`, `read`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvReply {
    /// `get`, `exists`, `read`: whether the key exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<bool>,
    /// `set`, `read`, `swap` (when swapped), `increment`: the key's revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// `increment`: the new value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<i64>,
    /// `list`: keys, in byte order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// `list`: where the next page starts (`None`: this was the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// `swap`: whether the value was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swapped: Option<bool>,
    /// Why the operation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<KvError>,
    /// The value (after the line on the wire).
    #[serde(skip)]
    pub value: Bytes,
}

impl KvReply {
    /// The reply framed: its JSON line, then its value.
    pub fn frame(&self) -> Vec<u8> {
        frame(self, &self.value)
    }

    /// Read a framed reply.
    pub fn parse(framed: &Bytes) -> Result<Self, KvError> {
        let (line, value) = split(framed);
        let mut reply: Self = serde_json::from_slice(line)
            .map_err(|e| KvError::unavailable(format!("an unreadable key-value reply: {e}")))?;
        reply.value = value;
        Ok(reply)
    }

    /// The reply to a failed operation.
    pub fn failed(error: KvError) -> Self {
        Self {
            error: Some(error),
            ..Self::default()
        }
    }

    /// `Err` when the operation failed.
    pub fn into_result(self) -> Result<Self, KvError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self),
        }
    }
}

fn frame(line: &impl Serialize, value: &[u8]) -> Vec<u8> {
    let mut framed = serde_json::to_vec(line).expect("plain structs serialise");
    framed.push(b'\n');
    framed.extend_from_slice(value);
    framed
}

fn split(framed: &Bytes) -> (&[u8], Bytes) {
    match framed.iter().position(|&b| b == b'\n') {
        Some(at) => (&framed[..at], framed.slice(at + 1..)),
        None => (&framed[..], Bytes::new()),
    }
}

/// Why a key-value operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct KvError {
    /// What went wrong.
    pub kind: KvErrorKind,
    /// Said for people (never holds a value).
    pub message: String,
}

/// The kinds of [`KvError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvErrorKind {
    /// The function did not declare the store (or the grant is not valid).
    AccessDenied,
    /// The store's name is not a valid one.
    NoSuchStore,
    /// A malformed operation: a bad key, a value that is not an integer
    /// for `increment`...
    Invalid,
    /// A value above [`MAX_VALUE_BYTES`].
    TooLarge,
    /// The owner's keys, bytes or stores would go over their quota.
    QuotaExceeded,
    /// The invocation made more operations than it may.
    TooManyOperations,
    /// The state could not be reached; the operation may be tried again.
    Unavailable,
}

impl std::fmt::Display for KvErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = serde_json::to_value(self).expect("a unit variant");
        f.write_str(name.as_str().expect("a string"))
    }
}

impl KvError {
    /// An error of `kind`.
    pub fn new(kind: KvErrorKind, message: impl ToString) -> Self {
        Self {
            kind,
            message: message.to_string(),
        }
    }

    /// A malformed operation.
    pub fn invalid(message: impl ToString) -> Self {
        Self::new(KvErrorKind::Invalid, message)
    }

    /// The state could not be reached.
    pub fn unavailable(message: impl ToString) -> Self {
        Self::new(KvErrorKind::Unavailable, message)
    }

    /// A store the function did not declare.
    pub fn access_denied(store: &str) -> Self {
        Self::new(
            KvErrorKind::AccessDenied,
            format!("the function may not open store {store:?}: name it in its key_value_stores"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_frame_a_json_line_then_raw_bytes() {
        let request = KvRequest {
            store: "default".into(),
            op: KvOp::Set {
                key: "a\"b/ü".into(),
            },
            value: Bytes::from_static(b"\n\x00raw\n"),
        };
        let framed = Bytes::from(request.frame());
        assert_eq!(KvRequest::parse(&framed), Ok(request));
        let reply = KvReply {
            found: Some(true),
            revision: Some(3),
            value: Bytes::from_static(b"{\"x\":1}\n"),
            ..KvReply::default()
        };
        assert_eq!(KvReply::parse(&Bytes::from(reply.frame())), Ok(reply));
        let list: KvRequest =
            KvRequest::parse(&Bytes::from_static(b"{\"store\":\"s\",\"op\":\"list\"}")).unwrap();
        assert_eq!(
            list.op,
            KvOp::List {
                prefix: String::new(),
                cursor: None
            }
        );
    }

    #[test]
    fn bad_requests_are_named() {
        let kind = |line: &str| {
            KvRequest::parse(&Bytes::from(line.to_owned()))
                .unwrap_err()
                .kind
        };
        assert_eq!(
            kind(r#"{"store":"Bad!","op":"get","key":"k"}"#),
            KvErrorKind::NoSuchStore
        );
        assert_eq!(
            kind(r#"{"store":"s","op":"get","key":""}"#),
            KvErrorKind::Invalid
        );
        assert_eq!(
            kind(
                r#"{"store":"s","op":"get","key":"k"}
value"#
            ),
            KvErrorKind::Invalid
        );
        assert_eq!(kind(r#"{"store":"s","op":"nope"}"#), KvErrorKind::Invalid);
        let big = format!(
            "{{\"store\":\"s\",\"op\":\"set\",\"key\":\"k\"}}\n{}",
            "x".repeat(MAX_VALUE_BYTES + 1)
        );
        assert_eq!(kind(&big), KvErrorKind::TooLarge);
        assert!(check_store("default").is_ok() && check_store("a-b_1").is_ok());
        assert!(check_store("-a").is_err() && check_store(&"a".repeat(65)).is_err());
        assert!(check_declared_stores(&vec!["s".to_owned(); 17]).is_err());
    }
}
