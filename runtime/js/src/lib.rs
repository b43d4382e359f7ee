//! JavaScript functions: source in, a script module for the platform's one
//! QuickJS interpreter out.
//!
//! The bundled shim (QuickJS compiled to `wasm32-wasip1`, see `shim/`) is
//! instrumented for wasmtime-wizer and compiled once per process; started
//! once and snapshotted, it is the *interpreter*: a WASI command module with
//! QuickJS already initialised, which the platform compiles to machine code
//! once (like any module, and shared as a sealed artifact). A function's
//! upload only compiles its source to QuickJS bytecode, in a fresh instance
//! of the shim, evaluating it once so that errors are refused at upload; the
//! result is a script module (see `nimbus_core::script`) naming the
//! interpreter. Nothing per function goes through Cranelift: an upload takes
//! milliseconds, and a worker's first call of a new function loads a few
//! kilobytes (the way Javy's dynamic linking works).
//!
//! The price: every invocation loads the bytecode and runs the source's top
//! level before calling the handler (per-function snapshots, which Nimbus
//! used before, ran it once at upload). That is cheap for the usual handler
//! and costs fuel for a top level that computes a lot; see ARCHITECTURE.md.
//!
//! Evaluating untrusted source at upload is guest execution too, so it runs
//! under its own fuel budget, memory cap and deadline.

use std::time::Duration;

use nimbus_core::script::ScriptModule;
use sha2::{Digest as _, Sha256};
use wasmtime::{
    Config, Engine, Instance, InstancePre, Linker, Store, StoreLimits, StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};
use wasmtime_wizer::{WasmtimeWizer, Wizer};

/// The QuickJS shim, built by `build.rs`.
pub static SHIM: &[u8] = include_bytes!(env!("NIMBUS_JS_SHIM_WASM"));

/// The shim's pre-initialisation entry point: starts QuickJS.
const INIT_FUNC: &str = "wizer-initialize";
/// The shim's entry point that compiles a source (on stdin) to a script.
const COMPILE_FUNC: &str = "nimbus-js-compile";
/// Largest script (bytecode) accepted from compiling a source.
const MAX_SCRIPT_BYTES: usize = 4 << 20;

/// Limits on evaluating a source at upload.
#[derive(Debug, Clone)]
pub struct InitLimits {
    /// Fuel for parsing and evaluating the source.
    pub fuel: u64,
    /// Linear memory cap, bytes.
    pub memory_bytes: usize,
    /// Wall-clock deadline.
    pub timeout: Duration,
    /// Largest accepted source, bytes.
    pub max_source_bytes: usize,
}

impl Default for InitLimits {
    fn default() -> Self {
        Self {
            fuel: 5_000_000_000,
            // The snapshot is as large as the memory the source fills, and a
            // module must stay under 8 MiB; this is plenty for that.
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(10),
            max_source_bytes: 1 << 20,
        }
    }
}

/// A compiled JavaScript function.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The script module: the function's bytecode, for the interpreter
    /// ([`JsCompiler::interpreter`]).
    pub module: Vec<u8>,
    /// The source is an HTTP handler (`export default { async
    /// fetch(request) {...} }`): on its URL it gets the request and answers
    /// a `Response`, through a JSON envelope on stdin and stdout (the
    /// engine's `serve`); called with JSON input (`execute`, jobs) it gets
    /// a `POST /` with the input as body and must answer 2xx with JSON.
    pub http: bool,
}

/// Why a source could not become a module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsError {
    /// The source does not parse or throws while being evaluated; the message
    /// carries the JavaScript error with its position (`function.js:LINE:COL`).
    #[error("{0}")]
    Source(String),
    /// Evaluating the source ran past a limit.
    #[error("{0}")]
    Limit(String),
    /// Something went wrong on our side.
    #[error("internal error while compiling JavaScript: {0}")]
    Internal(String),
}

