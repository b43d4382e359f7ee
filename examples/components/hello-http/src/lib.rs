//! A `wasi:http` handler in Rust: a webhook-style function on its own URL.
//!
//! - `POST` with `{"input": <number>}` answers `{"result": <number + 1>}`;
//! - anything else answers `{"hello": "<path>", "method": "<method>"}`.
//!
//! Build and deploy it (from this folder's parent, examples/components):
//!
//! ```sh
//! rustup target add wasm32-wasip2
//! cargo build --release
//! nimbus deploy target/wasm32-wasip2/release/hello_http.wasm --name hello --public
//! curl -X POST http://127.0.0.1:8080/fn/<you>/hello -d '{"input": 41}'
//! ```
//!
//! The same file runs unchanged under `wasmtime serve -Scli`.

use std::io::{Read as _, Write as _};

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let method = request.method();
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let mut body = Vec::new();
        if let Ok(incoming) = request.consume()
            && let Ok(mut stream) = incoming.stream()
        {
            let _ = stream.read_to_end(&mut body);
        }
        let (status, answer) = match method {
            Method::Post => match input_number(&body) {
                Some(n) => (200, format!("{{\"result\":{}}}", n + 1)),
                None => (400, "{\"error\":\"send {\\\"input\\\": <number>}\"}".to_owned()),
            },
            other => (
                200,
                format!(
                    "{{\"hello\":{:?},\"method\":{:?}}}",
                    path,
                    method_name(&other)
                ),
            ),
        };
        respond(response_out, status, answer.as_bytes());
    }
}

fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
}

/// The number in `{"input": <number>}` (a small parser: no dependencies).
fn input_number(body: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = &text[text.find("\"input\"")? + "\"input\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"application/json");
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("a new response has a body");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = outgoing.write().expect("a new body has a stream");
        for chunk in body.chunks(4096) {
            if stream.write_all(chunk).is_err() {
                return;
            }
        }
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
