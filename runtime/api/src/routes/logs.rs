//! `GET /functions/{id}/logs`: what a function wrote to stderr, the newest
//! entries at once or, with `follow=true`, then each new one as it is
//! written (`live_logs.rs`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use nimbus_core::http::ErrorBody;
use nimbus_store::LogEntry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::body::{FunctionIdPath, parse_query};
use crate::routes::functions::owned;
use crate::{ApiError, AppState};

/// The query of `GET /functions/{id}/logs`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogsQuery {
    /// The newest N entries (default 100; at most the 50 kept per function).
    #[param(minimum = 0)]
    limit: Option<usize>,
    /// Then stream each new entry as it is written (Server-Sent Events).
    #[serde(default)]
    follow: bool,
}

/// `GET /functions/{id}/logs` answers this (without `follow`).
#[derive(Serialize, ToSchema)]
pub struct LogList {
    /// The newest entries, oldest first.
    logs: Vec<LogEntry>,
}

/// Entries `GET /functions/{id}/logs` answers by default, and at most.
const LOG_LIMIT: (usize, usize) = (100, 1000);
/// Log text one answer carries at most; older entries are left out.
const LOG_MAX_BYTES: usize = 4 << 20;

/// `GET /functions/{id}/logs?limit=N`: the newest log entries, oldest
/// first; with `follow=true`, those and then new ones as they are written,
/// as Server-Sent Events (`live_logs.rs`).
#[utoipa::path(
    get,
    path = "/functions/{id}/logs",
    tag = "logs",
    operation_id = "function_logs",
    security(("bearer" = [])),
    params(
        ("id" = u64, Path, description = "A function id"),
        LogsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "With `follow`: resume after this entry's sequence number"),
    ),
    responses(
        (status = 200, description = "The entries; with `follow=true`, a stream of `log` events whose \
            `id` is the entry's sequence number and `data` the entry as JSON",
            content(
                (LogList = "application/json"),
                (String = "text/event-stream"),
            )),
        (status = 400, description = "Invalid query or Last-Event-ID", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such function of the caller's", body = ErrorBody),
        (status = 429, description = "Too many open follows", body = ErrorBody),
    ),
)]
pub async fn logs(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query: LogsQuery = parse_query(query.as_deref())?;
    let limit = query.limit.unwrap_or(LOG_LIMIT.0).min(LOG_LIMIT.1);
    owned(&state, &caller, id).await?;
    if query.follow {
        return super::live_logs::follow(&state, &caller, id, limit, &headers).await;
    }
    let logs = state.storage()?.logs(id, limit, LOG_MAX_BYTES).await?;
    Ok(Json(LogList { logs }).into_response())
}
