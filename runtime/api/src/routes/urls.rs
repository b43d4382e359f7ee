//! Function URLs: `ANY /fn/{owner}/{name}` and `/fn/{owner}/{name}/{*rest}`.
//!
//! A private function answers only its owner's bearer token (401 without
//! one, 404 to anyone else, as if it did not exist); a public one answers
//! anybody. A `wasi:http` component gets the request as sent (method, the
//! path below its URL, query, headers, body) minus the platform's own
//! credential and identity headers, and its response goes back as written.
//! Any other function gets the body as its input (JSON; empty means `null`)
//! and answers its result as `application/json`. Failures answer like
//! `execute`. Every answer from a function carries `Nimbus-Fuel-Consumed`
//! and `Nimbus-Duration-Us`, and every invocation's answer its
//! `Nimbus-Invocation-Id` and `Nimbus-Trace-Id`.
//!
//! WAGI (CGI-style WASI commands reading the request from the environment)
//! is deliberately not offered: `wasi:http` is the standard way for a guest
//! to see the request, and every toolchain that builds components speaks it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use nimbus_core::wire::{Call, HttpRequest, HttpResponse, Reply, RequestHead};
use nimbus_core::{Access, FunctionError, FunctionErrorKind, FunctionMeta, Username, World};

use crate::auth::{IDENTITY_HEADER, MaybeCaller};
use crate::invocation_context::InvocationContext;
use crate::{ApiError, AppState};

/// `ANY /fn/{owner}/{name}/{*rest}`: as [`call`], the path below the URL
/// passed on to a `wasi:http` component.
#[utoipa::path(
    method(get, post, put, patch, delete, head, options),
    path = "/fn/{owner}/{name}/{rest}",
    tag = "invocations",
    operation_id = "call_url_subpath",
    security((), ("bearer" = [])),
    params(
        ("owner" = String, Path, description = "The function's owner"),
        ("name" = String, Path, description = "The function's name"),
        ("rest" = String, Path, description = "The path below the function's URL (may contain `/`)"),
    ),
    request_body(content = crate::openapi::Binary, content_type = "*/*", description = "As for `/fn/{owner}/{name}`"),
    responses(crate::openapi::UrlAnswers),
)]
pub async fn call_subpath(
    state: State<Arc<AppState>>,
    caller: MaybeCaller,
    params: UrlParams,
    request: Request,
) -> Result<Response, ApiError> {
    call(state, caller, params, request).await
}

/// A function URL's path parameters (`owner`, `name`, and `rest` below it).
/// (An alias: utoipa's axum support reads the parameters of a `Path<..>` it
/// sees, and these are described in the annotations instead.)
type UrlParams = Path<HashMap<String, String>>;

/// Response header: fuel the call burned.
pub const FUEL_HEADER: &str = "nimbus-fuel-consumed";
/// Response header: time spent in the engine, microseconds.
pub const DURATION_HEADER: &str = "nimbus-duration-us";

/// Request headers never passed to a guest: hop-by-hop headers, and the
/// platform's identity header (the credential is handled separately).
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    IDENTITY_HEADER,
];

/// `ANY /fn/{owner}/{name}[/{*rest}]`
#[utoipa::path(
    method(get, post, put, patch, delete, head, options),
    path = "/fn/{owner}/{name}",
    tag = "invocations",
    operation_id = "call_url",
    security((), ("bearer" = [])),
    params(
        ("owner" = String, Path, description = "The function's owner"),
        ("name" = String, Path, description = "The function's name"),
    ),
    request_body(content = crate::openapi::Binary, content_type = "*/*", description = "A `wasi:http` component gets the request as sent; any other function the body as its JSON input"),
    responses(crate::openapi::UrlAnswers),
)]
pub async fn call(
    State(state): State<Arc<AppState>>,
    MaybeCaller(caller): MaybeCaller,
    Path(params): UrlParams,
    request: Request,
) -> Result<Response, ApiError> {
    let no_such = || ApiError::NotFound("no such function".into());
    let owner = params
        .get("owner")
        .and_then(|o| Username::parse(o).ok())
        .ok_or_else(no_such)?;
    let name = params.get("name").ok_or_else(no_such)?;
    let meta = state
        .functions
        .by_name(state.storage(), &owner, name)
        .await?
        .ok_or_else(no_such)?;
    if meta.access == Access::Private {
        match &caller {
            None => {
                return Err(ApiError::Unauthorized(
                    "this function is private: send its owner's `Authorization: Bearer <token>`"
                        .into(),
                ));
            }
            Some(caller) if *caller != owner => return Err(no_such()),
            Some(_) => {}
        }
    }

    let tenant = caller.clone().unwrap_or_else(|| owner.clone());
    state.tenant_rate.check(&tenant)?;
    let (parts, body) = request.into_parts();
    // From here on every answer, failures included, goes through `stamp`,
    // which ends the invocation's span with it.
    let context =
        InvocationContext::from_headers(&parts.headers, meta.id, state.config.export_spans);
    let answered = run(&state, &meta, &caller, &params, parts, body, &context).await;
    Ok(context.stamp(answered))
}

