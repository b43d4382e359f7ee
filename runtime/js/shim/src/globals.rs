//! What the interpreter installs once, before any function: `console`,
//! `Headers`/`Request`/`Response` (and `__nimbus_serve`), `fetch`, a
//! seedable `Math.random` and `process.env`.

use std::io::Write;

use rquickjs::{Ctx, Function};

/// `Headers`, `Request` and `Response` for `fetch` handlers (a small subset
/// of the Fetch API: text(), json(), status, ok, headers with get/set/has/
/// append/delete/entries), and `__nimbus_serve`, which turns a request
/// envelope into a `Request`, calls the handler's `fetch` and turns its
/// `Response` into a response envelope.
pub(crate) fn install_fetch_classes(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    ctx.eval::<(), _>(
        r#"(() => {
            class Headers {
                constructor(init) {
                    this._map = new Map();
                    if (init instanceof Headers) init = init.entries();
                    else if (init && !Array.isArray(init) && typeof init[Symbol.iterator] !== 'function') init = Object.entries(init);
                    for (const [name, value] of init || []) this.append(name, value);
                }
                append(name, value) {
                    const key = String(name).toLowerCase();
                    const old = this._map.get(key);
                    this._map.set(key, old === undefined ? String(value) : old + ', ' + value);
                }
                set(name, value) { this._map.set(String(name).toLowerCase(), String(value)); }
                get(name) { const v = this._map.get(String(name).toLowerCase()); return v === undefined ? null : v; }
                has(name) { return this._map.has(String(name).toLowerCase()); }
                delete(name) { this._map.delete(String(name).toLowerCase()); }
                entries() { return this._map.entries(); }
                keys() { return this._map.keys(); }
                values() { return this._map.values(); }
                forEach(f) { for (const [k, v] of this._map) f(v, k, this); }
                [Symbol.iterator]() { return this._map.entries(); }
            }
            const bodyText = (body) => body === undefined || body === null ? '' : String(body);
            class Request {
                constructor(url, init = {}) {
                    this.url = String(url);
                    this.method = (init.method || 'GET').toUpperCase();
                    this.headers = new Headers(init.headers);
                    this._body = bodyText(init.body);
                }
                async text() { return this._body; }
                async json() { return JSON.parse(this._body); }
            }
            class Response {
                constructor(body, init = {}) {
                    this.status = init.status === undefined ? 200 : init.status;
                    this.statusText = init.statusText || '';
                    this.headers = new Headers(init.headers);
                    this._body = bodyText(body);
                }
                get ok() { return this.status >= 200 && this.status < 300; }
                async text() { return this._body; }
                async json() { return JSON.parse(this._body); }
                static json(value, init = {}) {
                    const response = new Response(JSON.stringify(value), init);
                    if (!response.headers.has('content-type')) response.headers.set('content-type', 'application/json');
                    return response;
                }
            }
            globalThis.Headers = Headers;
            globalThis.Request = Request;
            globalThis.Response = Response;
            // On a URL call the engine sends {"nimbus_http_request": {method,
            // path, headers, body}} and reads {status, headers, body} back.
            // Any other input is JSON from `execute` or a job: it becomes
            // the body of a `POST /`, and the answer's JSON body the result.
            globalThis.__nimbus_serve = async (handler, input) => {
                const envelope = input !== null && typeof input === 'object' ? input.nimbus_http_request : undefined;
                const http = envelope !== undefined;
                const e = http ? envelope : { method: 'POST', path: '/', headers: [['content-type', 'application/json']], body: JSON.stringify(input) };
                const host = (e.headers.find(([n]) => n === 'host') || [])[1] || 'localhost';
                const request = new Request('http://' + host + e.path, { method: e.method, headers: e.headers, body: e.body });
                const response = await handler.fetch(request, process.env);
                if (!(response instanceof Response)) throw new TypeError('fetch must return a Response');
                if (http) return { status: response.status, headers: [...response.headers.entries()], body: response._body };
                if (!response.ok) throw new Error(`the handler answered HTTP ${response.status}: ${response._body.slice(0, 200)}`);
                return response._body.trim() === '' ? null : JSON.parse(response._body);
            };
        })();"#,
    )
}

/// `console.log/info/warn/error/debug` write one line each to stderr, which
/// the platform keeps as the function's log.
pub(crate) fn install_console(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let write = Function::new(ctx.clone(), |line: String| {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
    })?;
    ctx.globals().set("__nimbus_write_log", write)?;
    ctx.eval::<(), _>(
        r#"(() => {
            const write = globalThis.__nimbus_write_log;
            delete globalThis.__nimbus_write_log;
            const show = (value) => {
                if (typeof value === 'string') return value;
                if (value instanceof Error) return value.stack ? `${value}\n${value.stack}` : String(value);
                try {
                    const json = JSON.stringify(value);
                    return json === undefined ? String(value) : json;
                } catch (_) {
                    return String(value);
                }
            };
            const line = (...values) => write(values.map(show).join(' '));
            globalThis.console = { log: line, info: line, warn: line, error: line, debug: line };
        })();"#,
    )
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    #[link_name = "random_get"]
    fn wasi_random_get(buf: *mut u8, len: usize) -> u16;
}

