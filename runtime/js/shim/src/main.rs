//! The QuickJS shim: the JavaScript interpreter every JS function runs on.
//! Built for `wasm32-wasip1` by `runtime/js/build.rs`.
//!
//! One interpreter serves every function (the way Javy's dynamic linking
//! works): the platform snapshots it once, compiles it once, and each
//! function is only its QuickJS bytecode, made at upload. Entry points:
//! - `wizer-initialize`, run once under wasmtime-wizer: starts QuickJS and
//!   installs `console`, `Math.random`, `Headers`/`Request`/`Response`,
//!   `fetch` (through the platform's `nimbus_http` import), `process.env`
//!   (read from WASI `environ` when first used in a call).
//!   The snapshot of that instance is the interpreter module.
//! - `nimbus-js-compile`, run at upload on an initialised instance: reads a
//!   function's source from stdin, compiles it to bytecode and evaluates it
//!   once (so a syntax error or a throwing top level is refused at upload,
//!   with its position, `function.js:LINE:COL`), and writes the script:
//!   one byte `1` if the source is an HTTP handler, else `0`, then the form
//!   byte and the bytecode. An error goes to stderr and the shim exits 1.
//! - `nimbus-js-prepare` then `nimbus-js-run`, called one after the other
//!   per invocation. Stdin holds the function's script, then the input: a
//!   4-byte little-endian length, the script (form byte, bytecode), the
//!   input JSON. `prepare` reads exactly the script, unbuffered (never a
//!   byte of the input), loads it and runs its top level, and keeps the
//!   handler; `run` reads the input, calls the handler and writes its
//!   result as JSON to stdout (a returned Promise is awaited). `console.*`
//!   goes to stderr; an uncaught error goes to stderr with its stack and
//!   exits 1. Nothing `prepare` does depends on the input, so the platform
//!   can snapshot an instance right after it (a *prepared* function, see
//!   the engine's `tier_up.rs`) and call only `run` on the snapshot, at the
//!   same fuel once `prepare`'s is added.
//! - `_start` (`main`): `prepare`, then `run`.
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

mod bytecode;
mod form;
mod globals;
mod kv;

use std::cell::RefCell;
use std::io::{Read, Write};

use bytecode::{compile_global, eval_function, read_object, write_object};
use form::{Form, form};
use globals::{
    install_console, install_env, install_fetch_classes, install_outbound, install_random,
};

use rquickjs::{
    CatchResultExt, CaughtError, Context, Ctx, Function, Module, Persistent, Promise, Runtime,
    Value, WriteOptions,
};

/// The started interpreter, kept by the snapshot.
struct Interpreter {
    context: Context,
    /// `() => handler`, for scripts: a `const handler` is not a property of
    /// `globalThis`, so it is looked up by name (compiled once, here, rather
    /// than per invocation).
    find_handler: Persistent<Function<'static>>,
    /// `(serve, exported) => (envelope) => serve(exported, envelope)`: binds
    /// a `fetch` handler to `__nimbus_serve`.
    bind_fetch: Persistent<Function<'static>>,
    /// Kept alive with the context.
    _runtime: Runtime,
}

thread_local! {
    static INTERPRETER: RefCell<Option<Interpreter>> = const { RefCell::new(None) };
    /// The handler `nimbus-js-prepare` found, for `nimbus-js-run`.
    static PREPARED: RefCell<Option<Persistent<Function<'static>>>> = const { RefCell::new(None) };
}

