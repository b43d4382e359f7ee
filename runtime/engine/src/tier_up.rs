//! Tiering a hot JavaScript function up to a snapshot of its own, at the
//! same fuel.
//!
//! A script module runs on its interpreter, and every invocation first runs
//! `nimbus-js-prepare`: it reads the function's bytecode, runs its top level
//! and finds the handler, before `nimbus-js-run` reads the input and calls
//! the handler. That first half is the same work on every call. A worker
//! can have it done once: [`Engine::prepare_script`] runs it in an instance
//! of the interpreter (instrumented by wasmtime-wizer), snapshots that
//! instance into a module of its own, and compiles it (Cranelift's code
//! cache makes that cheap: the code is the interpreter's, only the memory
//! differs). Invocations of the *prepared* module call only
//! `nimbus-js-run`.
//!
//! Fuel stays exactly what it was, which is what makes this safe to do
//! behind a function's back:
//! - `nimbus-js-prepare` reads nothing of the input (it reads the script
//!   unbuffered, to its last byte), so what it does, and the fuel it burns,
//!   is the same on every call; that fuel is measured once, here, and
//!   charged to every invocation of the prepared module before it runs.
//! - The snapshot holds the state right after `nimbus-js-prepare` (memory
//!   and globals), so `nimbus-js-run` starts from the state it starts from
//!   unprepared, and burns the same fuel.
//! - A top level that reads anything that may differ between calls (the
//!   clock, randomness, the environment, outbound HTTP, key-value state)
//!   or writes anything (logs) cannot be snapshotted without changing what
//!   the function does: it is refused ([`TierUpError::Impure`]) and the
//!   function stays as it is.
//! - Before a prepared module is handed out, it runs once beside its script
//!   on the same input, and must end the same way at the same fuel.
//! - Preparing runs under the function's own limits, so it costs no more
//!   than one of its calls. Under limits that the preparation alone exceeds
//!   (less fuel than it burns, less memory than the snapshot starts with),
//!   invocations run the script module as it is, and fail exactly where
//!   they would have.
//! - Trap messages of scripts, prepared or not, carry no wasm backtrace:
//!   its offsets are the interpreter's, which moved in the snapshot (and
//!   mean nothing to the author of a JavaScript function).
//! - What is not covered: the deadline is wall-clock time, and a prepared
//!   call, which skips the top level, takes less of it.

use std::sync::Arc;

use bytes::Bytes;
use nimbus_core::Limits;
use wasmtime::{InstancePre, Linker};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wizer::{WasmtimeWizer, Wizer};

use crate::invoke::Host;
use crate::module::{Code, Entry, Prepared};
use crate::pipe::{CappedPipe, Overflow};
use crate::spent_segments::without_spent_segments;
use crate::{Abi, Capabilities, CompileError, CompiledModule, Engine, digest};

/// The interpreter's export that loads a script and finds its handler.
pub(crate) const PREPARE: &str = "nimbus-js-prepare";
/// The interpreter's export that calls the handler with the input.
pub(crate) const RUN: &str = "nimbus-js-run";

/// The input a prepared module is checked with against its script.
const CHECK_INPUT: &[u8] = b"null";

