//! Function handlers: upload, list, read, execute, delete.
//!
//! Upload validates and compiles the module with the engine before anything
//! is stored, then writes the module (content addressed, so a re-upload of the
//! same bytes stores nothing new), then the metadata. A failure at any step
//! leaves no metadata behind, and a module without metadata is harmless.
//!
//! Execute looks the function up for the caller only (another user's id is a
//! plain 404), then sends a request on `functions.execute.<id>` to the
//! `workers` queue group and maps the reply. With `?async=true` (or
//! `Prefer: respond-async`) it instead records the invocation in the
//! `invocations` bucket, queues a job on `functions.jobs.<owner>.<id>` and answers
//! 202 with the record; `GET /invocations/{id}` follows it.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use nimbus_core::wire::{
    InvocationRecord, InvocationReply, InvocationRequest, InvocationStatus, Job, RecordedError,
};
use nimbus_core::{FunctionId, FunctionMeta, Limits, LimitsRequest, Runtime, subjects};
use nimbus_engine::CompileError;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::body::{Body, FunctionIdPath, parse_json, parse_query};
use crate::{ApiError, AppState};

/// JSON upload body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadRequest {
    code: String,
    runtime: Option<Runtime>,
    name: Option<String>,
    limits: Option<LimitsRequest>,
    /// The seed's clients send the owner; accepted only when it is the caller.
    user: Option<String>,
}

/// Query string of a raw `application/wasm` upload. The limit fields are
/// spelled out because serde's `flatten` cannot parse numbers from a query string.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: Option<String>,
    fuel: Option<u64>,
    memory_bytes: Option<u64>,
    timeout_ms: Option<u64>,
    max_input_bytes: Option<u64>,
    max_output_bytes: Option<u64>,
    max_log_bytes: Option<u64>,
}

impl UploadQuery {
    fn limits(&self) -> LimitsRequest {
        LimitsRequest {
            fuel: self.fuel,
            memory_bytes: self.memory_bytes,
            timeout_ms: self.timeout_ms,
            max_input_bytes: self.max_input_bytes,
            max_output_bytes: self.max_output_bytes,
            max_log_bytes: self.max_log_bytes,
        }
    }
}

/// What an upload answers: the id first and, for text uploads, the code
/// echoed back as the seed did; binaries are not echoed.
#[derive(Serialize)]
pub struct Created {
    id: FunctionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    runtime: Runtime,
    digest: String,
    size: u64,
    limits: Limits,
    created: String,
}

const MAX_NAME_CHARS: usize = 64;

fn check_name(name: &Option<String>) -> Result<(), ApiError> {
    match name {
        Some(n)
            if n.is_empty()
                || n.chars().count() > MAX_NAME_CHARS
                || n.chars().any(char::is_control) =>
        {
            Err(ApiError::BadRequest(format!(
                "name must be 1 to {MAX_NAME_CHARS} printable characters"
            )))
        }
        _ => Ok(()),
    }
}

