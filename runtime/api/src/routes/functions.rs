//! Function routes: upload, list, read, change (`PATCH`: name, access,
//! allowed outbound hosts),
//! delete. Variables and secrets are in `function_config.rs`, logs in
//! `logs.rs`.
//!
//! Upload validates and compiles the module with the engine before anything
//! is stored, then writes the module (content addressed, so a re-upload of the
//! same bytes stores nothing new) and, with the platform's artifact key, the
//! sealed native artifact workers load instead of compiling, then the
//! metadata. A failure at any step
//! leaves no metadata behind, and a module without metadata is harmless.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use nimbus_core::http::ErrorBody;
use nimbus_core::http::{Created, FunctionList};
use nimbus_core::script::ScriptModule;
use nimbus_core::{Access, FunctionId, FunctionMeta, Runtime, Username, World};
use nimbus_engine::{Abi, CompileError};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::{Body, FunctionIdPath, parse_json};
use crate::quotas::Usage;
use crate::routes::Message;
use crate::upload::Upload;
use crate::{ApiError, AppState};

pub(crate) fn not_found(id: FunctionId) -> ApiError {
    ApiError::NotFound(format!("no function with id {id}"))
}

/// `caller`'s function `id` (from the function cache); 404 if it is not
/// theirs.
pub(crate) async fn owned(
    state: &AppState,
    caller: &Username,
    id: FunctionId,
) -> Result<Arc<FunctionMeta>, ApiError> {
    state
        .functions
        .get(state.storage(), caller, id)
        .await?
        .ok_or_else(|| not_found(id))
}

fn name_taken(name: &str) -> ApiError {
    ApiError::Conflict(format!("you already have a function named `{name}`"))
}

/// The path a named function answers on.
pub(crate) fn url_path(owner: &Username, name: &str) -> String {
    format!("/fn/{owner}/{name}")
}

/// Whether `module` is a script module (a JavaScript function's bytecode,
/// see `nimbus_core::script`). Only the platform's own JavaScript
/// interpreter may run one: a script naming anything else is refused.
async fn is_script(state: &AppState, module: &[u8]) -> Result<bool, ApiError> {
    let script = match ScriptModule::decode(module) {
        Ok(Some(script)) => script,
        Ok(None) => return Ok(false),
        Err(message) => return Err(ApiError::InvalidModule(CompileError::Invalid(message))),
    };
    let js = state.js().await?;
    if script.interpreter != js.interpreter_digest() {
        return Err(ApiError::InvalidModule(CompileError::MissingInterpreter(
            script.interpreter.to_owned(),
        )));
    }
    Ok(true)
}

