//! Reading an upload: a JSON body (`{"code", "runtime"?, "name"?,
//! "access"?, "limits"?, "allowed_outbound_hosts"?, "key_value_stores"?}`,
//! the original design's form) or a raw `application/wasm` body (a core
//! module or a component) with the name, access, limits, allowed outbound
//! hosts and key-value stores (both comma separated) in the query string. JavaScript is turned
//! into a module here; validating and compiling the module happen in the
//! `create` handler, the same for every form.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use bytes::Bytes;
use nimbus_core::{Access, FunctionName, LimitsRequest, Runtime, Username};
use serde::Deserialize;

use crate::body::parse_json;
use crate::{ApiError, AppState};

/// JSON upload body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadRequest {
    /// WAT or JavaScript source, or a WebAssembly binary in base64.
    code: String,
    /// What `code` is; guessed from it when absent.
    runtime: Option<Runtime>,
    /// A name, unique among the caller's functions: it answers on
    /// `/fn/<owner>/<name>`.
    name: Option<String>,
    /// Who may call it on its URL (default `private`).
    access: Option<Access>,
    /// Limits per invocation; absent ones take the platform's defaults.
    limits: Option<LimitsRequest>,
    /// Hosts it may call over HTTP (`https://api.example.com`,
    /// `https://*.example.org:8443`).
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    /// The caller's key-value stores it may open.
    #[serde(default)]
    key_value_stores: Vec<String>,
    /// The seed's clients send the owner; accepted only when it is the caller.
    user: Option<String>,
}

/// An upload, read: the module (binary or WAT) and what goes with it.
pub(crate) struct Upload {
    pub runtime: Runtime,
    /// A wasm binary or WAT text, ready for the engine (a raw upload's
    /// body itself, not a copy).
    pub module: Bytes,
    pub name: Option<FunctionName>,
    pub access: Access,
    pub limits: LimitsRequest,
    /// Hosts it may call, checked.
    pub allowed_outbound_hosts: Vec<String>,
    /// Key-value stores it may open, checked.
    pub key_value_stores: Vec<String>,
    /// Source echoed back in the answer (text uploads only).
    pub echo: Option<String>,
    /// JavaScript that answers HTTP (`export default { fetch }`).
    pub js_http: bool,
}

impl Upload {
    /// Read the request: the body's form follows its content type.
    pub(crate) async fn read(
        state: &AppState,
        caller: &Username,
        headers: &HeaderMap,
        query: Option<&str>,
        body: Bytes,
    ) -> Result<Self, ApiError> {
        let upload = if is_wasm(headers) {
            let query = parse_upload_query(query)?;
            Self {
                runtime: Runtime::Wasm,
                module: body,
                name: parse_name(query.name)?,
                access: query.access,
                limits: query.limits,
                allowed_outbound_hosts: parse_allowed_hosts(query.hosts)?,
                key_value_stores: parse_stores(query.stores)?,
                echo: None,
                js_http: false,
            }
        } else {
            Self::from_json(state, caller, &body).await?
        };
        let max = state.config.max_module_bytes;
        if upload.module.len() > max {
            return Err(ApiError::PayloadTooLarge(format!(
                "module is {} bytes, the limit is {max}",
                upload.module.len()
            )));
        }
        Ok(upload)
    }

