//! `GET /account`: the caller's usage against their quotas.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::quotas::{Usage, log_reservation};
use crate::{ApiError, AppState};

/// `GET /account`
pub async fn account(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
) -> Result<Json<Value>, ApiError> {
    let storage = state.storage()?;
    let functions = storage.functions_of(&caller).await?;
    let entries_limit = storage.log_entries_per_function();
    let usage = Usage::of(&functions, entries_limit);
    let jobs = storage.jobs_of(&caller).await?;
    let ids: Vec<_> = functions.iter().map(|f| f.id).collect();
    let logs = storage.log_usage(&ids).await?;
    let quotas = state.config.quotas;
    let (kv, _) = storage.kv_usage(&caller).await?;
    let per_function: Vec<Value> = functions
        .iter()
        .map(|f| {
            let used = logs.get(&f.id).copied().unwrap_or_default();
            json!({
                "id": f.id,
                "name": f.name,
                "module_bytes": f.size,
                "log_entries": {"used": used.entries, "limit": entries_limit},
                "log_bytes": {
                    "used": used.bytes,
                    "limit": log_reservation(f.limits.max_log_bytes, entries_limit),
                },
            })
        })
        .collect();
    Ok(Json(json!({
        "username": caller,
        "quotas": {
            "functions": {"used": usage.functions, "limit": quotas.functions},
            "module_bytes": {"used": usage.module_bytes, "limit": quotas.module_bytes},
            // Reserved by the functions (entries kept x their log caps).
            "log_bytes": {"used": usage.log_bytes, "limit": quotas.log_bytes},
            "jobs": {"used": jobs, "limit": state.config.max_jobs_per_user},
            "kv": crate::routes::kv::quota_json(&state.config.kv_quota, kv.keys(), kv.bytes(), kv.stores.len()),
        },
        "functions": per_function,
    })))
}
