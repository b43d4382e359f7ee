//! The owner's key-value stores over HTTP, the same state their functions
//! see (`nimbus_store`'s `kv_state.rs`):
//!
//! - `GET /kv`: the caller's stores (keys and bytes each) and quota;
//! - `GET /kv/{store}?prefix=&cursor=`: keys, in byte order, a page at a
//!   time (`cursor` in the answer: where the next page starts);
//! - `GET /kv/{store}/{key}`: the value, raw, its revision in `ETag`;
//! - `PUT /kv/{store}/{key}`: set it to the body; `If-Match: "<revision>"`
//!   sets it only if it is still at that revision, `If-Match: *` only if it
//!   exists, `If-None-Match: *` only if it does not (412 otherwise);
//! - `DELETE /kv/{store}/{key}`, with `If-Match` likewise.
//!
//! Keys may hold `/` (the rest of the path is the key, percent-decoded).
//! Stores need no creating: a store is the keys under its name.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_core::kv::{self, KvQuota};
use nimbus_store::KvEntry;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::body::Body;
use crate::{ApiError, AppState};

/// `GET /kv`
pub async fn stores(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
) -> Result<Json<Value>, ApiError> {
    let (usage, _) = state.storage()?.kv_usage(&caller).await?;
    let stores: Vec<Value> = usage
        .stores
        .iter()
        .map(|(name, s)| json!({"name": name, "keys": s.keys, "bytes": s.bytes}))
        .collect();
    Ok(Json(json!({
        "stores": stores,
        "quota": quota_json(&state.config.kv_quota, usage.keys(), usage.bytes(), usage.stores.len()),
    })))
}

/// The key-value part of `GET /account` and `GET /kv`.
pub(crate) fn quota_json(quota: &KvQuota, keys: u64, bytes: u64, stores: usize) -> Value {
    json!({
        "keys": {"used": keys, "limit": quota.keys},
        "bytes": {"used": bytes, "limit": quota.bytes},
        "stores": {"used": stores, "limit": quota.stores},
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
}

/// `GET /kv/{store}`
pub async fn list(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    StorePath(store): StorePath,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (keys, cursor) = state
        .storage()?
        .kv_list(&caller, &store, &query.prefix, query.cursor.as_deref())
        .await?;
    Ok(Json(
        json!({"store": store, "keys": keys, "cursor": cursor}),
    ))
}

/// `GET /kv/{store}/{key}`
pub async fn get(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    KeyPath(store, key): KeyPath,
) -> Result<Response, ApiError> {
    let entry = state.storage()?.kv_read(&caller, &store, &key).await?;
    let Some(value) = entry.value else {
        return Err(no_key(&store, &key));
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::ETAG, etag(entry.revision)),
        ],
        value,
    )
        .into_response())
}

/// `PUT /kv/{store}/{key}`
pub async fn put(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    KeyPath(store, key): KeyPath,
    headers: HeaderMap,
    Body(value): Body,
) -> Result<Response, ApiError> {
    if value.len() > kv::MAX_VALUE_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "a value of {} bytes; at most {}",
            value.len(),
            kv::MAX_VALUE_BYTES
        )));
    }
    let revision = write(&state, &caller, &store, &key, &headers, Some(value)).await?;
    Ok((
        [(header::ETAG, etag(revision))],
        Json(json!({"store": store, "key": key, "revision": revision})),
    )
        .into_response())
}

/// `DELETE /kv/{store}/{key}`
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    KeyPath(store, key): KeyPath,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    write(&state, &caller, &store, &key, &headers, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Write `value` (`None`: delete) to `key` under the request's condition:
/// the new revision.
async fn write(
    state: &AppState,
    owner: &str,
    store: &str,
    key: &str,
    headers: &HeaderMap,
    value: Option<bytes::Bytes>,
) -> Result<u64, ApiError> {
    let storage = state.storage()?;
    let quota = &state.config.kv_quota;
    let condition = Condition::of(headers)?;
    if matches!(condition, Condition::None) {
        return Ok(storage.kv_set(owner, store, key, value, quota).await?);
    }
    let seen = storage.kv_read(owner, store, key).await?;
    if !condition.holds(&seen) {
        return Err(precondition_failed(&seen));
    }
    storage
        .kv_swap(owner, store, key, &seen, value, quota)
        .await?
        .ok_or_else(|| {
            ApiError::PreconditionFailed("the key changed while it was being written".into())
        })
}

/// A conditional write's condition.
enum Condition {
    None,
    /// `If-Match: "<revision>"` (strong comparison only).
    Revision(u64),
    /// `If-Match: *`.
    Exists,
    /// `If-None-Match: *`.
    Absent,
}

impl Condition {
    fn of(headers: &HeaderMap) -> Result<Self, ApiError> {
        let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("").trim());
        let bad = |what: &str| {
            ApiError::BadRequest(format!(
                "{what}: a write takes If-Match: \"<revision>\" (an ETag this API answered) or *, \
                 or If-None-Match: *"
            ))
        };
        match (text(header::IF_MATCH), text(header::IF_NONE_MATCH)) {
            (None, None) => Ok(Self::None),
            (None, Some("*")) => Ok(Self::Absent),
            (None, Some(other)) => Err(bad(&format!("If-None-Match {other:?}"))),
            (Some("*"), None) => Ok(Self::Exists),
            (Some(tag), None) => tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .and_then(|t| t.parse().ok())
                .map(Self::Revision)
                .ok_or_else(|| bad(&format!("If-Match {tag:?}"))),
            (Some(_), Some(_)) => Err(bad("both If-Match and If-None-Match")),
        }
    }

    fn holds(&self, seen: &KvEntry) -> bool {
        match self {
            Self::None => true,
            Self::Revision(revision) => seen.value.is_some() && seen.revision == *revision,
            Self::Exists => seen.value.is_some(),
            Self::Absent => seen.value.is_none(),
        }
    }
}

fn precondition_failed(seen: &KvEntry) -> ApiError {
    ApiError::PreconditionFailed(match &seen.value {
        Some(_) => format!("the key is at revision {}", seen.revision),
        None => "the key does not exist".to_owned(),
    })
}

fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}

fn no_key(store: &str, key: &str) -> ApiError {
    ApiError::NotFound(format!("no key {key:?} in store {store:?}"))
}

/// A store name from the path, checked.
pub struct StorePath(String);

impl<S: Send + Sync> FromRequestParts<S> for StorePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(store) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("no such store".into()))?;
        kv::check_store(&store).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(Self(store))
    }
}

/// A store name and a key from the path, checked.
pub struct KeyPath(String, String);

impl<S: Send + Sync> FromRequestParts<S> for KeyPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((store, key)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("no such key".into()))?;
        kv::check_store(&store).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        kv::check_key(&key)?;
        Ok(Self(store, key))
    }
}