fn not_found(id: FunctionId) -> ApiError {
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
    let is_wasm_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/wasm"))
        });

    let (runtime, code, name, requested, echo) = if is_wasm_body {
        let query: UploadQuery = parse_query(query.as_deref())?;
        (
            Runtime::Wasm,
            body.to_vec(),
            query.name.clone(),
            query.limits(),
            None,
        )
    } else {
        let upload: UploadRequest = parse_json(&body)?;
        if let Some(user) = &upload.user
            && user != &caller
        {
            return Err(ApiError::Forbidden(format!(
                "cannot create a function for `{user}` while logged in as `{caller}`"
            )));
        }
        let runtime = upload
            .runtime
            .unwrap_or_else(|| Runtime::detect(&upload.code));
        let (code, echo) = match runtime {
            Runtime::Wasm => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(upload.code.trim())
                    .map_err(|e| {
                        ApiError::BadRequest(format!(
                            "`code` must be base64 for runtime `wasm`: {e}"
                        ))
                    })?;
                (bytes, None)
            }
            Runtime::Wat => (upload.code.clone().into_bytes(), Some(upload.code)),
            Runtime::Js => {
                let js = state.js().await?;
                let _slot = state.cpu_slot().await;
                let wasm = js.compile(&upload.code).await.map_err(|e| match e {
                    nimbus_js::JsError::Internal(_) => ApiError::Internal(e.to_string()),
                    other => ApiError::InvalidSource(other.to_string()),
                })?;
                (wasm, Some(upload.code))
            }
        };
        (
            runtime,
            code,
            upload.name,
            upload.limits.unwrap_or_default(),
            echo,
        )
    };
    check_name(&name)?;
    let limits = state
        .config
        .policy
        .resolve(&requested)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;

    let engine = state.engine.clone();
    let slot = state.cpu_slot().await;
    let (digest, binary) = tokio::task::spawn_blocking(move || {
        let (module, binary) = engine.compile(&code)?;
        engine.check_limits(&module, &limits)?;
        Ok((module.digest().to_owned(), binary.into_owned()))
    })
    .await?
    .map_err(|e| match e {
        CompileError::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
        other => ApiError::InvalidModule(other.to_string()),
    })?;
    drop(slot);

    state.store.put_module(&digest, &binary).await?;
    let id = state.store.next_function_id().await?;
    let meta = FunctionMeta {
        id,
        owner: caller,
        name,
        runtime,
        digest,
        size: binary.len() as u64,
        limits,
        created: nimbus_store::now_rfc3339(),
    };
    state.store.create_function(&meta).await?;
    tracing::info!(id, owner = %meta.owner, runtime = meta.runtime.as_str(), digest = %meta.digest, "function created");
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id,
            code: echo,
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
) -> Result<Json<Value>, ApiError> {
    let functions = state.store.functions_of(&caller).await?;
    Ok(Json(json!({ "functions": functions })))
}

/// `GET /functions/{id}`
pub async fn get(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<Json<FunctionMeta>, ApiError> {
    let meta = state
        .store
        .function(&caller, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(meta))
}

/// `DELETE /functions/{id}`
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<Json<Value>, ApiError> {
    if !state.store.delete_function(&caller, id).await? {
        return Err(not_found(id));
    }
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
    if state.store.function(&caller, id).await?.is_none() {
        return Err(not_found(id));
    }
    let logs = state.store.logs(id, limit, LOG_MAX_BYTES).await?;
    Ok(Json(json!({ "logs": logs })))
}

#[derive(Deserialize)]
struct ExecuteRequest {
    #[serde(default)]
    input: Option<Box<RawValue>>,
}

/// What a successful execution answers.
#[derive(Serialize)]
pub struct Executed {
    result: Box<RawValue>,
    fuel_consumed: u64,
    duration_us: u64,
}

/// Query string of `POST /functions/{id}/execute`. Other parameters are
/// ignored, as they always were (cache busters and the like).
#[derive(Deserialize)]
struct ExecuteQuery {
    #[serde(default, rename = "async")]
    run_async: Option<bool>,
}

/// `POST /functions/{id}/execute`. An empty body means `{"input": null}`.
/// Synchronous unless `?async=true` or `Prefer: respond-async` asks otherwise.
pub async fn execute(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let query: ExecuteQuery = parse_query(query.as_deref())?;
    let prefer_async = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        // A preference may carry parameters: `respond-async; foo=bar`.
        .filter_map(|p| p.split(';').next())
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"));
    let run_async = query.run_async.unwrap_or(prefer_async);
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_json::<ExecuteRequest>(&body)?.input
    };
    let input =
        input.unwrap_or_else(|| RawValue::from_string("null".into()).expect("null is JSON"));
    let meta = state
        .store
        .function(&caller, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if input.get().len() as u64 > meta.limits.max_input_bytes {
        return Err(ApiError::Function(nimbus_core::FunctionError::new(
            nimbus_core::FunctionErrorKind::InvalidInput,
            format!(
                "input is {} bytes, this function accepts at most {}",
                input.get().len(),
                meta.limits.max_input_bytes
            ),
        )));
    }

    // Asynchronously, nobody waits on a reply: `wait_ms` 0.
    let wait = Duration::from_millis(meta.limits.timeout_ms) + state.config.dispatch_grace;
    let request = InvocationRequest {
        function_id: id,
        digest: meta.digest,
        limits: meta.limits,
        caller,
        input,
        wait_ms: if run_async {
            0
        } else {
            wait.as_millis() as u64
        },
    };
    if run_async {
        return enqueue(&state, request).await;
    }
    let payload = serde_json::to_vec(&request).expect("request serialises");
    let reply = state
        .nats
        .send_request(
            subjects::execute(id),
            async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(wait)),
        )
        .await
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => ApiError::NoWorker,
            async_nats::RequestErrorKind::TimedOut => {
                ApiError::WorkerTimeout(wait.as_millis() as u64)
            }
            async_nats::RequestErrorKind::MaxPayloadExceeded => ApiError::PayloadTooLarge(
                "the input is larger than the NATS server's max_payload".into(),
            ),
            _ => ApiError::Unavailable(format!("NATS request failed: {e}")),
        })?;
    let reply: InvocationReply = serde_json::from_slice(&reply.payload)
        .map_err(|e| ApiError::WorkerFailed(format!("unreadable reply: {e}")))?;
    match reply {
        InvocationReply::Ok(output) => Ok(Json(Executed {
            result: output.result,
            fuel_consumed: output.fuel_consumed,
            duration_us: output.duration_us,
        })
        .into_response()),
        InvocationReply::FunctionError(error) => Err(ApiError::Function(error)),
        InvocationReply::PlatformError(message) => Err(ApiError::WorkerFailed(message)),
        InvocationReply::Overloaded(message) => Err(ApiError::Overloaded(message)),
    }
}

