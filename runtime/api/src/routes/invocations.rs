//! Invocation routes: `POST /functions/{id}/execute` (synchronous, or
//! asynchronous with `?async=true` / `Prefer: respond-async`) and
//! `GET /invocations/{id}`.
//!
//! This is the hot path. A warm synchronous call reads the function from
//! the in-memory cache, parses the body once to find `input`, hands a slice
//! of the body's own buffer to the dispatcher, and writes the worker's
//! result into the answer without parsing it again.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use nimbus_core::http::{ErrorBody, Executed};
use nimbus_core::wire::{Call, InvocationRecord, JobRequest, Reply};
use nimbus_core::{FunctionError, FunctionErrorKind, FunctionMeta, Username};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::body::{Body, FunctionIdPath, parse_json, parse_query};
use crate::invocation_context::InvocationContext;
use crate::routes::functions::owned;
use crate::{ApiError, AppState};

/// The execute body; `input` borrowed from the request's buffer.
#[derive(Deserialize, ToSchema)]
pub(crate) struct ExecuteRequest<'a> {
    /// The function's input, any JSON (absent: `null`).
    #[serde(default, borrow)]
    #[schema(value_type = Option<serde_json::Value>)]
    input: Option<&'a RawValue>,
}

/// Query string of `POST /functions/{id}/execute`. Other parameters are
/// ignored, as they always were (cache busters and the like).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExecuteQuery {
    /// Queue the call and answer 202 at once (as `Prefer: respond-async`).
    #[serde(default, rename = "async")]
    #[param(rename = "async")]
    run_async: Option<bool>,
}

/// `POST /functions/{id}/execute`. An empty body means `{"input": null}`.
/// Synchronous unless `?async=true` or `Prefer: respond-async` asks otherwise.
#[utoipa::path(
    post,
    path = "/functions/{id}/execute",
    tag = "invocations",
    operation_id = "execute",
    security(("bearer" = [])),
    params(
        ("id" = u64, Path, description = "A function id"),
        ExecuteQuery,
        ("Prefer" = Option<String>, Header, description = "`respond-async`: as `?async=true`"),
        ("traceparent" = Option<String>, Header, description = "A W3C trace context the call joins"),
    ),
    request_body(content = ExecuteRequest, description = "An empty body means `{\"input\": null}`"),
    responses(
        (status = 200, description = "The function answered", body = Executed,
            headers(
                ("Nimbus-Invocation-Id" = String, description = "This invocation"),
                ("Nimbus-Trace-Id" = String, description = "The trace it belongs to"),
            )),
        (status = 202, description = "Queued (asynchronous)", body = InvocationRecord,
            headers(("Location" = String, description = "`/invocations/{invocation}`"))),
        (status = 400, description = "Malformed body, or input the function cannot take", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such function of the caller's", body = ErrorBody),
        (status = 422, description = "The function failed (`source: function`, with `fuel_consumed`)", body = ErrorBody),
        (status = 429, description = "Too many calls or queued jobs", body = ErrorBody),
        (status = 502, description = "A worker could not run it", body = ErrorBody),
        (status = 503, description = "No worker, or overloaded", body = ErrorBody),
        (status = 504, description = "No answer within the deadline", body = ErrorBody),
    ),
)]
pub async fn execute(
    State(state): State<Arc<AppState>>,
    Caller(caller): Caller,
    FunctionIdPath(id): FunctionIdPath,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let run_async = match query.as_deref() {
        None => prefers_async(&headers),
        query => parse_query::<ExecuteQuery>(query)?
            .run_async
            .unwrap_or_else(|| prefers_async(&headers)),
    };
    let input = input_of(&body)?;
    state.tenant_rate.check(&caller)?;
    let meta = owned(&state, &caller, id).await?;
    if input.len() as u64 > meta.limits.max_input_bytes {
        return Err(ApiError::Function(FunctionError::new(
            FunctionErrorKind::InvalidInput,
            format!(
                "input is {} bytes, this function accepts at most {}",
                input.len(),
                meta.limits.max_input_bytes
            ),
        )));
    }
    let env = state
        .envs
        .sealed(state.storage(), state.config.secrets_key.as_ref(), &meta)
        .await?;
    // From here on every answer, failures included, goes through `stamp`,
    // which ends the invocation's span with it.
    let mut context = InvocationContext::from_headers(&headers, id, state.config.export_spans);
    let answer = if run_async {
        enqueue(&state, &meta, caller, &input, env, &mut context).await
    } else {
        call(&state, &meta, caller, input, env, &context).await
    };
    Ok(context.stamp(answer))
}

