//! Key-value state: the owner's stores, kept across invocations. A
//! function opens only the stores it names at upload
//! (`key_value_stores`, e.g. `["default"]`).
//!
//! ```no_run
//! #[nimbus_sdk::function]
//! fn hit(_: serde_json::Value) -> Result<i64, nimbus_sdk::kv::Error> {
//!     nimbus_sdk::kv::Store::open("default").increment("hits", 1)
//! }
//! ```
//!
//! Reads see every write made before them (in this invocation or an
//! earlier one); [`Store::increment`] and [`Store::swap`] are atomic under
//! concurrency. Values are bytes; [`Store::get_json`] and
//! [`Store::set_json`] (de)serialise for you. Under the hood this is the
//! platform's `nimbus_kv` import: a JSON line naming the operation, then
//! the value's bytes.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One of the owner's stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    name: String,
}

/// Why an operation failed: `kind` is `access_denied` (the function did
/// not declare the store), `quota_exceeded`, `invalid`, `too_large`,
/// `too_many_operations`, `unavailable`...
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Error {
    /// The kind, a snake_case name.
    pub kind: String,
    /// What happened.
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key-value {}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

/// A key's revision, as [`Store::read`] answers it, for [`Store::swap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision(u64);

#[derive(Serialize)]
struct Request<'a> {
    store: &'a str,
    op: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

impl<'a> Request<'a> {
    fn new(store: &'a str, op: &'a str, key: Option<&'a str>) -> Self {
        Self {
            store,
            op,
            key,
            delta: None,
            revision: None,
            prefix: None,
            cursor: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Reply {
    found: Option<bool>,
    revision: Option<u64>,
    counter: Option<i64>,
    keys: Option<Vec<String>>,
    cursor: Option<String>,
    swapped: Option<bool>,
    error: Option<Error>,
}

impl Store {
    /// The store called `name`.
    pub fn open(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }

    /// The store every owner has, `default`.
    pub fn open_default() -> Self {
        Self::open("default")
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn call(&self, request: Request<'_>, value: &[u8]) -> Result<(Reply, Vec<u8>), Error> {
        let mut framed = serde_json::to_vec(&request).expect("requests serialise");
        framed.push(b'\n');
        framed.extend_from_slice(value);
        let answer = host::exchange(&framed)?;
        let at = answer
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(answer.len());
        let reply: Reply = serde_json::from_slice(&answer[..at]).map_err(|e| Error {
            kind: "unavailable".into(),
            message: format!("unreadable answer from the platform: {e}"),
        })?;
        if let Some(error) = reply.error {
            return Err(error);
        }
        let value = answer.get(at + 1..).unwrap_or_default().to_vec();
        Ok((reply, value))
    }

    /// The value of `key`, if it exists.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let (reply, value) = self.call(Request::new(&self.name, "get", Some(key)), &[])?;
        Ok((reply.found == Some(true)).then_some(value))
    }

    /// The value of `key` as JSON, if it exists.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error {
                kind: "invalid".into(),
                message: format!("the value of {key:?} is not the JSON expected: {e}"),
            }),
        }
    }

    /// Set `key` to `value`.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.call(Request::new(&self.name, "set", Some(key)), value.as_ref())?;
        Ok(())
    }

    /// Set `key` to `value` as JSON.
    pub fn set_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), Error> {
        self.set(key, serde_json::to_vec(value).expect("values serialise"))
    }

    /// Remove `key` (nothing if it does not exist).
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.call(Request::new(&self.name, "delete", Some(key)), &[])?;
        Ok(())
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        let (reply, _) = self.call(Request::new(&self.name, "exists", Some(key)), &[])?;
        Ok(reply.found == Some(true))
    }

    /// Every key starting with `prefix`, in byte order.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let request = Request {
                prefix: Some(prefix),
                cursor: cursor.as_deref(),
                ..Request::new(&self.name, "list", None)
            };
            let (reply, _) = self.call(request, &[])?;
            keys.extend(reply.keys.unwrap_or_default());
            match reply.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Add `delta` to `key`, a decimal integer (0 if absent), atomically:
    /// the new value.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        let request = Request {
            delta: Some(delta),
            ..Request::new(&self.name, "increment", Some(key))
        };
        let (reply, _) = self.call(request, &[])?;
        Ok(reply.counter.unwrap_or_default())
    }

    /// The value of `key` (if any) and its revision, for [`Store::swap`].
    pub fn read(&self, key: &str) -> Result<(Option<Vec<u8>>, Revision), Error> {
        let (reply, value) = self.call(Request::new(&self.name, "read", Some(key)), &[])?;
        let revision = Revision(reply.revision.unwrap_or(0));
        Ok(((reply.found == Some(true)).then_some(value), revision))
    }

    /// Set `key` to `value` only if it is still at `revision` (as
    /// [`Store::read`] answered): whether it was.
    pub fn swap(
        &self,
        key: &str,
        revision: Revision,
        value: impl AsRef<[u8]>,
    ) -> Result<bool, Error> {
        let request = Request {
            revision: Some(revision.0),
            ..Request::new(&self.name, "swap", Some(key))
        };
        let (reply, _) = self.call(request, value.as_ref())?;
        Ok(reply.swapped == Some(true))
    }
}

#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod host {
    #[link(wasm_import_module = "nimbus_kv")]
    unsafe extern "C" {
        fn call(ptr: *const u8, len: i32) -> i32;
        fn read(ptr: *mut u8, len: i32) -> i32;
    }

    /// Send the framed request; the framed reply.
    pub(super) fn exchange(request: &[u8]) -> Result<Vec<u8>, super::Error> {
        crate::host_call::exchange(call, read, request).ok_or_else(|| super::Error {
            kind: "too_large".into(),
            message: "the request is too large".into(),
        })
    }
}

#[cfg(not(target_family = "wasm"))]
mod host {
    pub(super) fn exchange(_request: &[u8]) -> Result<Vec<u8>, super::Error> {
        Err(super::Error {
            kind: "unavailable".into(),
            message: "key-value state is available only inside Nimbus (wasm32-wasip1)".into(),
        })
    }
}