/// Read the request, run it on a worker, and answer what the function did.
async fn run(
    state: &AppState,
    meta: &FunctionMeta,
    caller: &Option<Username>,
    params: &HashMap<String, String>,
    parts: axum::http::request::Parts,
    body: Body,
    context: &InvocationContext,
) -> Result<Response, ApiError> {
    let cap = usize::try_from(meta.limits.max_input_bytes).unwrap_or(usize::MAX);
    let body = axum::body::to_bytes(body, cap).await.map_err(|_| {
        ApiError::PayloadTooLarge(format!(
            "the request body is larger than this function's max_input_bytes ({cap} bytes)"
        ))
    })?;
    let wait = Duration::from_millis(meta.limits.timeout_ms) + state.config.dispatch_grace;
    let env = state
        .envs
        .sealed(state.storage(), state.config.secrets_key.as_ref(), meta)
        .await?;
    let mut call = Call {
        function_id: meta.id,
        digest: meta.digest.clone(),
        limits: meta.limits,
        caller: caller.clone().unwrap_or_else(|| meta.owner.clone()),
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
    let payload = if meta.world == Some(World::HttpProxy) {
        let rest = params.get("rest").map(String::as_str).unwrap_or("");
        let path = match parts.uri.query() {
            Some(query) => format!("/{rest}?{query}"),
            None => format!("/{rest}"),
        };
        // The bearer token is the platform's credential when it verified
        // (or when the function is private, where only the platform's can
        // have let the call through): the guest never sees it.
        let strip_credential = caller.is_some() || meta.access == Access::Private;
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| {
                let credential = strip_credential && **name == header::AUTHORIZATION;
                !(credential || NOT_FORWARDED.contains(&name.as_str()))
            })
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let request = HttpRequest {
            head: RequestHead {
                method: parts.method.as_str().to_owned(),
                path,
                headers,
            },
            body,
        };
        let (payload, head_len) = request.encode();
        call.http = Some(head_len);
        payload
    } else {
        json_input(body)?
    };
    let reply = state.dispatch.call(call, payload, wait).await?;
    answer(meta, reply)
}

/// The body of a call to a function that is not an HTTP handler: its input.
fn json_input(body: Bytes) -> Result<Bytes, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"null"));
    }
    serde_json::from_slice::<&serde_json::value::RawValue>(&body).map_err(|e| {
        ApiError::Function(FunctionError::new(
            FunctionErrorKind::InvalidInput,
            format!("the request body is this function's input and must be JSON: {e}"),
        ))
    })?;
    Ok(body)
}

fn answer(meta: &FunctionMeta, reply: Reply) -> Result<Response, ApiError> {
    let success = match reply {
        Reply::Ok(success) => success,
        Reply::FunctionError(error) => {
            let fuel = error.fuel_consumed;
            let mut response = ApiError::Function(error).into_response();
            response
                .headers_mut()
                .insert(FUEL_HEADER, HeaderValue::from(fuel));
            return Ok(response);
        }
        Reply::PlatformError(message) => return Err(ApiError::worker_failed(message)),
        Reply::Overloaded(message) => return Err(ApiError::overloaded(message)),
    };
    let mut response = match success.http {
        Some(head_len) => {
            let written = HttpResponse::decode(success.result, head_len)
                .map_err(|e| ApiError::worker_failed(format!("unreadable reply: {e}")))?;
            http_response(meta, written)?
        }
        None => ([(header::CONTENT_TYPE, "application/json")], success.result).into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(FUEL_HEADER, HeaderValue::from(success.fuel_consumed));
    headers.insert(DURATION_HEADER, HeaderValue::from(success.duration_us));
    Ok(response)
}

/// The guest's response as it wrote it. Its headers are checked again here
/// (a worker is trusted, but a header that does not parse must not become
/// a panic).
fn http_response(meta: &FunctionMeta, written: HttpResponse) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(written.head.status).map_err(|_| {
        ApiError::Function(FunctionError::new(
            FunctionErrorKind::InvalidOutput,
            format!(
                "function {} answered an invalid HTTP status {}",
                meta.id, written.head.status
            ),
        ))
    })?;
    let mut response = Response::new(Body::from(written.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in written.head.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    Ok(response)
}
