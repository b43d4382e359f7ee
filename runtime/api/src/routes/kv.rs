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
use nimbus_core::http::ErrorBody;
use nimbus_core::kv;
use nimbus_store::KvEntry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::routes::account::KvQuotas;

use crate::auth::Caller;
use crate::body::Body;
use crate::{ApiError, AppState};

/// One of the caller's stores.
#[derive(Serialize, ToSchema)]
pub struct StoreUsage {
    /// Its name.
    name: String,
    /// Keys it holds.
    keys: u64,
    /// Bytes of its keys and values.
    bytes: u64,
}

/// `GET /kv` answers this.
#[derive(Serialize, ToSchema)]
pub struct StoreList {
    /// The caller's stores that hold keys.
    stores: Vec<StoreUsage>,
    /// Their use against the caller's quota.
    quota: KvQuotas,
}

/// `GET /kv`
#[utoipa::path(
    get,
    path = "/kv",
    tag = "kv",
    operation_id = "list_stores",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's stores", body = StoreList),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
)]
pub async fn stores(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
) -> Result<Json<StoreList>, ApiError> {
    let (usage, _) = state.storage()?.kv_usage(&caller).await?;
    let stores = usage
        .stores
        .iter()
        .map(|(name, s)| StoreUsage {
            name: name.clone(),
            keys: s.keys,
            bytes: s.bytes,
        })
        .collect();
    Ok(Json(StoreList {
        stores,
        quota: KvQuotas::new(
            &state.config.kv_quota,
            usage.keys(),
            usage.bytes(),
            usage.stores.len(),
        ),
    }))
}

/// `GET /kv/{store}` answers this.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    /// The store.
    store: String,
    /// Up to 1000 keys, in byte order.
    keys: Vec<String>,
    /// The last key, to ask for the next page; `null` when none is left.
    cursor: Option<String>,
}

/// `PUT /kv/{store}/{key}` answers this.
#[derive(Serialize, ToSchema)]
pub struct Written {
    /// The store.
    store: String,
    /// The key.
    key: String,
    /// The key's new revision (also the `ETag`).
    revision: u64,
}

/// The query of `GET /kv/{store}`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only keys that start with this.
    #[serde(default)]
    prefix: String,
    /// The `cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /kv/{store}`
#[utoipa::path(
    get,
    path = "/kv/{store}",
    tag = "kv",
    operation_id = "list_keys",
    security(("bearer" = [])),
    params(("store" = String, Path, description = "A store name"), ListQuery),
    responses(
        (status = 200, description = "A page of keys", body = KeyList),
        (status = 400, description = "Invalid store name or query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    StorePath(store): StorePath,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<KeyList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (keys, cursor) = state
        .storage()?
        .kv_list(&caller, &store, &query.prefix, query.cursor.as_deref())
        .await?;
    Ok(Json(KeyList {
        store,
        keys,
        cursor,
    }))
}

/// `GET /kv/{store}/{key}`
#[utoipa::path(
    get,
    path = "/kv/{store}/{key}",
    tag = "kv",
    operation_id = "get_key",
    security(("bearer" = [])),
    params(
        ("store" = String, Path, description = "A store name"),
        ("key" = String, Path, description = "A key (may contain `/`)"),
    ),
    responses(
        (status = 200, description = "The value, as stored", content_type = "application/octet-stream", body = crate::openapi::Binary,
            headers(("ETag" = String, description = "The key's revision, quoted"))),
        (status = 400, description = "Invalid store name or key", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    put,
    path = "/kv/{store}/{key}",
    tag = "kv",
    operation_id = "put_key",
    security(("bearer" = [])),
    params(
        ("store" = String, Path, description = "A store name"),
        ("key" = String, Path, description = "A key (may contain `/`)"),
        ("If-Match" = Option<String>, Header, description = "`\"<revision>\"`: write only if unchanged; `*`: only if it exists"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: write only if absent"),
    ),
    request_body(content = crate::openapi::Binary, content_type = "application/octet-stream", description = "The value, up to 1 MiB"),
    responses(
        (status = 200, description = "Written", body = Written,
            headers(("ETag" = String, description = "The new revision, quoted"))),
        (status = 400, description = "Invalid store name, key or condition", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Past a key-value quota", body = ErrorBody),
        (status = 412, description = "The condition does not hold", body = ErrorBody),
        (status = 413, description = "Value over 1 MiB", body = ErrorBody),
    ),
)]
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
        Json(Written {
            store,
            key,
            revision,
        }),
    )
        .into_response())
}

/// `DELETE /kv/{store}/{key}`
#[utoipa::path(
    delete,
    path = "/kv/{store}/{key}",
    tag = "kv",
    operation_id = "delete_key",
    security(("bearer" = [])),
    params(
        ("store" = String, Path, description = "A store name"),
        ("key" = String, Path, description = "A key (may contain `/`)"),
        ("If-Match" = Option<String>, Header, description = "`\"<revision>\"`: delete only if unchanged; `*`: only if it exists"),
    ),
    responses(
        (status = 204, description = "Deleted (also when it did not exist)"),
        (status = 400, description = "Invalid store name, key or condition", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 412, description = "The condition does not hold", body = ErrorBody),
    ),
)]
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
