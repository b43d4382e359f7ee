//! Serving one HTTP request with a `wasi:http/proxy` component: the request
//! goes in as the platform received it, the response comes out as the guest
//! wrote it, its body read while the guest writes it and capped at the
//! function's output limit.
//!
//! A WASI command (a JavaScript `fetch` handler) answers HTTP through a JSON
//! envelope instead: `{"nimbus_http_request": {"method", "path", "headers",
//! "body"}}` on stdin, `{"status", "headers", "body"}` on stdout, bodies as
//! text. The API sends URL calls this way only to functions it recorded as
//! HTTP handlers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use nimbus_core::wire::{HttpRequest, HttpResponse, ResponseHead};
use nimbus_core::{FunctionError, FunctionErrorKind, Limits};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use crate::component::{ComponentHost, ComponentPre};
use crate::error::output_too_large;
use crate::invoke::{
    MAX_RANDOM_BYTES, Outcome, clamp_usize, command_output, finish, input_too_large,
};
use crate::module::Code;
use crate::pipe::{CappedPipe, Overflow};
use crate::{Capabilities, CompiledModule, Engine};

/// The authority a guest sees when the request carried no `Host` header.
const DEFAULT_AUTHORITY: &str = "localhost";

/// Why the response could not be read.
enum ResponseFailure {
    /// The body went past the output cap.
    TooLarge,
    /// The guest set an error instead of a response, or broke off its body.
    Guest(String),
}

impl Engine {
    /// Serve `request` with `module`, a `wasi:http/proxy` component, under
    /// `limits` (the request body counts against `max_input_bytes`, the
    /// response body against `max_output_bytes`; the guest's stdout and
    /// stderr are its logs).
    pub async fn serve(
        &self,
        module: &CompiledModule,
        request: HttpRequest,
        limits: &Limits,
    ) -> Outcome<HttpResponse> {
        self.serve_with(module, request, limits, &Capabilities::default())
            .await
    }

    /// [`Engine::serve`], with `capabilities` (environment, outbound HTTP).
    pub async fn serve_with(
        &self,
        module: &CompiledModule,
        request: HttpRequest,
        limits: &Limits,
        capabilities: &Capabilities,
    ) -> Outcome<HttpResponse> {
        if request.body.len() as u64 > limits.max_input_bytes {
            return Outcome::refused(input_too_large(request.body.len(), limits));
        }
        let pre = match (&module.code, &module.abi) {
            (
                Code::Component {
                    pre: ComponentPre::Http(pre),
                    ..
                },
                _,
            ) => pre,
            (Code::Core { .. }, crate::Abi::Command) => {
                return self
                    .serve_envelope(module, request, limits, capabilities)
                    .await;
            }
            _ => {
                return Outcome::refused(FunctionError::new(
                    FunctionErrorKind::InvalidInput,
                    "the function is not an HTTP handler: call it with a JSON body",
                ));
            }
        };
        let request = match to_hyper(request) {
            Ok(request) => request,
            Err(message) => {
                return Outcome::refused(FunctionError::new(
                    FunctionErrorKind::InvalidInput,
                    message,
                ));
            }
        };
        let logs = CappedPipe::new(clamp_usize(limits.max_log_bytes), Overflow::Discard);
        let wasi = WasiCtxBuilder::new()
            .stdout(logs.clone())
            .stderr(logs.clone())
            .max_random_size(MAX_RANDOM_BYTES)
            .envs(&capabilities.env.0)
            .build();
        let host = ComponentHost::new(wasi, limits, capabilities);
        let cap = clamp_usize(limits.max_output_bytes);
        let run = self
            .metered(
                host,
                |h| &mut h.limiter,
                limits,
                async |store| {
                    let (sender, receiver) = tokio::sync::oneshot::channel();
                    let request = store
                        .data_mut()
                        .http()
                        .new_incoming_request(Scheme::Http, request)?;
                    let out = store.data_mut().http().new_response_outparam(sender)?;
                    let call = async {
                        let proxy = pre.instantiate_async(&mut *store).await?;
                        proxy
                            .wasi_http_incoming_handler()
                            .call_handle(&mut *store, request, out)
                            .await
                    };
                    // The body is read while the guest writes it (it may
                    // block on a full channel), so the call and the read run
                    // together. A whole response is returned once the guest
                    // has also returned: fuel is then the whole run's, the
                    // same every time (not wherever an epoch yield happened
                    // to leave the guest when its body ended), and work it
                    // does after responding counts against its limits. A
                    // response that failed (too large, broken off) ends the
                    // run at once.
                    let response = read_response(receiver, cap);
                    tokio::pin!(call, response);
                    let mut ran = None;
                    let mut written = None;
                    loop {
                        tokio::select! {
                            biased;
                            result = &mut call, if ran.is_none() => ran = Some(result),
                            result = &mut response, if written.is_none() => {
                                if result.is_err() {
                                    return Ok(result);
                                }
                                written = Some(result);
                            }
                        }
                        // The guest failed before its response was whole.
                        if written.is_none()
                            && let Some(Err(error)) = ran
                        {
                            return Err(error);
                        }
                        // Whole, and the guest is done (however it ended
                        // after writing it).
                        if ran.is_some()
                            && let Some(response) = written
                        {
                            return Ok(response);
                        }
                    }
                },
            )
            .await;
        finish(run, false, &logs, limits, |response| match response {
            Ok(response) => Ok(response),
            Err(ResponseFailure::TooLarge) => Err(output_too_large(limits)),
            Err(ResponseFailure::Guest(message)) => Err(FunctionError::new(
                FunctionErrorKind::InvalidOutput,
                message,
            )),
        })
    }
}

