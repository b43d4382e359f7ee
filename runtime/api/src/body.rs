//! Request bodies, with our error format instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// The raw body, size-capped by the route's `DefaultBodyLimit`.
pub struct Body(pub Bytes);

/// The body cap of a route, as its `DefaultBodyLimit` says, so that the 413
/// answer can say what it is; for uploads, also the module cap it follows
/// from.
#[derive(Clone, Copy)]
pub struct BodyCap {
    /// Bytes of body the route accepts.
    pub bytes: usize,
    /// For uploads: bytes of module.
    pub module: Option<usize>,
}

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let cap = request.extensions().get::<BodyCap>().copied();
        Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(match cap {
                        Some(BodyCap {
                            bytes,
                            module: Some(module),
                        }) => format!(
                            "request body is larger than uploads may be ({bytes} bytes): a module \
                             may be at most {module} bytes, or its base64 in JSON"
                        ),
                        Some(BodyCap { bytes, .. }) => {
                            format!(
                                "request body is larger than this route accepts ({bytes} bytes)"
                            )
                        }
                        None => "request body is larger than the server accepts".into(),
                    })
                } else {
                    ApiError::BadRequest(rejection.body_text())
                }
            })
    }
}

/// Parse a query string (absent = empty), naming what is wrong with it.
pub fn parse_query<T: DeserializeOwned>(query: Option<&str>) -> Result<T, ApiError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))
}

/// Parse a JSON object body, naming what is wrong with it. Only objects: serde
/// would otherwise also accept a struct written as an array.
pub fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::BadRequest(
                "request body is empty; a JSON object is expected".into(),
            ));
        }
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::BadRequest(
                "request body must be a JSON object".into(),
            ));
        }
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// A function id from the path. Anything that is not a number names no
/// function: 404, in our error format (axum's own rejection is plain text).
pub struct FunctionIdPath(pub nimbus_core::FunctionId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for FunctionIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound("no such function".into()))?;
        raw.parse()
            .map(FunctionIdPath)
            .map_err(|_| ApiError::NotFound(format!("no function with id `{raw}`")))
    }
}