/// The snapshot would freeze QuickJS's random state, so `Math.random` is
/// replaced at initialisation by a small xorshift generator seeded from host
/// randomness on its first use in an invocation (an invocation that never
/// calls it pays nothing). The seed is an `i32` from a native function, so
/// seeding costs the same fuel whatever its value.
pub(crate) fn install_random(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    ctx.globals().set(
        "__nimbus_seed",
        Function::new(ctx.clone(), host_random_i32)?,
    )?;
    ctx.eval::<(), _>(
        r#"(() => {
            const seed = globalThis.__nimbus_seed;
            delete globalThis.__nimbus_seed;
            let s = 0;
            // xorshift32 on int32 values only (`>>>` and numbers past
            // 2^31 would turn some states into floats, another path in
            // QuickJS): every call burns the same fuel whatever the state.
            Math.random = () => {
                if (s === 0) s = seed() | 1;
                s ^= s << 13;
                s ^= (s >> 17) & 0x7fff;
                s ^= s << 5;
                return ((s & 0x7fffffff) + 0.5) / 2147483648;
            };
        })();"#,
    )
}

/// An `i32`, so QuickJS always receives a small integer and never a float:
/// the two take different paths, which would make fuel depend on the seed.
fn host_random_i32() -> i32 {
    let mut seed = [0u8; 4];
    // SAFETY: `seed` is a valid, writable buffer of the length passed.
    unsafe { wasi_random_get(seed.as_mut_ptr(), seed.len()) };
    i32::from_le_bytes(seed)
}

/// `process.env`: the function's variables and secrets (WASI `environ`),
/// read on first use in an invocation, as a plain object (changing it
/// changes nothing outside the invocation). A `fetch` handler also gets it
/// as its second argument, as in Workers' `fetch(request, env)`.
pub(crate) fn install_env(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    ctx.globals().set(
        "__nimbus_env",
        Function::new(ctx.clone(), || -> Vec<Vec<String>> {
            std::env::vars().map(|(name, value)| vec![name, value]).collect()
        })?,
    )?;
    ctx.eval::<(), _>(
        r#"(() => {
            const read = globalThis.__nimbus_env;
            delete globalThis.__nimbus_env;
            let env;
            globalThis.process = {
                get env() {
                    if (env === undefined) env = Object.fromEntries(read());
                    return env;
                },
            };
        })();"#,
    )
}

#[link(wasm_import_module = "nimbus_http")]
unsafe extern "C" {
    #[link_name = "send"]
    fn http_send(ptr: *const u8, len: i32) -> i32;
    #[link_name = "read"]
    fn http_read(ptr: *mut u8, len: i32) -> i32;
}

/// Send `request` through a `nimbus_*` import's `send` (or `call`) and
/// copy the outcome out with its `read`; `None` if the request is too
/// large to describe.
#[allow(unsafe_code)]
pub(crate) fn exchange(
    send: unsafe extern "C" fn(*const u8, i32) -> i32,
    read: unsafe extern "C" fn(*mut u8, i32) -> i32,
    request: &[u8],
) -> Option<Vec<u8>> {
    let len = i32::try_from(request.len()).ok()?;
    // SAFETY: pointer and length describe `request`, alive across the call.
    let answer = unsafe { send(request.as_ptr(), len) }.max(0);
    let mut outcome = vec![0u8; answer as usize];
    // SAFETY: `outcome` is writable for its whole length.
    let copied = unsafe { read(outcome.as_mut_ptr(), answer) }.max(0);
    outcome.truncate(copied as usize);
    Some(outcome)
}

/// Send a request (JSON) through the platform's `nimbus_http` import; the
/// outcome (JSON: a response or `{"error"}`).
fn host_fetch(request: String) -> String {
    match exchange(http_send, http_read, request.as_bytes()) {
        Some(outcome) => String::from_utf8_lossy(&outcome).into_owned(),
        None => r#"{"error":"the request is too large"}"#.to_owned(),
    }
}

/// `fetch(input, init)`: a `Request` (or a URL and init) sent by the
/// platform to a host the function is allowed to call (its
/// `allowed_outbound_hosts`); resolves to a `Response`, rejects with a
/// `TypeError` naming the platform's reason (`HttpRequestDenied`...).
/// Bodies are text.
pub(crate) fn install_outbound(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    ctx.globals()
        .set("__nimbus_fetch", Function::new(ctx.clone(), host_fetch)?)?;
    ctx.eval::<(), _>(
        r#"(() => {
            const send = globalThis.__nimbus_fetch;
            delete globalThis.__nimbus_fetch;
            globalThis.fetch = async (input, init = {}) => {
                const request = input instanceof Request
                    ? new Request(input.url, { method: input.method, headers: input.headers, body: input._body, ...init })
                    : new Request(input, init);
                const outcome = JSON.parse(send(JSON.stringify({
                    method: request.method,
                    url: request.url,
                    headers: [...request.headers.entries()],
                    body: request._body,
                })));
                if (outcome.error !== undefined) throw new TypeError(`fetch failed: ${outcome.error}`);
                return new Response(outcome.body, { status: outcome.status, headers: outcome.headers });
            };
        })();"#,
    )
}