/// The JSON form of a response a command writes (see the module docs).
#[derive(serde::Deserialize)]
struct ResponseEnvelope {
    #[serde(default = "ok_status")]
    status: u16,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

fn ok_status() -> u16 {
    200
}

impl Engine {
    /// Serve `request` with a WASI command through the JSON envelope.
    async fn serve_envelope(
        &self,
        module: &CompiledModule,
        request: HttpRequest,
        limits: &Limits,
        capabilities: &Capabilities,
    ) -> Outcome<HttpResponse> {
        let envelope = serde_json::json!({
            "nimbus_http_request": {
                "method": request.head.method,
                "path": request.head.path,
                "headers": request.head.headers,
                "body": String::from_utf8_lossy(&request.body),
            }
        });
        // The body was checked against the input cap; the envelope around
        // it is the platform's.
        let input = Bytes::from(envelope.to_string());
        let outcome = self
            .run_core(module, Some(input), None, limits, capabilities)
            .await;
        let fuel_consumed = outcome.fuel_consumed;
        Outcome {
            result: outcome.result.and_then(|json| {
                let written: ResponseEnvelope =
                    serde_json::from_slice(&json).map_err(|e| FunctionError {
                        fuel_consumed,
                        ..FunctionError::new(
                            FunctionErrorKind::InvalidOutput,
                            format!("the handler's answer is not a response envelope: {e}"),
                        )
                    })?;
                Ok(HttpResponse {
                    head: ResponseHead {
                        status: written.status,
                        headers: written.headers,
                    },
                    body: Bytes::from(written.body),
                })
            }),
            fuel_consumed,
            duration: outcome.duration,
            logs: outcome.logs,
            logs_truncated: outcome.logs_truncated,
        }
    }
}

fn to_hyper(request: HttpRequest) -> Result<http::Request<Full<Bytes>>, String> {
    let mut builder = http::Request::builder()
        .method(request.head.method.as_str())
        .uri(request.head.path.as_str());
    let mut has_host = false;
    for (name, value) in &request.head.headers {
        has_host |= name.eq_ignore_ascii_case("host");
        builder = builder.header(name.as_str(), value.as_str());
    }
    if !has_host {
        builder = builder.header("host", DEFAULT_AUTHORITY);
    }
    builder
        .body(Full::new(request.body))
        .map_err(|e| format!("the request cannot be given to the handler: {e}"))
}

type GuestResponse =
    Result<http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>;

async fn read_response(
    receiver: tokio::sync::oneshot::Receiver<GuestResponse>,
    cap: usize,
) -> Result<HttpResponse, ResponseFailure> {
    let response = match receiver.await {
        Ok(Ok(response)) => response,
        Ok(Err(code)) => {
            return Err(ResponseFailure::Guest(format!(
                "the handler answered with an error instead of a response: {code:?}"
            )));
        }
        Err(_) => {
            return Err(ResponseFailure::Guest(
                "the handler returned without setting a response".into(),
            ));
        }
    };
    let (parts, body) = response.into_parts();
    let body = match Limited::new(body, cap).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(ResponseFailure::TooLarge);
        }
        Err(error) => {
            return Err(ResponseFailure::Guest(format!(
                "the handler broke off its response body: {error}"
            )));
        }
    };
    let headers = parts
        .headers
        .iter()
        // The body is whole: its length is the platform's to state.
        .filter(|(name, _)| **name != http::header::CONTENT_LENGTH)
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(HttpResponse {
        head: ResponseHead {
            status: parts.status.as_u16(),
            headers,
        },
        body,
    })
}

/// A handler called through `execute` must answer 2xx with a JSON body,
/// which becomes the result.
pub(crate) fn json_result(response: HttpResponse) -> Result<Bytes, FunctionError> {
    let status = response.head.status;
    if !(200..300).contains(&status) {
        let preview =
            String::from_utf8_lossy(&response.body[..response.body.len().min(200)]).into_owned();
        return Err(FunctionError::new(
            FunctionErrorKind::InvalidOutput,
            format!("the handler answered HTTP {status}: {preview}"),
        ));
    }
    command_output(response.body).map_err(|mut error| {
        error.message = error.message.replacen("stdout", "the response body", 1);
        error
    })
}