/// Why a script was not prepared.
#[derive(Debug, thiserror::Error)]
pub enum TierUpError {
    /// The module is not a script whose interpreter can prepare it.
    #[error("the module is not a script its interpreter can prepare")]
    NotPreparable,
    /// The interpreter's bytes are not the interpreter the script names.
    #[error("the interpreter given has digest {actual}, the script names {expected}")]
    WrongInterpreter {
        /// The digest the script names.
        expected: String,
        /// The digest of the bytes given.
        actual: String,
    },
    /// The top level reads or writes something that may differ between
    /// calls; a snapshot would change what the function does.
    #[error("the script's top level {0}")]
    Impure(&'static str),
    /// Preparing failed: the top level threw or ran out of a limit (the
    /// function's own: preparing costs no more than a call).
    #[error("preparing the script failed: {0}")]
    Failed(String),
    /// The prepared module did not answer as its script does.
    #[error("the prepared module differs from its script: {0}")]
    Differs(String),
    /// Compiling the snapshot failed.
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// Marks a refused call made while a script is prepared.
#[derive(Debug)]
struct ImpureCall(&'static str);

impl std::fmt::Display for ImpureCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ImpureCall {}

impl Engine {
    /// Prepare `script` (see the module docs) under the function's
    /// `limits` (preparing costs no more than one of its calls): a module to
    /// run in its place, at the same fuel, which the caller may put in the
    /// cache with [`Engine::promote`]. `interpreter` is the binary of the
    /// interpreter the script names. Compiles on the low-priority compile
    /// pool.
    pub async fn prepare_script(
        &self,
        script: &Arc<CompiledModule>,
        interpreter: Bytes,
        limits: &Limits,
    ) -> Result<Arc<CompiledModule>, TierUpError> {
        let Some(expected) = script.preparable_on() else {
            return Err(TierUpError::NotPreparable);
        };
        let actual = digest(&interpreter);
        if actual != expected {
            return Err(TierUpError::WrongInterpreter {
                expected: expected.to_owned(),
                actual,
            });
        }
        let Code::Core {
            entry: Entry::Script { prefix, .. },
            ..
        } = &script.code
        else {
            unreachable!("a preparable module is a script");
        };
        let mut wizer = Wizer::new();
        wizer.init_func(PREPARE);
        let (context, instrumented) = wizer
            .instrument(&interpreter)
            .map_err(|e| TierUpError::Failed(format!("{e:#}")))?;
        let pre = self.instrumented(expected, instrumented).await?;

        let stdout = CappedPipe::new(1, Overflow::Discard);
        let stderr = CappedPipe::new(1, Overflow::Discard);
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(prefix.clone()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build_p1();
        let host = Host::new(Some(wasi), limits, &Capabilities::default());
        let consume_fuel = self.inner.config.consume_fuel;
        let run = self
            .metered(host, Host::limiter, limits, async |store| {
                let instance = pre.instantiate_async(&mut *store).await?;
                let prepare = instance.get_typed_func::<(), ()>(&mut *store, PREPARE)?;
                prepare.call_async(&mut *store, ()).await?;
                let fuel = if consume_fuel {
                    limits.fuel - store.get_fuel()?
                } else {
                    0
                };
                let memory = instance
                    .get_memory(&mut *store, "memory")
                    .map_or(0, |memory| memory.data_size(&*store) as u64);
                let snapshot = wizer
                    .snapshot(&context, &mut WasmtimeWizer { store, instance })
                    .await?;
                Ok((snapshot, fuel, memory))
            })
            .await;
        let (snapshot, fuel, memory_bytes) = match run.result {
            Ok(done) => done,
            Err(Some(error)) => {
                return Err(match error.downcast_ref::<ImpureCall>() {
                    Some(ImpureCall(what)) => TierUpError::Impure(what),
                    None => TierUpError::Failed(format!("{error:#}")),
                });
            }
            Err(None) => return Err(TierUpError::Failed("it timed out".into())),
        };
        if !stdout.take().is_empty() || !stderr.take().is_empty() || stderr.overflowed() {
            return Err(TierUpError::Impure("writes output or logs"));
        }

        let snapshot = without_spent_segments(&snapshot).unwrap_or(snapshot);
        let module = self.compile_snapshot_code(snapshot).await?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&module)
            .map_err(|e| TierUpError::Failed(format!("{e:#}")))?;
        let prepared = Arc::new(CompiledModule {
            digest: script.digest.clone(),
            abi: Abi::Command,
            code: Code::Core {
                module,
                pre,
                imports_wasi: true,
                entry: Entry::Prepared(Prepared {
                    fuel,
                    memory_bytes,
                    script: script.clone(),
                }),
            },
        });
        self.check_prepared(script, &prepared, limits).await?;
        Ok(prepared)
    }

    /// Put `module` in the cache under its digest, in place of what is
    /// there: a prepared script replaces its script module. False when the
    /// cache cannot hold it (it alone is larger than the cache).
    pub fn promote(&self, module: Arc<CompiledModule>) -> bool {
        self.inner
            .cache
            .lock()
            .expect("cache lock")
            .insert(module.digest.clone(), module)
    }

    /// The instrumented interpreter `digest`, pre-linked with the
    /// preparing linker: compiled on its first preparation, then kept (the
    /// instrumentation is the same every time).
    async fn instrumented(
        &self,
        digest: &str,
        wasm: Vec<u8>,
    ) -> Result<InstancePre<Host>, TierUpError> {
        let kept = {
            let kept = self.inner.instrumented.lock().expect("instrumented lock");
            kept.as_ref()
                .filter(|(kept, _)| kept == digest)
                .map(|(_, pre)| pre.clone())
        };
        if let Some(pre) = kept {
            return Ok(pre);
        }
        let module = self.compile_snapshot_code(wasm).await?;
        let pre = self
            .preparing_linker()
            .and_then(|linker| linker.instantiate_pre(&module))
            .map_err(|e| TierUpError::Failed(format!("{e:#}")))?;
        // One interpreter at a time: the platform's current one.
        *self.inner.instrumented.lock().expect("instrumented lock") =
            Some((digest.to_owned(), pre.clone()));
        Ok(pre)
    }

    /// Compile the interpreter's code with a new memory (the instrumented
    /// interpreter, or a snapshot of it): in this process, like the
    /// interpreter itself, whose code it is, on the low-priority pool.
    async fn compile_snapshot_code(&self, wasm: Vec<u8>) -> Result<wasmtime::Module, CompileError> {
        self.compile_job(move |engine| {
            wasmtime::Module::new(&engine.inner.wasmtime, &wasm)
                .map_err(|e| CompileError::Invalid(format!("{e:#}")))
        })
        .await?
    }

    /// The engine's linker, with every import through which a top level
    /// could read something that differs between calls refused.
    fn preparing_linker(&self) -> wasmtime::Result<Linker<Host>> {
        let mut linker = self.inner.linker.clone();
        linker.allow_shadowing(true);
        const WASI: &str = "wasi_snapshot_preview1";
        let clock = "reads the clock (Date, performance)";
        linker.func_wrap(WASI, "clock_time_get", move |_: i32, _: i64, _: i32| {
            impure::<i32>(clock)
        })?;
        let random = "draws random numbers";
        linker.func_wrap(WASI, "random_get", move |_: i32, _: i32| {
            impure::<i32>(random)
        })?;
        let env = "reads the environment (process.env)";
        for name in ["environ_get", "environ_sizes_get"] {
            linker.func_wrap(WASI, name, move |_: i32, _: i32| impure::<i32>(env))?;
        }
        let http = "calls out over HTTP";
        linker.func_wrap("nimbus_http", "send", move |_: i32, _: i32| {
            impure::<i32>(http)
        })?;
        let kv = "uses key-value state";
        linker.func_wrap("nimbus_kv", "call", move |_: i32, _: i32| impure::<i32>(kv))?;
        Ok(linker)
    }

    /// Run `prepared` and its `script` on the same input under `limits`:
    /// the same fuel and the same kind of ending, or the prepared module is
    /// not used. (Not the same output: a handler may answer the time.)
    async fn check_prepared(
        &self,
        script: &CompiledModule,
        prepared: &CompiledModule,
        limits: &Limits,
    ) -> Result<(), TierUpError> {
        let input = Bytes::from_static(CHECK_INPUT);
        let expected = self.invoke(script, input.clone(), limits).await;
        let actual = self.invoke(prepared, input, limits).await;
        let ending = |outcome: &crate::Outcome| match &outcome.result {
            Ok(_) => "an answer".to_owned(),
            Err(error) => format!("{:?}", error.kind),
        };
        if expected.fuel_consumed != actual.fuel_consumed {
            return Err(TierUpError::Differs(format!(
                "fuel {} prepared, {} as a script",
                actual.fuel_consumed, expected.fuel_consumed
            )));
        }
        if ending(&expected) != ending(&actual) {
            return Err(TierUpError::Differs(format!(
                "it ended with {} where the script ended with {}",
                ending(&actual),
                ending(&expected)
            )));
        }
        Ok(())
    }
}

/// A refused import's answer: a trap the preparation recognises.
fn impure<R>(what: &'static str) -> wasmtime::Result<R> {
    Err(wasmtime::Error::new(ImpureCall(what)))
}
