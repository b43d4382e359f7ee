//! A `wasi:http/proxy` component for the tests. By default it answers with
//! what it received, as JSON: `{"method", "path", "headers", "body"}`, status
//! 200 and an `x-probe: 1` header. Some paths do more:
//!
//! - `/add`: body `{"input": n}`, answers `{"result": n + 1}` (benchmarks);
//! - `/status/<n>`: answers status `n`;
//! - `/big?bytes=<n>`: answers `n` bytes of `x`;
//! - `/loop`, `/grow`, `/recurse`: spin forever, allocate forever, recurse
//!   forever (the platform must stop each);
//! - `/outbound`: tries an outgoing request and answers with the error it got;
//! - `/fetch?n=<count>&url=<url>` (the URL last, as is): GETs `url` `n`
//!   times (default 1), following up to 3 redirects itself, and answers
//!   `[{"status", "body", "redirects"} or {"error"}...]`;
//! - `/env`: answers `{"environment": [[name, value]...], "config": [[name,
//!   value]...]}`, what `wasi:cli/environment` and `wasi:config/store` hold.

use std::io::{Read as _, Write as _};

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(Probe);

wit_bindgen::generate!({ path: "wit", world: "wasi:config/imports" });

struct Probe;

impl wasip2::exports::http::incoming_handler::Guest for Probe {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let route = path.split('?').next().unwrap_or_default().to_owned();
        let body = read_body(&request);
        match route.as_str() {
            "/add" => {
                let n = number_after(&body, "\"input\"").unwrap_or(0);
                respond(response_out, 200, &[], format!("{{\"result\":{}}}", n + 1).as_bytes());
            }
            "/big" => {
                let n = path
                    .split_once("bytes=")
                    .and_then(|(_, n)| n.parse::<usize>().ok())
                    .unwrap_or(0);
                respond(response_out, 200, &[], &vec![b'x'; n]);
            }
            "/loop" => loop {
                std::hint::black_box(0);
            },
            "/grow" => {
                let mut held = Vec::new();
                loop {
                    held.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&held);
                }
            }
            "/recurse" => {
                let depth = recurse(std::hint::black_box(1));
                respond(response_out, 200, &[], depth.to_string().as_bytes());
            }
            "/fetch" => {
                let query = path.split_once('?').map_or("", |(_, q)| q);
                let (before, url) = query.split_once("url=").unwrap_or((query, ""));
                let n = before
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("n="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                let results: Vec<String> = (0..n).map(|_| fetch(url, 3)).collect();
                let answer = format!("[{}]", results.join(","));
                respond(response_out, 200, &[("content-type", b"application/json")], answer.as_bytes());
            }
            "/env" => {
                let pairs = |pairs: Vec<(String, String)>| {
                    let pairs: Vec<String> = pairs
                        .iter()
                        .map(|(name, value)| format!("[{},{}]", json(name), json(value)))
                        .collect();
                    format!("[{}]", pairs.join(","))
                };
                let config = wasi::config::store::get_all().unwrap_or_default();
                let answer = format!(
                    "{{\"environment\":{},\"config\":{}}}",
                    pairs(std::env::vars().collect()),
                    pairs(config)
                );
                respond(response_out, 200, &[("content-type", b"application/json")], answer.as_bytes());
            }
            "/outbound" => {
                let outgoing = OutgoingRequest::new(Fields::new());
                let _ = outgoing.set_method(&Method::Get);
                let _ = outgoing.set_scheme(Some(&Scheme::Http));
                let _ = outgoing.set_authority(Some("127.0.0.1:9"));
                let _ = outgoing.set_path_with_query(Some("/"));
                // A refusal comes either at once or as the response's result.
                let answer = match wasip2::http::outgoing_handler::handle(outgoing, None) {
                    Ok(future) => {
                        future.subscribe().block();
                        match future.get() {
                            Some(Ok(Ok(_))) => "sent".to_owned(),
                            Some(Ok(Err(code))) => format!("{code:?}"),
                            other => format!("{other:?}"),
                        }
                    }
                    Err(code) => format!("{code:?}"),
                };
                respond(response_out, 200, &[], answer.as_bytes());
            }
            _ => {
                if let Some(status) = route.strip_prefix("/status/") {
                    let status = status.parse().unwrap_or(500);
                    respond(response_out, status, &[], format!("status {status}").as_bytes());
                    return;
                }
                let headers: Vec<String> = request
                    .headers()
                    .entries()
                    .into_iter()
                    .map(|(name, value)| {
                        format!("[{},{}]", json(&name), json(&String::from_utf8_lossy(&value)))
                    })
                    .collect();
                let echo = format!(
                    "{{\"method\":{},\"path\":{},\"headers\":[{}],\"body\":{}}}",
                    json(&method_name(&request.method())),
                    json(&path),
                    headers.join(","),
                    json(&String::from_utf8_lossy(&body)),
                );
                respond(
                    response_out,
                    200,
                    &[("content-type", b"application/json"), ("x-probe", b"1")],
                    echo.as_bytes(),
                );
            }
        }
    }
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(body) = request.consume() {
        if let Ok(mut stream) = body.stream() {
            let _ = stream.read_to_end(&mut bytes);
        }
    }
    bytes
}

fn respond(out: ResponseOutparam, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
    let fields = Fields::new();
    for (name, value) in headers {
        let _ = fields.append(name, value);
    }
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("body");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = outgoing.write().expect("stream");
        for chunk in body.chunks(4096) {
            if stream.write_all(chunk).is_err() {
                return;
            }
        }
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 64]);
    recurse(frame[3] + 1) + frame[7]
}

fn number_after(body: &[u8], key: &str) -> Option<i64> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = &text[text.find(key)? + key.len()..];
    let rest = rest.trim_start_matches([' ', ':']);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

fn json(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// GET `url`, following up to `redirects` redirects: `{"status", "body",
/// "redirects"}` or `{"error"}` as JSON.
fn fetch(url: &str, redirects: u32) -> String {
    let mut url = url.to_owned();
    for followed in 0..=redirects {
        let Some((scheme, rest)) = url.split_once("://") else {
            return format!("{{\"error\":{}}}", json(&format!("not a URL: {url}")));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let request = OutgoingRequest::new(Fields::new());
        let _ = request.set_method(&Method::Get);
        let _ = request.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http }));
        let _ = request.set_authority(Some(authority));
        let _ = request.set_path_with_query(Some(path));
        let response = match wasip2::http::outgoing_handler::handle(request, None) {
            Ok(future) => {
                future.subscribe().block();
                match future.get() {
                    Some(Ok(Ok(response))) => response,
                    Some(Ok(Err(code))) => return format!("{{\"error\":{}}}", json(&format!("{code:?}"))),
                    other => return format!("{{\"error\":{}}}", json(&format!("{other:?}"))),
                }
            }
            Err(code) => return format!("{{\"error\":{}}}", json(&format!("{code:?}"))),
        };
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .into_iter()
            .next()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        if (300..400).contains(&status) && followed < redirects {
            if let Some(location) = location {
                url = location;
                continue;
            }
        }
        let mut body = Vec::new();
        if let Ok(incoming) = response.consume() {
            if let Ok(mut stream) = incoming.stream() {
                if let Err(e) = stream.read_to_end(&mut body) {
                    return format!("{{\"error\":{}}}", json(&format!("reading the body: {e}")));
                }
            }
        }
        return format!(
            "{{\"status\":{status},\"body\":{},\"redirects\":{followed}}}",
            json(&String::from_utf8_lossy(&body))
        );
    }
    unreachable!("the last round returns")
}
