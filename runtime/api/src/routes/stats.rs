//! `GET /functions/{id}/stats`: the last hour of a function's synchronous
//! calls, by minute, as this API server saw them (`nimbus_core::call_stats`):
//! what the web console charts.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use nimbus_core::call_stats::FunctionStats;
use nimbus_core::http::ErrorBody;

use crate::auth::Caller;
use crate::body::FunctionIdPath;
use crate::routes::functions::owned;
use crate::{ApiError, AppState};

/// `GET /functions/{id}/stats`
#[utoipa::path(
    get,
    path = "/functions/{id}/stats",
    tag = "functions",
    operation_id = "function_stats",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "A function id")),
    responses(
        (status = 200, description = "Its last hour of calls through this API server, by minute", body = FunctionStats),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such function of the caller's", body = ErrorBody),
    ),
)]
pub async fn stats(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<Json<FunctionStats>, ApiError> {
    owned(&state, &caller, id).await?;
    Ok(Json(state.call_stats.of(id)))
}