struct InitState {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// What `fetch` answers while a source is evaluated at upload: the
/// platform's `nimbus_http` import is there (the interpreter imports it)
/// but sends nothing.
const NO_HTTP_AT_UPLOAD: &[u8] =
    br#"{"error":"outbound HTTP is not available while a function is uploaded"}"#;

/// What `Nimbus.kv` answers while a source is evaluated at upload.
const NO_KV_AT_UPLOAD: &[u8] = br#"{"error":{"kind":"unavailable","message":"key-value state is not available while a function is uploaded"}}"#;

/// The platform's imports for the uploading instance: `nimbus_http.send`
/// and `nimbus_kv.call` answer every request with a refusal.
fn add_http_refusals(linker: &mut Linker<InitState>) -> wasmtime::Result<()> {
    refuse(linker, "nimbus_http", "send", NO_HTTP_AT_UPLOAD)?;
    refuse(linker, "nimbus_kv", "call", NO_KV_AT_UPLOAD)
}

/// `module.send` (answering the refusal's length) and `module.read`
/// (copying it).
fn refuse(
    linker: &mut Linker<InitState>,
    module: &str,
    send: &str,
    refusal: &'static [u8],
) -> wasmtime::Result<()> {
    linker.func_wrap(module, send, move |_: i32, _: i32| refusal.len() as i32)?;
    linker.func_wrap(
        module,
        "read",
        move |mut caller: wasmtime::Caller<'_, InitState>,
              ptr: i32,
              len: i32|
              -> wasmtime::Result<i32> {
            let n = refusal.len().min(len.max(0) as usize);
            let memory = caller
                .get_export("memory")
                .and_then(|e| e.into_memory())
                .ok_or_else(|| wasmtime::Error::msg("no memory"))?;
            memory.write(&mut caller, ptr as u32 as usize, &refusal[..n])?;
            Ok(n as i32)
        },
    )?;
    Ok(())
}

/// Turns JavaScript sources into script modules. Build one per process and
/// share it: [`JsCompiler::start`] compiles the shim (about a second) and
/// makes the interpreter.
pub struct JsCompiler {
    engine: Engine,
    pre: InstancePre<InitState>,
    interpreter: Vec<u8>,
    interpreter_digest: String,
    limits: InitLimits,
}

fn internal(error: impl std::fmt::Display) -> JsError {
    JsError::Internal(error.to_string())
}

fn text(pipe: &MemoryOutputPipe) -> String {
    String::from_utf8_lossy(&pipe.contents()).trim().to_owned()
}

impl JsCompiler {
    /// Instrument and compile the shim (on a blocking thread), then start it
    /// and snapshot the interpreter.
    pub async fn start(limits: InitLimits) -> Result<Self, JsError> {
        let (engine, pre, wizer, context) = tokio::task::spawn_blocking(|| {
            let mut config = Config::new();
            config.consume_fuel(true);
            let engine = Engine::new(&config).map_err(internal)?;
            let mut wizer = Wizer::new();
            wizer.init_func(INIT_FUNC);
            let (context, instrumented) = wizer.instrument(SHIM).map_err(internal)?;
            let module = wasmtime::Module::new(&engine, &instrumented).map_err(internal)?;
            let mut linker = Linker::new(&engine);
            wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut InitState| {
                &mut state.wasi
            })
            .map_err(internal)?;
            add_http_refusals(&mut linker).map_err(internal)?;
            let pre = linker.instantiate_pre(&module).map_err(internal)?;
            Ok::<_, JsError>((engine, pre, wizer, context))
        })
        .await
        .map_err(internal)??;
        let mut compiler = Self {
            engine,
            pre,
            interpreter: Vec::new(),
            interpreter_digest: String::new(),
            limits,
        };
        let stdout = MemoryOutputPipe::new(64);
        let stderr = MemoryOutputPipe::new(64 << 10);
        let (mut store, instance) = compiler.started("", &stdout, &stderr).await?;
        let interpreter = wizer
            .snapshot(
                &context,
                &mut WasmtimeWizer {
                    store: &mut store,
                    instance,
                },
            )
            .await
            .map_err(internal)?;
        compiler.interpreter_digest = hex::encode(Sha256::digest(&interpreter));
        compiler.interpreter = interpreter;
        Ok(compiler)
    }