/// `POST /functions`
#[utoipa::path(
    post,
    path = "/functions",
    tag = "functions",
    operation_id = "create_function",
    security(("bearer" = [])),
    params(crate::upload::UploadQuery),
    request_body(
        description = "JSON with the source (WAT, JavaScript; or a module in base64), or a raw \
            WebAssembly module or component (`application/wasm`) with its settings in the query",
        content(
            (crate::upload::UploadRequest = "application/json"),
            (crate::openapi::Binary = "application/wasm"),
        ),
    ),
    responses(
        (status = 201, description = "Stored; it can be called", body = Created),
        (status = 400, description = "Malformed request or limits above the maxima", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Past a quota, or in someone else's name", body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody),
        (status = 413, description = "Module over the cap", body = ErrorBody),
        (status = 422, description = "The engine refused the module, the JavaScript does not load, or the compile went past its budget", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Body(body): Body,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let upload = Upload::read(&state, &caller, &headers, query.as_deref(), body).await?;
    // A user at their function quota is refused before anything compiles.
    let quotas = state.config.quotas;
    if let Ok(storage) = state.storage() {
        let held = storage.functions_of(&caller).await?;
        quotas.check_count(Usage::of(&held, storage.log_entries_per_function()))?;
    }
    let limits = state
        .config
        .policy
        .resolve(&upload.limits)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;

    let code = upload.module;
    let script = is_script(&state, &code).await?;
    let seal = state.config.artifact_key.is_some();
    let compile = move |engine: &nimbus_engine::Engine| {
        let (module, binary) = engine.compile(&code)?;
        engine.check_limits(&module, &limits)?;
        let abi = module.abi().clone();
        // The native code, for workers to load instead of compiling again
        // (a script module has none of its own).
        let artifact = seal
            .then(|| match engine.serialize(&module) {
                Ok(artifact) => artifact,
                Err(e) => {
                    tracing::warn!(error = %e, "could not serialise the compiled module");
                    None
                }
            })
            .flatten();
        // A binary upload is stored as it came: the request's own buffer,
        // held once however large the module is. Text was turned into a
        // binary by the engine.
        let binary = match binary {
            std::borrow::Cow::Borrowed(_) => code.clone(),
            std::borrow::Cow::Owned(binary) => bytes::Bytes::from(binary),
        };
        Ok::<_, CompileError>((module.digest().to_owned(), binary, abi, artifact))
    };
    let compiled = if script {
        // A script for the JavaScript interpreter: nothing to compile.
        compile(&state.engine)
    } else {
        // Compiling runs on the engine's low-priority compile pool, which
        // queues uploads beyond its concurrency: a big component compiling
        // does not hold up logins, invocations or health checks. A user's
        // uploads first wait for that user's turn, so one user's burst
        // cannot take every turn of the pool.
        // The compile holds the turn: a client that goes away does not free
        // it while the compile still runs.
        let turn = state.compile_turns.take(&caller).await;
        let compile = move |engine: &nimbus_engine::Engine| {
            let _turn = turn;
            compile(engine)
        };
        state.engine.compile_job(compile).await.and_then(|r| r)
    };
    let (digest, binary, abi, artifact) = compiled.map_err(|e| match e {
        CompileError::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
        CompileError::Panicked(_) => ApiError::Internal(e.to_string()),
        CompileError::OverBudget(_) => ApiError::CompileBudget(e),
        other => ApiError::InvalidModule(other),
    })?;

    let storage = state.storage()?;
    // From the quota check to the function written, one of the user's
    // uploads at a time (`quotas.rs`).
    let _quota_turn = state.quota_turns.take(&caller).await;
    let held = storage.functions_of(&caller).await?;
    quotas.check_upload(
        &held,
        &digest,
        binary.len() as u64,
        limits.max_log_bytes,
        storage.log_entries_per_function(),
    )?;
    if let Some(name) = &upload.name
        && storage.function_id_by_name(&caller, name).await?.is_some()
    {
        return Err(name_taken(name));
    }
    // The artifact first: workers start loading it as it is stored
    // (`nimbus_worker`'s `load_as_stored`), while the module's bytes and
    // the function are written, so a first call right after the upload
    // finds it loaded or well under way. One left behind by an upload that
    // fails after this is swept with unused modules (`module_gc.rs`).
    if let (Some(artifact), Some(key)) = (artifact, &state.config.artifact_key) {
        // Workers compile the module themselves if this is missing.
        let engine_key = state.engine.artifact_key();
        if let Err(e) = storage
            .put_artifact(&digest, &engine_key, artifact, key)
            .await
        {
            tracing::warn!(%digest, error = %nimbus_core::error::describe(&e), "could not store the artifact");
        }
    }
    storage.put_module(&digest, &binary, false).await?;
    let id = storage.next_function_id().await?;
    // What was uploaded decides the runtime: a binary may be a component.
    let (runtime, world) = match abi {
        Abi::HttpComponent => (Runtime::Component, Some(World::HttpProxy)),
        Abi::CliComponent => (Runtime::Component, Some(World::CliCommand)),
        // A JavaScript `fetch` handler answers HTTP as a wasi:http one does.
        _ if upload.js_http => (Runtime::Js, Some(World::HttpProxy)),
        _ if upload.runtime == Runtime::Component => (Runtime::Wasm, None),
        _ => (upload.runtime, None),
    };
    let meta = FunctionMeta {
        id,
        owner: caller,
        name: upload.name.as_ref().map(|n| n.to_string()),
        runtime,
        world,
        access: upload.access,
        digest,
        size: binary.len() as u64,
        limits,
        created: nimbus_store::now_rfc3339(),
        config_revision: 0,
        allowed_outbound_hosts: upload.allowed_outbound_hosts,
        key_value_stores: upload.key_value_stores,
    };
    // The name is claimed first: of two uploads racing for it, one wins.
    if let Some(name) = &upload.name {
        storage
            .claim_name(&meta.owner, name, id)
            .await
            .map_err(|e| match e {
                nimbus_store::StoreError::AlreadyExists => name_taken(name),
                other => other.into(),
            })?;
    }
    if let Err(e) = storage.create_function(&meta).await {
        if let Some(name) = &upload.name {
            storage.release_name(&meta.owner, name, id).await.ok();
        }
        return Err(e.into());
    }
    state.functions.insert(meta.clone());
    tracing::info!(id, owner = %meta.owner, runtime = meta.runtime.as_str(), digest = %meta.digest, "function created");
    let url = meta.name.as_ref().map(|name| url_path(&meta.owner, name));
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id,
            code: upload.echo,
            name: meta.name,
            runtime: meta.runtime,
            world: meta.world,
            access: meta.access,
            url,
            digest: meta.digest,
            size: meta.size,
            limits: meta.limits,
            allowed_outbound_hosts: meta.allowed_outbound_hosts,
            key_value_stores: meta.key_value_stores,
            created: meta.created,
        }),
    ))
}

/// `GET /functions`
#[utoipa::path(
    get,
    path = "/functions",
    tag = "functions",
    operation_id = "list_functions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's functions", body = FunctionList),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
) -> Result<Json<FunctionList>, ApiError> {
    let functions = state.storage()?.functions_of(&caller).await?;
    Ok(Json(FunctionList { functions }))
}