/// Name the source is compiled under; error positions refer to it.
pub(crate) const FILENAME: &str = "function.js";

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
    let compiled = with_interpreter(|ctx, interpreter| {
        let form = form(&source);
        compile_source(ctx, interpreter, &form, &source)
            .map(|(bytecode, http)| (form, bytecode, http))
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

#[unsafe(export_name = "nimbus-js-prepare")]
pub extern "C" fn prepare() {
    let Some((form, bytecode)) = read_script() else {
        fail("stdin does not start with a function's script");
    };
    let handler = with_interpreter(|ctx, interpreter| {
        let (handler, _) = load_script(ctx, interpreter, &form, &bytecode)?;
        Ok(Persistent::save(ctx, handler))
    });
    match handler {
        Ok(handler) => PREPARED.with(|slot| *slot.borrow_mut() = Some(handler)),
        Err(message) => fail(&message),
    }
}

#[unsafe(export_name = "nimbus-js-run")]
pub extern "C" fn run() {
    let mut input = Vec::new();
    if stdin_unbuffered().read_to_end(&mut input).is_err() {
        fail("cannot read stdin");
    }
    let Ok(input) = std::str::from_utf8(&input) else {
        fail("the input is not valid UTF-8");
    };
    let Some(handler) = PREPARED.with(|slot| slot.borrow_mut().take()) else {
        fail("no function was prepared");
    };
    let output = with_interpreter(|ctx, _| invoke(ctx, restore(ctx, &handler)?, input));
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

fn main() {
    prepare();
    run();
}

/// Stdin without std's buffer: a buffered read could take bytes of the
/// input while `prepare` reads the script.
#[allow(unsafe_code)]
fn stdin_unbuffered() -> Unbuffered {
    use std::os::fd::FromRawFd;
    // SAFETY: fd 0 is the instance's stdin, open for its whole life; the
    // `ManuallyDrop` never closes it.
    Unbuffered(std::mem::ManuallyDrop::new(unsafe {
        std::fs::File::from_raw_fd(0)
    }))
}

/// Plain `fd_read`s: `File`'s own `read_to_end` sizes its buffer from the
/// file's size and position, which for stdin count the script too when it
/// was read in the same instance, and would make `run` allocate (and burn
/// fuel) differently prepared and unprepared.
struct Unbuffered(std::mem::ManuallyDrop<std::fs::File>);

impl Read for Unbuffered {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

/// `[len: u32 LE][form byte][bytecode: len - 1 bytes]`, read exactly.
fn read_script() -> Option<(Form, Vec<u8>)> {
    let mut stdin = stdin_unbuffered();
    let mut len = [0; 4];
    stdin.read_exact(&mut len).ok()?;
    let mut form = [0; 1];
    stdin.read_exact(&mut form).ok()?;
    let mut bytecode = vec![0; (u32::from_le_bytes(len) as usize).checked_sub(1)?];
    stdin.read_exact(&mut bytecode).ok()?;
    Some((Form::from_byte(form[0])?, bytecode))
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
    // A function is one script: `import()` of anything is refused by name
    // rather than left to QuickJS's default (which looks the name up).
    runtime.set_loader(NoModules, NoModules);
    let context = Context::full(&runtime).map_err(|e| format!("cannot start QuickJS: {e}"))?;
    let (find_handler, bind_fetch) = context.with(|ctx| -> Result<_, String> {
        install_console(&ctx).map_err(|e| format!("cannot install console: {e}"))?;
        install_fetch_classes(&ctx).map_err(|e| format!("cannot install Request/Response: {e}"))?;
        install_random(&ctx).map_err(|e| format!("cannot install Math.random: {e}"))?;
        install_env(&ctx).map_err(|e| format!("cannot install process.env: {e}"))?;
        install_outbound(&ctx).map_err(|e| format!("cannot install fetch: {e}"))?;
        kv::install_kv(&ctx).map_err(|e| format!("cannot install Nimbus.kv: {e}"))?;
        let helper = |source: &str| {
            ctx.eval::<Function, _>(source)
                .map(|function| Persistent::save(&ctx, function))
                .map_err(|e| format!("cannot install the shim's helpers: {e}"))
        };
        Ok((
            helper("() => typeof handler === 'function' ? handler : undefined")?,
            helper("(serve, exported) => (envelope) => serve(exported, envelope)")?,
        ))
    })?;
    Ok(Interpreter {
        context,
        find_handler,
        bind_fetch,
        _runtime: runtime,
    })
}

/// Refuses every module: functions have no module loading.
struct NoModules;

const NO_MODULES: &str = "module loading is not available in Nimbus functions";

impl rquickjs::loader::Resolver for NoModules {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<rquickjs::loader::ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        Err(rquickjs::Error::new_resolving_message(base, name, NO_MODULES))
    }
}

impl rquickjs::loader::Loader for NoModules {
    fn load<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<rquickjs::loader::ImportAttributes<'js>>,
    ) -> rquickjs::Result<rquickjs::Module<'js, rquickjs::module::Declared>> {
        Err(rquickjs::Error::new_loading_message(name, NO_MODULES))
    }
}

/// Compile `source` to bytecode and evaluate it once, as an invocation
/// would: the bytecode, and whether the function is an HTTP handler.
fn compile_source(
    ctx: &Ctx<'_>,
    interpreter: &Interpreter,
    form: &Form,
    source: &str,
) -> Result<(Vec<u8>, bool), String> {
    match form {
        Form::Module => {
            let declared = Module::declare(ctx.clone(), FILENAME, source)
                .catch(ctx)
                .map_err(describe)?;
            let bytecode = declared
                .write(WriteOptions {
                    strip_source: true,
                    ..WriteOptions::default()
                })
                .catch(ctx)
                .map_err(describe)?;
            let (evaluated, promise) = declared.eval().catch(ctx).map_err(describe)?;
            promise.finish::<()>().catch(ctx).map_err(describe)?;
            let (_, http) = module_handler(
                ctx,
                interpreter,
                evaluated.namespace().catch(ctx).map_err(describe)?,
            )?;
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
            global_handler(ctx, interpreter, form, function)?;
            Ok((bytecode, false))
        }
    }
}

/// Load a script made by [`compile_source`] and evaluate it: the handler,
/// and whether it answers HTTP.
fn load_script<'js>(
    ctx: &Ctx<'js>,
    interpreter: &Interpreter,
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
            module_handler(
                ctx,
                interpreter,
                evaluated.namespace().catch(ctx).map_err(describe)?,
            )
        }
        Form::Script | Form::Body => {
            let function = read_object(ctx, bytecode).catch(ctx).map_err(describe)?;
            Ok((global_handler(ctx, interpreter, form, function)?, false))
        }
    }
}

