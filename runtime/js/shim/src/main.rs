//! The QuickJS shim: the JavaScript interpreter every JS function runs on.
//! Built for `wasm32-wasip1` by `runtime/js/build.rs`.
//!
//! One interpreter serves every function (the way Javy's dynamic linking
//! works): the platform snapshots it once, compiles it once, and each
//! function is only its QuickJS bytecode, made at upload. Entry points:
//! - `wizer-initialize`, run once under wasmtime-wizer: starts QuickJS and
//!   installs `console`, `Math.random`, `Headers`/`Request`/`Response`. The
//!   snapshot of that instance is the interpreter module.
//! - `nimbus-js-compile`, run at upload on an initialised instance: reads a
//!   function's source from stdin, compiles it to bytecode and evaluates it
//!   once (so a syntax error or a throwing top level is refused at upload,
//!   with its position, `function.js:LINE:COL`), and writes the script:
//!   one byte `1` if the source is an HTTP handler, else `0`, then the form
//!   byte and the bytecode. An error goes to stderr and the shim exits 1.
//! - `_start` (`main`), run per invocation. Stdin holds the function's
//!   script, then the input: a 4-byte little-endian length, the script (form
//!   byte, bytecode), the input JSON. The script is loaded and evaluated, then
//!   the handler called; its result goes as JSON to stdout (a returned
//!   Promise is awaited), `console.*` to stderr; an uncaught error goes to
//!   stderr with its stack and exits 1.
//!
//! Source forms, decided from the source text (comments and strings ignored):
//! an ES module when it uses `export` (handler = export `handler` or the
//! default export); a script when it declares `handler` (function
//! declaration, or `handler =` / `const|let|var handler`); otherwise a function
//! body run with `input` bound, as in the seed: `return input + 1;`.
//!
//! An ES module whose default export is an object with a `fetch` method
//! (the Workers module syntax, `export default { async fetch(request) {...}
//! }`) is an HTTP handler, and an invocation whose input is a request
//! envelope (`{"nimbus_http_request": {"method", "path", "headers":
//! [[name, value]...], "body"}}`, the body as text) calls `fetch` with a
//! `Request` and writes the `Response` as `{"status", "headers", "body"}`;
//! any other input (JSON from `execute` or a job) is sent as the body of a
//! `POST /` and the response's JSON body is the result. `Request`,
//! `Response` and `Headers` are small classes of the shim's own (text(),
//! json(), status, headers).

use std::cell::RefCell;
use std::ffi::CString;
use std::io::{Read, Write};

use rquickjs::{
    CatchResultExt, CaughtError, Context, Ctx, Function, Module, Persistent, Promise, Runtime,
    Value, WriteOptions, qjs,
};

/// The started interpreter, kept by the snapshot.
struct Interpreter {
    context: Context,
    /// Sets the seed of `Math.random`; called with fresh host randomness per invocation.
    seed_random: Persistent<Function<'static>>,
    /// Kept alive with the context.
    _runtime: Runtime,
}

thread_local! {
    static INTERPRETER: RefCell<Option<Interpreter>> = const { RefCell::new(None) };
}

/// Name the source is compiled under; error positions refer to it.
const FILENAME: &str = "function.js";

#[unsafe(export_name = "wizer-initialize")]
pub extern "C" fn initialize() {
    match start() {
        Ok(interpreter) => INTERPRETER.with(|slot| *slot.borrow_mut() = Some(interpreter)),
        Err(message) => fail(&message),
    }
}

#[unsafe(export_name = "nimbus-js-compile")]
pub extern "C" fn compile() {
    let mut source = String::new();
    if std::io::stdin().read_to_string(&mut source).is_err() {
        fail("the source is not valid UTF-8");
    }
    let compiled = with_interpreter(|ctx, _| {
        let form = form(&source);
        compile_source(ctx, &form, &source).map(|(bytecode, http)| (form, bytecode, http))
    });
    match compiled {
        Ok((form, bytecode, http)) => {
            let mut stdout = std::io::stdout().lock();
            let written = stdout
                .write_all(&[u8::from(http), form.byte()])
                .and_then(|()| stdout.write_all(&bytecode))
                .and_then(|()| stdout.flush());
            if written.is_err() {
                std::process::exit(2);
            }
        }
        Err(message) => fail(&message),
    }
}

fn main() {
    let mut stdin = Vec::new();
    if std::io::stdin().read_to_end(&mut stdin).is_err() {
        fail("cannot read stdin");
    }
    let Some((form, bytecode, input)) = split_stdin(&stdin) else {
        fail("stdin does not start with a function's script");
    };
    let Ok(input) = std::str::from_utf8(input) else {
        fail("the input is not valid UTF-8");
    };
    let output = with_interpreter(|ctx, interpreter| {
        let (handler, _) = load_script(ctx, &form, bytecode)?;
        invoke(ctx, interpreter, handler, input)
    });
    match output {
        Ok(json) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(json.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                std::process::exit(2);
            }
        }
        Err(message) => fail(&message),
    }
}