/// `GET /functions/{id}`
#[utoipa::path(
    get,
    path = "/functions/{id}",
    tag = "functions",
    operation_id = "get_function",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "A function id")),
    responses(
        (status = 200, description = "Its metadata", body = FunctionMeta),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such function of the caller's", body = ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<Json<FunctionMeta>, ApiError> {
    let meta = owned(&state, &caller, id).await?;
    Ok(Json(FunctionMeta::clone(&meta)))
}

/// The body of `PATCH /functions/{id}`: what to change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Change {
    /// Who may call it on its URL.
    access: Option<Access>,
    /// A new name; `null` takes the name (and the URL) away.
    #[serde(default, with = "serde_with_null")]
    #[schema(value_type = Option<String>)]
    name: Option<Option<String>>,
    /// The hosts it may call over HTTP, replacing the list (`[]`: none).
    allowed_outbound_hosts: Option<Vec<String>>,
    /// The key-value stores it may open, replacing the list (`[]`: none).
    key_value_stores: Option<Vec<String>>,
}

/// `Option<Option<T>>` that tells a missing field (`None`) from `null`
/// (`Some(None)`).
mod serde_with_null {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

/// `PATCH /functions/{id}`: change the function's access and/or name; the
/// metadata as it now is.
#[utoipa::path(
    patch,
    path = "/functions/{id}",
    tag = "functions",
    operation_id = "change_function",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "A function id")),
    request_body = Change,
    responses(
        (status = 200, description = "Its metadata, as changed", body = FunctionMeta),
        (status = 400, description = "Malformed, or an invalid name, host or store", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such function of the caller's", body = ErrorBody),
        (status = 409, description = "Name taken, or a concurrent change won", body = ErrorBody),
    ),
)]
pub async fn change(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
    Body(body): Body,
) -> Result<Json<FunctionMeta>, ApiError> {
    let change: Change = parse_json(&body)?;
    let storage = state.storage()?;
    let (current, revision) = storage
        .function_entry(&caller, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let mut meta = current.clone();
    if let Some(access) = change.access {
        meta.access = access;
    }
    if let Some(hosts) = change.allowed_outbound_hosts {
        meta.allowed_outbound_hosts = crate::upload::parse_allowed_hosts(hosts)?;
    }
    if let Some(stores) = change.key_value_stores {
        meta.key_value_stores = crate::upload::parse_stores(stores)?;
    }
    let renamed = match change.name {
        Some(name) if name != current.name => Some(crate::upload::parse_name(name)?),
        _ => None,
    };
    if let Some(Some(name)) = &renamed {
        storage
            .claim_name(&caller, name, id)
            .await
            .map_err(|e| match e {
                nimbus_store::StoreError::AlreadyExists => name_taken(name),
                other => other.into(),
            })?;
    }
    if let Some(name) = &renamed {
        meta.name = name.as_ref().map(|n| n.to_string());
    }
    // A compare-and-set on what was read: a concurrent change (another
    // PATCH, a configuration change raising `config_revision`) is kept,
    // and this one answers 409.
    if let Err(e) = storage.update_function(&meta, revision).await {
        if let Some(Some(name)) = &renamed {
            storage.release_name(&caller, name, id).await.ok();
        }
        return Err(match e {
            nimbus_store::StoreError::AlreadyExists => ApiError::Conflict(
                "the function was changed or deleted concurrently; try again".into(),
            ),
            e => e.into(),
        });
    }
    if renamed.is_some()
        && let Some(old) = &current.name
    {
        storage.release_name(&caller, old, id).await?;
    }
    state.functions.insert(meta.clone());
    tracing::info!(id, owner = %caller, access = meta.access.as_str(), name = ?meta.name, "function changed");
    Ok(Json(meta))
}

/// `DELETE /functions/{id}`
#[utoipa::path(
    delete,
    path = "/functions/{id}",
    tag = "functions",
    operation_id = "delete_function",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "A function id")),
    responses(
        (status = 200, description = "Deleted, with its logs and configuration", body = Message),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such function of the caller's", body = ErrorBody),
    ),
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<Json<Message>, ApiError> {
    let storage = state.storage()?;
    let Some(meta) = storage.delete_function(&caller, id).await? else {
        return Err(not_found(id));
    };
    if let Some(name) = &meta.name {
        storage.release_name(&caller, name, id).await?;
    }
    // Its logs go with it (ids are never reused); the module goes once no
    // function uses it (`module_gc.rs`).
    if let Err(e) = storage.purge_logs(id).await {
        tracing::warn!(id, error = %nimbus_core::error::describe(&e), "could not purge a deleted function's logs");
    }
    // So do its variables and sealed secrets. Whatever configuration a
    // concurrent change stores after this read, that change's own
    // `raise_revision` finds the function gone and deletes it.
    if let Err(e) = storage.delete_function_config(id).await {
        tracing::warn!(id, error = %nimbus_core::error::describe(&e), "could not delete a deleted function's configuration");
    }
    state.functions.remove(&caller, id);
    state.envs.forget(id);
    state.call_stats.forget(id);
    tracing::info!(id, owner = %caller, "function deleted");
    // The seed's exact message, kept for its curl session.
    Ok(Json(Message::new("Función eliminada")))
}
