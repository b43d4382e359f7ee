//! `nimbus_http`: outbound HTTP for WASI preview 1 modules (the Rust SDK's
//! `nimbus_sdk::http`, JavaScript's `fetch`), which have no `wasi:http`.
//! Two functions, both on the module's exported `memory`:
//!
//! - `send(request_ptr: i32, request_len: i32) -> i32`: the request is
//!   JSON, `{"method"?, "url", "headers"?: [[name, value]...], "body"?}`
//!   (the body as text). The host sends it under the invocation's outbound
//!   policy (`outbound.rs`: the same checks and limits as a component's
//!   `wasi:http` requests) and answers the length of the outcome, which it
//!   keeps: JSON, `{"status", "headers", "body"}` or `{"error"}` (a
//!   `wasi:http` error code name, like `HttpRequestDenied`, or what was
//!   wrong with the request).
//! - `read(ptr: i32, len: i32) -> i32`: copies the kept outcome (up to
//!   `len` bytes) to `ptr`, forgets it, and answers the bytes copied.
//!
//! A request larger than the function's `max_output_bytes` (and 64 KiB for
//! the rest of the JSON) traps before the host reads it; every `send`,
//! allowed or not, counts against the invocation's request cap.
//!
//! Bodies are text (UTF-8, lossy on the way back). The wait for the network
//! counts against the deadline like any host call.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use wasmtime::{Caller, Linker};

use crate::guest_memory;
use crate::invoke::Host;
use crate::outbound::OutboundCalls;

/// The import module's name.
pub const HTTP_MODULE: &str = "nimbus_http";

/// What a module's outbound HTTP keeps between `send` and `read`.
pub(crate) struct HostHttp {
    pub(crate) calls: OutboundCalls,
    pending: Vec<u8>,
}

impl HostHttp {
    pub(crate) fn new(calls: OutboundCalls) -> Self {
        Self {
            calls,
            pending: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

fn get() -> String {
    "GET".to_owned()
}

#[derive(Serialize)]
#[serde(untagged)]
enum Outcome {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    Error {
        error: String,
    },
}

/// Whether `name` is a function of [`HTTP_MODULE`] with the type it must
/// have (checked at upload).
pub(crate) fn is_import(name: &str, ty: &wasmtime::FuncType) -> bool {
    matches!(name, "send" | "read") && guest_memory::is_pair_to_i32(ty)
}

/// Add `nimbus_http.send` and `nimbus_http.read` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<(), wasmtime::Error> {
    linker.func_wrap_async(
        HTTP_MODULE,
        "send",
        |mut caller: Caller<'_, Host>, (ptr, len): (i32, i32)| {
            Box::new(async move {
                let cap = caller.data().http.calls.max_request_json();
                if len as u32 as u64 > cap {
                    return Err(wasmtime::Error::msg(format!(
                        "nimbus_http.send: a request of {len} bytes; at most {cap} \
                         (the function's max_output_bytes, and 64 KiB for the rest)"
                    )));
                }
                let request = guest_memory::read(&mut caller, "nimbus_http.send", ptr, len)?;
                let outcome = send(&mut caller, &request).await;
                let json = serde_json::to_vec(&outcome).expect("outcomes serialise");
                let len = i32::try_from(json.len()).unwrap_or(i32::MAX);
                caller.data_mut().http.pending = json;
                Ok(len)
            })
        },
    )?;
    linker.func_wrap(
        HTTP_MODULE,
        "read",
        |mut caller: Caller<'_, Host>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let pending = std::mem::take(&mut caller.data_mut().http.pending);
            guest_memory::write(&mut caller, "nimbus_http.read", &pending, ptr, len)
        },
    )?;
    Ok(())
}

async fn send(caller: &mut Caller<'_, Host>, request: &[u8]) -> Outcome {
    let error = |error: String| Outcome::Error { error };
    if let Err(e) = caller.data_mut().http.calls.count_attempt() {
        return error(code_name(&e));
    }
    let request: Request = match serde_json::from_slice(request) {
        Ok(request) => request,
        Err(e) => return error(format!("the request is not valid JSON: {e}")),
    };
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(request.url.as_str());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let body = Full::new(Bytes::from(request.body))
        .map_err(|never| match never {})
        .boxed_unsync();
    let request = match builder.body(body) {
        Ok(request) => request,
        Err(e) => return error(format!("the request is invalid: {e}")),
    };
    let sent = Box::into_pin(caller.data_mut().http.calls.send_counted(request)).await;
    let response = match sent {
        Ok((response, _)) => response,
        Err(e) => return error(code_name(&e)),
    };
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return error(code_name(&e)),
    };
    Outcome::Response {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The `wasi:http` error code's name (`HttpRequestDenied`,
/// `ConnectionRefused`...), as a component would see it.
fn code_name(error: &wasmtime_wasi_http::Error) -> String {
    use wasmtime_wasi_http::Error;
    match error {
        Error::Connect(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "ConnectionRefused",
            std::io::ErrorKind::TimedOut => "ConnectionTimeout",
            _ => "DestinationUnavailable",
        }
        .to_owned(),
        Error::Tls(_) => "TlsProtocolError".to_owned(),
        Error::Hyper(e) if e.is_timeout() => "HttpResponseTimeout".to_owned(),
        Error::Hyper(_) => "HttpProtocolError".to_owned(),
        other => {
            let debug = format!("{other:?}");
            debug
                .split(['(', ' ', '{'])
                .next()
                .unwrap_or(&debug)
                .to_owned()
        }
    }
}