/// `[len: u32 LE][form byte][bytecode: len - 1 bytes][input]`.
fn split_stdin(stdin: &[u8]) -> Option<(Form, &[u8], &[u8])> {
    let len = u32::from_le_bytes(stdin.get(..4)?.try_into().ok()?) as usize;
    let script = stdin.get(4..4 + len)?;
    let (&form, bytecode) = script.split_first()?;
    Some((Form::from_byte(form)?, bytecode, &stdin[4 + len..]))
}

fn with_interpreter<R>(
    f: impl FnOnce(&Ctx<'_>, &Interpreter) -> Result<R, String>,
) -> Result<R, String> {
    INTERPRETER.with(|slot| {
        let slot = slot.borrow();
        let Some(interpreter) = slot.as_ref() else {
            fail("the interpreter was not initialised");
        };
        interpreter.context.with(|ctx| f(&ctx, interpreter))
    })
}

fn fail(message: &str) -> ! {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{message}");
    let _ = stderr.flush();
    std::process::exit(1)
}

fn start() -> Result<Interpreter, String> {
    let runtime = Runtime::new().map_err(|e| format!("cannot start QuickJS: {e}"))?;
    let context = Context::full(&runtime).map_err(|e| format!("cannot start QuickJS: {e}"))?;
    let seed_random = context.with(|ctx| -> Result<_, String> {
        install_console(&ctx).map_err(|e| format!("cannot install console: {e}"))?;
        install_fetch_classes(&ctx).map_err(|e| format!("cannot install Request/Response: {e}"))?;
        let seed_random =
            install_random(&ctx).map_err(|e| format!("cannot install Math.random: {e}"))?;
        Ok(Persistent::save(&ctx, seed_random))
    })?;
    Ok(Interpreter {
        context,
        seed_random,
        _runtime: runtime,
    })
}

/// Compile `source` to bytecode and evaluate it once, as an invocation
/// would: the bytecode, and whether the function is an HTTP handler.
fn compile_source(ctx: &Ctx<'_>, form: &Form, source: &str) -> Result<(Vec<u8>, bool), String> {
    match form {
        Form::Module => {
            let declared = Module::declare(ctx.clone(), FILENAME, source)
                .catch(ctx)
                .map_err(describe)?;
            let bytecode = declared
                .write(WriteOptions::default())
                .catch(ctx)
                .map_err(describe)?;
            let (evaluated, promise) = declared.eval().catch(ctx).map_err(describe)?;
            promise.finish::<()>().catch(ctx).map_err(describe)?;
            let (_, http) =
                module_handler(ctx, evaluated.namespace().catch(ctx).map_err(describe)?)?;
            Ok((bytecode, http))
        }
        Form::Script | Form::Body => {
            let source = match form {
                // The wrapper shares the first line with the source, so line
                // numbers in errors match the uploaded text.
                Form::Body => format!("(function (input) {{{source}\n}})"),
                _ => source.to_owned(),
            };
            let function = compile_global(ctx, &source).catch(ctx).map_err(describe)?;
            let bytecode = write_object(ctx, &function).catch(ctx).map_err(describe)?;
            global_handler(ctx, form, function)?;
            Ok((bytecode, false))
        }
    }
}

/// Load a script made by [`compile_source`] and evaluate it: the handler,
/// and whether it answers HTTP.
fn load_script<'js>(
    ctx: &Ctx<'js>,
    form: &Form,
    bytecode: &[u8],
) -> Result<(Function<'js>, bool), String> {
    match form {
        Form::Module => {
            // SAFETY: the bytecode is what `compile_source` wrote (the
            // platform stores it); QuickJS's reader runs inside the sandbox
            // like the rest of the guest, so a forged one harms nobody else.
            let declared = unsafe { Module::load(ctx.clone(), bytecode) }
                .catch(ctx)
                .map_err(describe)?;
            let (evaluated, promise) = declared.eval().catch(ctx).map_err(describe)?;
            promise.finish::<()>().catch(ctx).map_err(describe)?;
            module_handler(ctx, evaluated.namespace().catch(ctx).map_err(describe)?)
        }
        Form::Script | Form::Body => {
            let function = read_object(ctx, bytecode).catch(ctx).map_err(describe)?;
            Ok((global_handler(ctx, form, function)?, false))
        }
    }
}

