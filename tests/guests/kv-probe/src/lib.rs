//! A `wasi:http/proxy` component that keeps state with `wasi:keyvalue`,
//! for the tests. The store is `?store=` (default `default`), the key
//! `?key=`; answers are text:
//!
//! - `/hit`: increments the key by 1 and answers the new count;
//! - `/append?item=<x>`: appends `x` to a comma-separated list with
//!   compare-and-swap (retrying on `cas-failed`), answers the list's length;
//! - `/get`: the value (404 if absent); `/set`: sets it to the body;
//!   `/delete`; `/exists`: `true`/`false`;
//! - `/keys`: every key, one per line, following cursors;
//! - `/batch`: sets `a`, `b` with `set-many`, answers `get-many` of `a`, `b`,
//!   `zz`;
//! - an error answers 500 with the error (`AccessDenied`, `Other("...")`).

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wit_bindgen::generate!({
    path: ["../../../runtime/engine/wit/keyvalue", "wit"],
    world: "nimbus:kv-probe/probe",
    generate_all,
});

use wasi::keyvalue::{atomics, batch, store};

wasip2::http::proxy::export!(Probe);

struct Probe;

impl wasip2::exports::http::incoming_handler::Guest for Probe {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (route, query) = path.split_once('?').unwrap_or((&path, ""));
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                .map(decode)
        };
        let store_name = param("store").unwrap_or_else(|| "default".to_owned());
        let key = param("key").unwrap_or_else(|| "hits".to_owned());
        let body = read_body(&request);
        let answer = store::open(&store_name).and_then(|bucket| match route {
            "/hit" => atomics::increment(&bucket, &key, 1).map(|n| (200, n.to_string())),
            "/append" => append(&bucket, &key, &param("item").unwrap_or_default()),
            "/get" => bucket.get(&key).map(|value| match value {
                Some(value) => (200, String::from_utf8_lossy(&value).into_owned()),
                None => (404, "absent".to_owned()),
            }),
            "/set" => bucket.set(&key, &body).map(|()| (200, "set".to_owned())),
            "/delete" => bucket.delete(&key).map(|()| (200, "deleted".to_owned())),
            "/exists" => bucket.exists(&key).map(|e| (200, e.to_string())),
            "/keys" => {
                let mut keys = Vec::new();
                let mut cursor = None;
                loop {
                    let page = bucket.list_keys(cursor.as_deref())?;
                    keys.extend(page.keys);
                    match page.cursor {
                        Some(next) => cursor = Some(next),
                        None => break Ok((200, keys.join("\n"))),
                    }
                }
            }
            "/batch" => {
                batch::set_many(&bucket, &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())])?;
                let found = batch::get_many(&bucket, &["a".into(), "b".into(), "zz".into()])?;
                Ok((200, format!("{found:?}")))
            }
            _ => Ok((404, "no such route".to_owned())),
        });
        let (status, text) = answer.unwrap_or_else(|e| (500, format!("{e:?}")));
        respond(response_out, status, text.as_bytes());
    }
}

/// Append `item` to the comma-separated list at `key`, with CAS.
fn append(bucket: &store::Bucket, key: &str, item: &str) -> Result<(u16, String), store::Error> {
    let mut cas = atomics::Cas::new(bucket, key)?;
    loop {
        let current = cas.current()?.map(|v| String::from_utf8_lossy(&v).into_owned());
        let list = match current {
            Some(list) if !list.is_empty() => format!("{list},{item}"),
            _ => item.to_owned(),
        };
        let count = list.split(',').count();
        match atomics::swap(cas, list.as_bytes()) {
            Ok(()) => return Ok((200, count.to_string())),
            Err(atomics::CasError::CasFailed(fresh)) => cas = fresh,
            Err(atomics::CasError::StoreError(e)) => return Err(e),
        }
    }
}

/// `%XX` escapes of a query value, decoded.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut body = Vec::new();
    if let Ok(incoming) = request.consume()
        && let Ok(stream) = incoming.stream()
    {
        while let Ok(chunk) = stream.blocking_read(64 << 10) {
            body.extend_from_slice(&chunk);
        }
    }
    body
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("a fresh response has a body");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("a fresh body has a stream");
    for chunk in body.chunks(4096) {
        let _ = stream.blocking_write_and_flush(chunk);
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}
