//! Function routes: upload, list, read, delete, logs.
//!
//! Upload validates and compiles the module with the engine before anything
//! is stored, then writes the module (content addressed, so a re-upload of the
//! same bytes stores nothing new), then the metadata. A failure at any step
//! leaves no metadata behind, and a module without metadata is harmless.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use nimbus_core::http::{Created, FunctionList};
use nimbus_core::{FunctionId, FunctionMeta};
use nimbus_engine::CompileError;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::body::{Body, FunctionIdPath, parse_query};
use crate::upload::Upload;
use crate::{ApiError, AppState};

pub(crate) fn not_found(id: FunctionId) -> ApiError {
    ApiError::NotFound(format!("no function with id {id}"))
}

/// `POST /functions`
pub async fn create(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Body(body): Body,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let upload = Upload::read(&state, &caller, &headers, query.as_deref(), body).await?;
    let limits = state
        .config
        .policy
        .resolve(&upload.limits)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;

    let engine = state.engine.clone();
    let slot = state.cpu_slot().await;
    let code = upload.module;
    let (digest, binary) = tokio::task::spawn_blocking(move || {
        let (module, binary) = engine.compile(&code)?;
        engine.check_limits(&module, &limits)?;
        // A binary upload is stored as it came: the request's own buffer,
        // held once however large the module is. Text was turned into a
        // binary by the engine.
        let binary = match binary {
            std::borrow::Cow::Borrowed(_) => code.clone(),
            std::borrow::Cow::Owned(binary) => bytes::Bytes::from(binary),
        };
        Ok((module.digest().to_owned(), binary))
    })
    .await?
    .map_err(|e| match e {
        CompileError::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
        other => ApiError::InvalidModule(other),
    })?;
    drop(slot);

    let storage = state.storage()?;
    storage.put_module(&digest, &binary).await?;
    let id = storage.next_function_id().await?;
    let meta = FunctionMeta {
        id,
        owner: caller,
        name: upload.name,
        runtime: upload.runtime,
        digest,
        size: binary.len() as u64,
        limits,
        created: nimbus_store::now_rfc3339(),
    };
    storage.create_function(&meta).await?;
    state.functions.insert(meta.clone());
    tracing::info!(id, owner = %meta.owner, runtime = meta.runtime.as_str(), digest = %meta.digest, "function created");
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id,
            code: upload.echo,
            name: meta.name,
            runtime: meta.runtime,
            digest: meta.digest,
            size: meta.size,
            limits: meta.limits,
            created: meta.created,
        }),
    ))
}

/// `GET /functions`
pub async fn list(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
) -> Result<Json<FunctionList>, ApiError> {
    let functions = state.storage()?.functions_of(&caller).await?;
    Ok(Json(FunctionList { functions }))
}

/// `GET /functions/{id}`
pub async fn get(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<Json<FunctionMeta>, ApiError> {
    let meta = state
        .functions
        .get(state.storage(), &caller, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(FunctionMeta::clone(&meta)))
}

/// `DELETE /functions/{id}`
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<Json<Value>, ApiError> {
    if !state.storage()?.delete_function(&caller, id).await? {
        return Err(not_found(id));
    }
    state.functions.remove(&caller, id);
    tracing::info!(id, owner = %caller, "function deleted");
    // The seed's exact message, kept for its curl session.
    Ok(Json(json!({"message": "Función eliminada"})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    limit: Option<usize>,
}

/// Entries `GET /functions/{id}/logs` answers by default, and at most.
const LOG_LIMIT: (usize, usize) = (100, 1000);
/// Log text one answer carries at most; older entries are left out.
const LOG_MAX_BYTES: usize = 4 << 20;

/// `GET /functions/{id}/logs?limit=N`: the newest log entries, oldest first.
pub async fn logs(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query: LogsQuery = parse_query(query.as_deref())?;
    let limit = query.limit.unwrap_or(LOG_LIMIT.0).min(LOG_LIMIT.1);
    if state
        .functions
        .get(state.storage(), &caller, id)
        .await?
        .is_none()
    {
        return Err(not_found(id));
    }
    let logs = state.storage()?.logs(id, limit, LOG_MAX_BYTES).await?;
    Ok(Json(json!({ "logs": logs })))
}
