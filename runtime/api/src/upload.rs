//! Reading an upload: a JSON body (`{"code", "runtime"?, "name"?,
//! "limits"?}`, the original design's form) or a raw `application/wasm`
//! body with the name and limits in the query string. JavaScript is turned
//! into a module here; validating and compiling the module happen in the
//! `create` handler, the same for every form.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use bytes::Bytes;
use nimbus_core::{LimitsRequest, Runtime, Username};
use serde::Deserialize;

use crate::body::parse_json;
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

/// An upload, read: the module (binary or WAT) and what goes with it.
pub(crate) struct Upload {
    pub runtime: Runtime,
    /// A wasm binary or WAT text, ready for the engine (a raw upload's
    /// body itself, not a copy).
    pub module: Bytes,
    pub name: Option<String>,
    pub limits: LimitsRequest,
    /// Source echoed back in the answer (text uploads only).
    pub echo: Option<String>,
}

const MAX_NAME_CHARS: usize = 64;

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
            let (name, limits) = parse_upload_query(query)?;
            Self {
                runtime: Runtime::Wasm,
                module: body,
                name,
                limits,
                echo: None,
            }
        } else {
            Self::from_json(state, caller, &body).await?
        };
        check_name(&upload.name)?;
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
        let (module, echo) = match runtime {
            Runtime::Wasm => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(upload.code.trim())
                    .map_err(|e| {
                        ApiError::BadRequest(format!(
                            "`code` must be base64 for runtime `wasm`: {e}"
                        ))
                    })?;
                (Bytes::from(bytes), None)
            }
            Runtime::Wat => (Bytes::from(upload.code.clone()), Some(upload.code)),
            Runtime::Js => {
                let js = state.js().await?;
                let _slot = state.cpu_slot().await;
                let wasm = js.compile(&upload.code).await.map_err(|e| match e {
                    nimbus_js::JsError::Internal(_) => ApiError::Internal(e.to_string()),
                    other => ApiError::InvalidSource(other),
                })?;
                (Bytes::from(wasm), Some(upload.code))
            }
        };
        Ok(Self {
            runtime,
            module,
            name: upload.name,
            limits: upload.limits.unwrap_or_default(),
            echo,
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

/// `?name=f&fuel=1000000`: the name, and the rest as a [`LimitsRequest`].
/// (serde's `flatten` cannot read numbers out of a query string, so the
/// name is taken out first and the limits read on their own.)
fn parse_upload_query(query: Option<&str>) -> Result<(Option<String>, LimitsRequest), ApiError> {
    let invalid =
        |e: serde_urlencoded::de::Error| ApiError::BadRequest(format!("invalid query string: {e}"));
    let mut pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(invalid)?;
    let name = pairs
        .iter()
        .position(|(key, _)| key == "name")
        .map(|i| pairs.remove(i).1);
    let rest = serde_urlencoded::to_string(&pairs).expect("pairs encode");
    let limits = serde_urlencoded::from_str(&rest).map_err(invalid)?;
    Ok((name, limits))
}

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