/// Run a compiled script or body and find its handler.
fn global_handler<'js>(
    ctx: &Ctx<'js>,
    interpreter: &Interpreter,
    form: &Form,
    compiled: Value<'js>,
) -> Result<Function<'js>, String> {
    let value = eval_function(ctx, compiled).catch(ctx).map_err(describe)?;
    match form {
        Form::Body => value
            .into_function()
            .ok_or_else(|| "the function body did not compile to a function".to_owned()),
        _ => {
            let find_handler = restore(ctx, &interpreter.find_handler)?;
            find_handler
                .call::<_, Value>(())
                .catch(ctx)
                .map_err(describe)?
                .into_function()
                .ok_or_else(|| "`handler` must be a function".to_owned())
        }
    }
}

/// The module's handler, and whether it is a `fetch` handler (HTTP).
fn module_handler<'js>(
    ctx: &Ctx<'js>,
    interpreter: &Interpreter,
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
        let bind = restore(ctx, &interpreter.bind_fetch)?;
        let handler = bind.call((serve, exported)).catch(ctx).map_err(describe)?;
        return Ok((handler, true));
    }
    Err(
        "the module must export a function named `handler`, a default function, \
         or a default object with a `fetch` method"
            .into(),
    )
}

/// One of the interpreter's helpers, for this context.
fn restore<'js>(
    ctx: &Ctx<'js>,
    helper: &Persistent<Function<'static>>,
) -> Result<Function<'js>, String> {
    helper.clone().restore(ctx).map_err(|e| e.to_string())
}

fn invoke<'js>(ctx: &Ctx<'js>, handler: Function<'js>, input: &str) -> Result<String, String> {
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