    async fn from_json(state: &AppState, caller: &Username, body: &[u8]) -> Result<Self, ApiError> {
        let upload: UploadRequest = parse_json(body)?;
        if let Some(user) = &upload.user
            && user != caller.as_str()
        {
            return Err(ApiError::Forbidden(format!(
                "cannot create a function for `{user}` while logged in as `{caller}`"
            )));
        }
        let runtime = upload
            .runtime
            .unwrap_or_else(|| Runtime::detect(&upload.code));
        let mut js_http = false;
        let (module, echo) = match runtime {
            Runtime::Wasm | Runtime::Component => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(upload.code.trim())
                    .map_err(|e| {
                        ApiError::BadRequest(format!(
                            "`code` must be base64 for runtime `{}`: {e}",
                            runtime.as_str()
                        ))
                    })?;
                (Bytes::from(bytes), None)
            }
            Runtime::Wat => (Bytes::from(upload.code.clone()), Some(upload.code)),
            Runtime::Js => {
                let js = state.js().await?;
                let _slot = state.cpu_slot(&format!("user {caller}")).await;
                let compiled = js
                    .compile_function(&upload.code)
                    .await
                    .map_err(|e| match e {
                        nimbus_js::JsError::Internal(_) => ApiError::Internal(e.to_string()),
                        other => ApiError::InvalidSource(other),
                    })?;
                js_http = compiled.http;
                (Bytes::from(compiled.module), Some(upload.code))
            }
        };
        Ok(Self {
            runtime,
            module,
            name: parse_name(upload.name)?,
            access: upload.access.unwrap_or_default(),
            limits: upload.limits.unwrap_or_default(),
            allowed_outbound_hosts: parse_allowed_hosts(upload.allowed_outbound_hosts)?,
            key_value_stores: parse_stores(upload.key_value_stores)?,
            echo,
            js_http,
        })
    }
}

fn is_wasm(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/wasm"))
        })
}

/// What a raw upload's query string says. (Its `IntoParams` documents the
/// query as clients write it: lists comma-separated, limits by name.)
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// (raw uploads) The function's name.
    name: Option<String>,
    /// (raw uploads) `private` (default) or `public`.
    #[param(value_type = Option<Access>)]
    access: Access,
    /// (raw uploads) Hosts it may call over HTTP, comma-separated.
    #[param(rename = "allowed_outbound_hosts", value_type = Option<String>)]
    hosts: Vec<String>,
    /// (raw uploads) Key-value stores it may open, comma-separated.
    #[param(rename = "key_value_stores", value_type = Option<String>)]
    stores: Vec<String>,
    /// (raw uploads) Limits: `fuel`, `memory_bytes`, `timeout_ms`,
    /// `max_input_bytes`, `max_output_bytes`, `max_log_bytes`.
    #[param(inline, value_type = Option<LimitsRequest>, style = Form, explode)]
    limits: LimitsRequest,
}

/// `?name=f&access=public&allowed_outbound_hosts=https://a.example,https://b.example&key_value_stores=default&fuel=1000000`:
/// the name, the access, the allowed hosts, the stores, and the rest as a
/// [`LimitsRequest`]. (serde's `flatten` cannot read numbers out of a
/// query string, so the others are taken out first and the limits read on
/// their own.)
fn parse_upload_query(query: Option<&str>) -> Result<UploadQuery, ApiError> {
    let invalid =
        |e: serde_urlencoded::de::Error| ApiError::BadRequest(format!("invalid query string: {e}"));
    let mut pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(invalid)?;
    let mut take = |key: &str| {
        pairs
            .iter()
            .position(|(k, _)| k == key)
            .map(|i| pairs.remove(i).1)
    };
    let name = take("name");
    let access = match take("access") {
        Some(access) => access.parse().map_err(ApiError::BadRequest)?,
        None => Access::default(),
    };
    let mut list = |key: &str| {
        take(key)
            .map(|list| list.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let hosts = list("allowed_outbound_hosts");
    let stores = list("key_value_stores");
    let rest = serde_urlencoded::to_string(&pairs).expect("pairs encode");
    let limits = serde_urlencoded::from_str(&rest).map_err(invalid)?;
    Ok(UploadQuery {
        name,
        access,
        hosts,
        stores,
        limits,
    })
}

/// `key_value_stores`, checked (`nimbus_core::kv`).
pub(crate) fn parse_stores(stores: Vec<String>) -> Result<Vec<String>, ApiError> {
    nimbus_core::kv::check_declared_stores(&stores).map_err(ApiError::BadRequest)?;
    Ok(stores)
}

/// `allowed_outbound_hosts`, checked (`nimbus_core::outbound`).
pub(crate) fn parse_allowed_hosts(hosts: Vec<String>) -> Result<Vec<String>, ApiError> {
    nimbus_core::outbound::check_allowed_hosts(&hosts)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(hosts)
}

/// Names are unique per owner and become URL path segments.
pub(crate) fn parse_name(name: Option<String>) -> Result<Option<FunctionName>, ApiError> {
    name.map(|n| FunctionName::parse(&n))
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}