/// Queue the invocation: 202 with its record; the context takes the
/// record's id.
async fn enqueue(
    state: &AppState,
    meta: &FunctionMeta,
    caller: Username,
    input: &Bytes,
    env: Option<Bytes>,
    context: &mut InvocationContext,
) -> Result<Response, ApiError> {
    let input = std::str::from_utf8(input)
        .ok()
        .and_then(|text| RawValue::from_string(text.to_owned()).ok())
        .ok_or_else(|| ApiError::BadRequest("input is not JSON".into()))?;
    let record = state
        .dispatch
        .enqueue(JobRequest {
            function_id: meta.id,
            digest: meta.digest.clone(),
            limits: meta.limits,
            caller,
            input,
            wait_ms: 0,
            env: env.map(|env| BASE64.encode(env)),
            outbound: meta.allowed_outbound_hosts.clone(),
            kv: crate::kv_service::grant(
                state.config.secrets_key.as_ref(),
                meta,
                crate::kv_service::JOB_GRANT_TTL,
            )?,
            trace: Some(context.trace.to_string()),
        })
        .await?;
    context.id = record.id.clone();
    let location = format!("/invocations/{}", record.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(record),
    )
        .into_response())
}

/// Run the invocation on a worker and answer what it answered.
async fn call(
    state: &AppState,
    meta: &FunctionMeta,
    caller: Username,
    input: Bytes,
    env: Option<Bytes>,
    context: &InvocationContext,
) -> Result<Response, ApiError> {
    let wait = Duration::from_millis(meta.limits.timeout_ms) + state.config.dispatch_grace;
    let call = Call {
        function_id: meta.id,
        digest: meta.digest.clone(),
        limits: meta.limits,
        caller,
        wait_ms: wait.as_millis() as u64,
        http: None,
        env,
        outbound: meta.allowed_outbound_hosts.clone(),
        kv: crate::kv_service::grant(
            state.config.secrets_key.as_ref(),
            meta,
            wait + crate::kv_service::CALL_GRANT_MARGIN,
        )?,
        invocation: Some(context.id.clone()),
        trace: Some(context.trace),
    };
    match state.dispatch.call(call, input, wait).await? {
        Reply::Ok(success) => Ok((
            [(header::CONTENT_TYPE, "application/json")],
            Executed::body(&success.result, success.fuel_consumed, success.duration_us),
        )
            .into_response()),
        Reply::FunctionError(error) => Err(ApiError::Function(error)),
        Reply::PlatformError(message) => Err(ApiError::worker_failed(message)),
        Reply::Overloaded(message) => Err(ApiError::overloaded(message)),
    }
}

/// The input JSON: a slice of the body's own buffer (`null` when the body
/// is empty or has no `input`).
fn input_of(body: &Bytes) -> Result<Bytes, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"null"));
    }
    let request: ExecuteRequest = parse_json(body)?;
    Ok(match request.input {
        Some(input) => body.slice_ref(input.get().as_bytes()),
        None => Bytes::from_static(b"null"),
    })
}

/// Whether a `Prefer` header asks for `respond-async`. A preference may
/// carry parameters: `respond-async; foo=bar`.
fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.split(';').next())
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

/// `GET /invocations/{id}`: the caller's asynchronous invocation.
#[utoipa::path(
    get,
    path = "/invocations/{id}",
    tag = "invocations",
    operation_id = "get_invocation",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "An invocation id (32 hex digits)")),
    responses(
        (status = 200, description = "Where it stands", body = InvocationRecord),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such invocation of the caller's", body = ErrorBody),
    ),
)]
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
        .storage()?
        .invocation(&caller, &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(record))
}
