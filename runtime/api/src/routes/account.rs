//! `GET /account`: the caller's usage against their quotas.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use nimbus_core::http::ErrorBody;
use nimbus_core::kv::KvQuota;
use nimbus_core::{FunctionId, Username};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::quotas::{Usage, log_reservation};
use crate::{ApiError, AppState};

/// Used against a limit.
#[derive(Serialize, ToSchema)]
pub struct Quota {
    /// How much is used.
    used: u64,
    /// The most allowed.
    limit: u64,
}

impl Quota {
    pub(crate) fn new(used: impl TryInto<u64>, limit: impl TryInto<u64>) -> Self {
        Self {
            used: used.try_into().unwrap_or(u64::MAX),
            limit: limit.try_into().unwrap_or(u64::MAX),
        }
    }
}

/// The caller's key-value usage.
#[derive(Serialize, ToSchema)]
pub struct KvQuotas {
    /// Keys in all stores.
    keys: Quota,
    /// Bytes of keys and values in all stores.
    bytes: Quota,
    /// Stores holding at least one key.
    stores: Quota,
}

impl KvQuotas {
    pub(crate) fn new(quota: &KvQuota, keys: u64, bytes: u64, stores: usize) -> Self {
        Self {
            keys: Quota::new(keys, quota.keys),
            bytes: Quota::new(bytes, quota.bytes),
            stores: Quota::new(stores, quota.stores),
        }
    }
}

/// The caller's quotas and their use.
#[derive(Serialize, ToSchema)]
pub struct AccountQuotas {
    /// Functions held.
    functions: Quota,
    /// Module bytes, each distinct module counted once.
    module_bytes: Quota,
    /// Log space reserved by the functions (entries kept x their log caps).
    log_bytes: Quota,
    /// Asynchronous invocations queued or running.
    jobs: Quota,
    /// Key-value state.
    kv: KvQuotas,
}

/// One function's share.
#[derive(Serialize, ToSchema)]
pub struct FunctionUsage {
    /// The function.
    id: FunctionId,
    /// Its name, if it has one.
    name: Option<String>,
    /// Its module's size.
    module_bytes: u64,
    /// Log entries kept.
    log_entries: Quota,
    /// Bytes of those entries.
    log_bytes: Quota,
}

/// `GET /account` answers this.
#[derive(Serialize, ToSchema)]
pub struct Account {
    /// The caller.
    #[schema(value_type = String)]
    username: Username,
    /// Their quotas.
    quotas: AccountQuotas,
    /// Their functions' shares.
    functions: Vec<FunctionUsage>,
}

/// `GET /account`
#[utoipa::path(
    get,
    path = "/account",
    tag = "accounts",
    operation_id = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's usage against their quotas", body = Account),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
)]
pub async fn account(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
) -> Result<Json<Account>, ApiError> {
    let storage = state.storage()?;
    let functions = storage.functions_of(&caller).await?;
    let entries_limit = storage.log_entries_per_function();
    let usage = Usage::of(&functions, entries_limit);
    let jobs = storage.jobs_of(&caller).await?;
    let ids: Vec<_> = functions.iter().map(|f| f.id).collect();
    let logs = storage.log_usage(&ids).await?;
    let quotas = state.config.quotas;
    let (kv, _) = storage.kv_usage(&caller).await?;
    let functions = functions
        .iter()
        .map(|f| {
            let used = logs.get(&f.id).copied().unwrap_or_default();
            FunctionUsage {
                id: f.id,
                name: f.name.clone(),
                module_bytes: f.size,
                log_entries: Quota::new(used.entries, entries_limit),
                log_bytes: Quota::new(
                    used.bytes,
                    log_reservation(f.limits.max_log_bytes, entries_limit),
                ),
            }
        })
        .collect();
    Ok(Json(Account {
        username: caller,
        quotas: AccountQuotas {
            functions: Quota::new(usage.functions, quotas.functions),
            module_bytes: Quota::new(usage.module_bytes, quotas.module_bytes),
            log_bytes: Quota::new(usage.log_bytes, quotas.log_bytes),
            jobs: Quota::new(jobs, state.config.max_jobs_per_user),
            kv: KvQuotas::new(
                &state.config.kv_quota,
                kv.keys(),
                kv.bytes(),
                kv.stores.len(),
            ),
        },
        functions,
    }))
}