/// Run a compiled script or body and find its handler.
fn global_handler<'js>(
    ctx: &Ctx<'js>,
    form: &Form,
    compiled: Value<'js>,
) -> Result<Function<'js>, String> {
    let value = eval_function(ctx, compiled).catch(ctx).map_err(describe)?;
    match form {
        Form::Body => value
            .into_function()
            .ok_or_else(|| "the function body did not compile to a function".to_owned()),
        _ => {
            // `const handler = ...` is not a property of globalThis; look it up by name.
            ctx.eval::<Value, _>("typeof handler === 'function' ? handler : undefined")
                .catch(ctx)
                .map_err(describe)?
                .into_function()
                .ok_or_else(|| "`handler` must be a function".to_owned())
        }
    }
}

/// `JS_Eval` with `COMPILE_ONLY`: a global script compiled, not run.
#[allow(unsafe_code)]
fn compile_global<'js>(ctx: &Ctx<'js>, source: &str) -> rquickjs::Result<Value<'js>> {
    let source = CString::new(source)?;
    let filename = CString::new(FILENAME)?;
    let flags = (qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_COMPILE_ONLY) as i32;
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // returned value is owned and handed to `Value`.
    unsafe {
        let value = qjs::JS_Eval(
            ctx.as_raw().as_ptr(),
            source.as_ptr(),
            source.as_bytes().len() as _,
            filename.as_ptr(),
            flags,
        );
        owned(ctx, value)
    }
}

/// The bytecode of a compiled script.
#[allow(unsafe_code)]
fn write_object(ctx: &Ctx<'_>, compiled: &Value<'_>) -> rquickjs::Result<Vec<u8>> {
    let mut len = 0;
    // SAFETY: `compiled` is a live value of this context; the buffer QuickJS
    // returns is copied and freed with its allocator.
    unsafe {
        let buffer = qjs::JS_WriteObject(
            ctx.as_raw().as_ptr(),
            &mut len,
            compiled.as_raw(),
            qjs::JS_WRITE_OBJ_BYTECODE as i32,
        );
        if buffer.is_null() {
            return Err(rquickjs::Error::Exception);
        }
        let bytes = std::slice::from_raw_parts(buffer, len as usize).to_vec();
        qjs::js_free(ctx.as_raw().as_ptr(), buffer.cast());
        Ok(bytes)
    }
}

/// A compiled script read back from its bytecode.
#[allow(unsafe_code)]
fn read_object<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> rquickjs::Result<Value<'js>> {
    // SAFETY: the buffer outlives the call (QuickJS copies what it keeps);
    // see `load_script` on where the bytecode comes from.
    unsafe {
        let value = qjs::JS_ReadObject(
            ctx.as_raw().as_ptr(),
            bytecode.as_ptr(),
            bytecode.len() as _,
            qjs::JS_READ_OBJ_BYTECODE as i32,
        );
        owned(ctx, value)
    }
}

/// Run a compiled script: its completion value.
#[allow(unsafe_code)]
fn eval_function<'js>(ctx: &Ctx<'js>, compiled: Value<'js>) -> rquickjs::Result<Value<'js>> {
    // SAFETY: `JS_EvalFunction` takes ownership of its argument, so the
    // reference `compiled` held is handed over (duplicated first, since the
    // `Value` still drops its own).
    unsafe {
        let function = qjs::JS_DupValue(ctx.as_raw().as_ptr(), compiled.as_raw());
        let value = qjs::JS_EvalFunction(ctx.as_raw().as_ptr(), function);
        owned(ctx, value)
    }
}

/// An owned raw value, or the pending exception.
#[allow(unsafe_code)]
unsafe fn owned<'js>(ctx: &Ctx<'js>, value: qjs::JSValue) -> rquickjs::Result<Value<'js>> {
    // SAFETY (caller): `value` is owned and belongs to `ctx`.
    unsafe {
        if qjs::JS_IsException(value) {
            Err(rquickjs::Error::Exception)
        } else {
            Ok(Value::from_raw(ctx.clone(), value))
        }
    }
}

/// The module's handler, and whether it is a `fetch` handler (HTTP).
fn module_handler<'js>(
    ctx: &Ctx<'js>,
    namespace: rquickjs::Object<'js>,
) -> Result<(Function<'js>, bool), String> {
    for name in ["handler", "default"] {
        if let Ok(function) = namespace.get::<_, Function>(name) {
            return Ok((function, false));
        }
    }
    if let Ok(exported) = namespace.get::<_, rquickjs::Object>("default")
        && exported.get::<_, Function>("fetch").is_ok()
    {
        let serve: Function = ctx
            .globals()
            .get("__nimbus_serve")
            .map_err(|e| e.to_string())?;
        let bind: Function = ctx
            .eval("(serve, handler) => (envelope) => serve(handler, envelope)")
            .map_err(|e| e.to_string())?;
        let handler = bind.call((serve, exported)).catch(ctx).map_err(describe)?;
        return Ok((handler, true));
    }
    Err(
        "the module must export a function named `handler`, a default function, \
         or a default object with a `fetch` method"
            .into(),
    )
}