    /// The interpreter every compiled function names: a WASI command module
    /// (about 1 MB) with QuickJS started. The platform stores and compiles
    /// it like any module.
    pub fn interpreter(&self) -> &[u8] {
        &self.interpreter
    }

    /// The interpreter's digest (sha256, lowercase hex).
    pub fn interpreter_digest(&self) -> &str {
        &self.interpreter_digest
    }

    /// A fresh instance of the shim with `stdin`, started (QuickJS up),
    /// under the limits; the fuel and deadline left are what compiling gets.
    async fn started(
        &self,
        stdin: &str,
        stdout: &MemoryOutputPipe,
        stderr: &MemoryOutputPipe,
    ) -> Result<(Store<InitState>, Instance), JsError> {
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(stdin.to_owned()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build_p1();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, InitState { wasi, limits });
        store.limiter(|state| &mut state.limits);
        store.set_fuel(self.limits.fuel).map_err(internal)?;
        // Yielding lets the timeout below interrupt an endless top-level loop.
        store
            .fuel_async_yield_interval(Some(1_000_000))
            .map_err(internal)?;
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(internal)?;
        let init = instance
            .get_typed_func::<(), ()>(&mut store, INIT_FUNC)
            .map_err(internal)?;
        init.call_async(&mut store, ()).await.map_err(|e| {
            JsError::Internal(format!("cannot start QuickJS: {e:#}: {}", text(stderr)))
        })?;
        Ok((store, instance))
    }

    /// Compile `source` to a script module.
    pub async fn compile(&self, source: &str) -> Result<Vec<u8>, JsError> {
        self.compile_function(source).await.map(|c| c.module)
    }

    /// [`JsCompiler::compile`], saying also whether the source is an HTTP
    /// handler (`export default { fetch }`).
    pub async fn compile_function(&self, source: &str) -> Result<Compiled, JsError> {
        if source.len() > self.limits.max_source_bytes {
            return Err(JsError::Limit(format!(
                "the source is {} bytes, the limit is {}",
                source.len(),
                self.limits.max_source_bytes
            )));
        }
        let stdout = MemoryOutputPipe::new(MAX_SCRIPT_BYTES);
        let stderr = MemoryOutputPipe::new(64 << 10);
        let compiled = async {
            let (mut store, instance) = self.started(source, &stdout, &stderr).await?;
            let compile = instance
                .get_typed_func::<(), ()>(&mut store, COMPILE_FUNC)
                .map_err(internal)?;
            Ok::<_, JsError>(compile.call_async(&mut store, ()).await)
        };
        let outcome = tokio::time::timeout(self.limits.timeout, compiled).await;
        match outcome {
            Err(_) => {
                return Err(JsError::Limit(format!(
                    "evaluating the source took longer than {} ms",
                    self.limits.timeout.as_millis()
                )));
            }
            Ok(Err(error)) => return Err(error),
            Ok(Ok(Err(error))) => {
                return Err(match error.downcast_ref::<I32Exit>() {
                    Some(I32Exit(1)) => JsError::Source(text(&stderr)),
                    Some(_) => JsError::Limit(format!(
                        "the compiled source is larger than {MAX_SCRIPT_BYTES} bytes"
                    )),
                    None if matches!(error.downcast_ref::<Trap>(), Some(Trap::OutOfFuel)) => {
                        JsError::Limit(format!(
                            "evaluating the source used more than {} fuel",
                            self.limits.fuel
                        ))
                    }
                    None => JsError::Limit(format!("evaluating the source failed: {error:#}")),
                });
            }
            Ok(Ok(Ok(()))) => {}
        }
        let output = stdout.contents();
        let Some((&http, script)) = output.split_first() else {
            return Err(internal("the shim wrote no script"));
        };
        let module = ScriptModule {
            interpreter: &self.interpreter_digest,
            script,
        }
        .encode();
        Ok(Compiled {
            module,
            http: http == 1,
        })
    }
}
