//! JavaScript functions: source in, an ordinary WASI-command module out.
//!
//! The bundled shim (QuickJS compiled to `wasm32-wasip1`, see `shim/`) is
//! instrumented for wasmtime-wizer and compiled once per process. Each upload
//! instantiates it, feeds the source to its `wizer-initialize` export (which
//! parses and evaluates it and keeps the handler), and snapshots the instance
//! into a new module. Workers run that module like any other: they need no
//! JavaScript knowledge, and an invocation skips QuickJS start-up and parsing
//! entirely.
//!
//! Evaluating untrusted source at upload is guest execution too, so it runs
//! under its own fuel budget, memory cap and deadline.

use std::time::Duration;

use wasmtime::{Config, Engine, InstancePre, Linker, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};
use wasmtime_wizer::{ModuleContext, WasmtimeWizer, Wizer};

/// The QuickJS shim, built by `build.rs`.
pub static SHIM: &[u8] = include_bytes!(env!("NIMBUS_JS_SHIM_WASM"));

/// The shim's pre-initialisation entry point.
const INIT_FUNC: &str = "wizer-initialize";

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
    /// The snapshotted WASI command module.
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

/// Turns JavaScript sources into pre-initialised modules. Build one per
/// process and share it: construction compiles the shim (about a second).
pub struct JsCompiler {
    engine: Engine,
    pre: InstancePre<InitState>,
    context: ModuleContext<'static>,
    wizer: Wizer,
    limits: InitLimits,
}

fn internal(error: impl std::fmt::Display) -> JsError {
    JsError::Internal(error.to_string())
}

impl JsCompiler {
    /// Instrument and compile the shim. CPU-bound: call from a blocking context.
    pub fn new(limits: InitLimits) -> Result<Self, JsError> {
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
        let pre = linker.instantiate_pre(&module).map_err(internal)?;
        Ok(Self {
            engine,
            pre,
            context,
            wizer,
            limits,
        })
    }

    /// Evaluate `source` in the shim and snapshot the result into a module
    /// that exports `_start` (the WASI command ABI).
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
        let stderr = MemoryOutputPipe::new(64 << 10);
        // The shim says `fetch` here when the source is an HTTP handler.
        let stdout = MemoryOutputPipe::new(64);
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(source.to_owned()))
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
        let outcome =
            tokio::time::timeout(self.limits.timeout, init.call_async(&mut store, ())).await;
        let error_text = || {
            String::from_utf8_lossy(&stderr.contents())
                .trim()
                .to_owned()
        };
        match outcome {
            Err(_) => {
                return Err(JsError::Limit(format!(
                    "evaluating the source took longer than {} ms",
                    self.limits.timeout.as_millis()
                )));
            }
            Ok(Err(error)) => {
                return Err(match error.downcast_ref::<I32Exit>() {
                    Some(_) => JsError::Source(error_text()),
                    None if matches!(error.downcast_ref::<Trap>(), Some(Trap::OutOfFuel)) => {
                        JsError::Limit(format!(
                            "evaluating the source used more than {} fuel",
                            self.limits.fuel
                        ))
                    }
                    None => JsError::Limit(format!("evaluating the source failed: {error:#}")),
                });
            }
            Ok(Ok(())) => {}
        }
        let module = self
            .wizer
            .snapshot(
                &self.context,
                &mut WasmtimeWizer {
                    store: &mut store,
                    instance,
                },
            )
            .await
            .map_err(internal)?;
        Ok(Compiled {
            module,
            http: &stdout.contents()[..] == b"fetch",
        })
    }
}