fn invoke<'js>(
    ctx: &Ctx<'js>,
    interpreter: &Interpreter,
    handler: Function<'js>,
    input: &str,
) -> Result<String, String> {
    let seed_random = interpreter
        .seed_random
        .clone()
        .restore(ctx)
        .map_err(|e| e.to_string())?;
    seed_random
        .call::<_, ()>((host_random_i32(),))
        .map_err(|e| format!("cannot seed Math.random: {e}"))?;
    let input = ctx.json_parse(input).catch(ctx).map_err(describe)?;
    let mut result: Value = handler.call((input,)).catch(ctx).map_err(uncaught)?;
    if let Some(promise) = result.clone().into_promise() {
        result = settle(ctx, promise)?;
    }
    let json = ctx.json_stringify(result).catch(ctx).map_err(uncaught)?;
    match json {
        Some(text) => text.to_string().map_err(|e| e.to_string()),
        // `undefined`, functions and symbols have no JSON form.
        None => Ok("null".to_owned()),
    }
}

fn settle<'js>(ctx: &Ctx<'js>, promise: Promise<'js>) -> Result<Value<'js>, String> {
    match promise.finish::<Value>() {
        Err(rquickjs::Error::WouldBlock) => {
            Err("the handler returned a Promise that never settles".to_owned())
        }
        other => other.catch(ctx).map_err(uncaught),
    }
}

fn uncaught(error: CaughtError<'_>) -> String {
    format!("Uncaught {}", describe(error))
}

/// `Name: message` and, when there is one, the JS stack.
fn describe(error: CaughtError<'_>) -> String {
    match error {
        CaughtError::Exception(exception) => {
            let name = exception
                .get::<_, String>("name")
                .unwrap_or_else(|_| "Error".to_owned());
            let message = exception.message().unwrap_or_default();
            match exception.stack().filter(|s| !s.trim().is_empty()) {
                Some(stack) => format!("{name}: {message}\n{}", stack.trim_end()),
                None => format!("{name}: {message}"),
            }
        }
        CaughtError::Value(value) => format!("a non-Error value was thrown: {value:?}"),
        CaughtError::Error(error) => error.to_string(),
    }
}

/// `Headers`, `Request` and `Response` for `fetch` handlers (a small subset
/// of the Fetch API: text(), json(), status, ok, headers with get/set/has/
/// append/delete/entries), and `__nimbus_serve`, which turns a request
/// envelope into a `Request`, calls the handler's `fetch` and turns its
/// `Response` into a response envelope.
fn install_fetch_classes(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
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
                const response = await handler.fetch(request);
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
fn install_console(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
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
/// replaced at initialisation by a small xorshift generator whose seed is set
/// from host randomness at every invocation. Seeding is a call with a number,
/// not parsed source, so it costs the same fuel whatever the seed.
fn install_random<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Function<'js>> {
    ctx.eval(
        r#"(() => {
            let s = 1;
            Math.random = () => {
                s ^= s << 13; s >>>= 0;
                s ^= s >>> 17;
                s ^= s << 5; s >>>= 0;
                return s / 4294967296;
            };
            return (seed) => { s = seed | 1; };
        })()"#,
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

#[derive(Debug, PartialEq)]
enum Form {
    Module,
    Script,
    Body,
}

impl Form {
    fn byte(&self) -> u8 {
        match self {
            Self::Module => b'M',
            Self::Script => b'S',
            Self::Body => b'B',
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'M' => Some(Self::Module),
            b'S' => Some(Self::Script),
            b'B' => Some(Self::Body),
            _ => None,
        }
    }
}

/// Decide the source form from its code tokens (comments and string
/// contents blanked out first).
fn form(source: &str) -> Form {
    let code = blank_comments_and_strings(source);
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '='))
        .filter(|w| !w.is_empty())
        .collect();
    if words.contains(&"export") {
        return Form::Module;
    }
    let declares_handler = words.windows(2).any(|pair| {
        matches!(pair, ["function" | "const" | "let" | "var", "handler"])
            || (pair[0] == "handler" && pair[1].starts_with('=') && !pair[1].starts_with("=="))
    }) || words
        .iter()
        .any(|w| w.starts_with("handler=") && !w.starts_with("handler=="));
    if declares_handler {
        Form::Script
    } else {
        Form::Body
    }
}

fn blank_comments_and_strings(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
            out.push(' ');
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}