/// Record an asynchronous invocation as queued, then queue its job. The
/// record is written first, so an accepted id can always be looked up.
async fn enqueue(state: &AppState, request: InvocationRequest) -> Result<Response, ApiError> {
    let quota = state.config.max_jobs_per_user;
    let held = state.store.jobs_of(&request.caller).await?;
    if held >= quota {
        return Err(ApiError::TooManyJobs(format!(
            "you have {held} asynchronous invocations queued or running, and one user may \
             have {quota}; try again once some have finished"
        )));
    }
    let now = nimbus_store::now_rfc3339();
    let record = InvocationRecord {
        id: format!("{:032x}", rand::random::<u128>()),
        function_id: request.function_id,
        owner: request.caller.clone(),
        status: InvocationStatus::Queued,
        result: None,
        error: None,
        fuel_consumed: None,
        duration_us: None,
        attempts: 0,
        created: now.clone(),
        updated: now,
    };
    let revision = state.store.create_invocation(&record).await?;
    let job = Job {
        record: record.clone(),
        request,
    };
    if let Err(e) = state.store.enqueue_job(&job).await {
        // Not queued (JetStream down, or the job queue full): the record
        // must not claim otherwise. Unless a worker has written it since:
        // then the job was stored after all (only its ack was lost) and the
        // worker's record is the truth.
        let record = InvocationRecord {
            status: InvocationStatus::Failed,
            error: Some(RecordedError::platform(
                "unavailable",
                format!("the invocation could not be queued: {e}"),
            )),
            updated: nimbus_store::now_rfc3339(),
            ..job.record
        };
        state.store.update_invocation(&record, revision).await.ok();
        return Err(e.into());
    }
    let location = format!("/invocations/{}", record.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(record),
    )
        .into_response())
}

/// `GET /invocations/{id}`: the caller's asynchronous invocation.
pub async fn invocation(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<InvocationRecord>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no invocation with id {id}"));
    if !nimbus_core::wire::is_invocation_id(&id) {
        return Err(not_found());
    }
    let record = state
        .store
        .invocation(&caller, &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(record))
}
