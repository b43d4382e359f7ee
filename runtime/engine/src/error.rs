//! Why things fail: a module refused at compile time, and an invocation's
//! failure named precisely from whatever stopped the guest.

use nimbus_core::{FunctionError, FunctionErrorKind, Limits};
use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

use crate::limiter::LimitExceeded;
use crate::pipe::OutputOverflow;

/// Why a module was refused at compile time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// Larger than [`EngineConfig::max_module_bytes`](crate::EngineConfig::max_module_bytes).
    #[error("module is {size} bytes, the limit is {max}")]
    TooLarge {
        /// Size of what was uploaded.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Neither a wasm binary nor valid WAT text.
    #[error("not a WebAssembly module: {0}")]
    NotWasm(String),
    /// A wasm binary that does not validate.
    #[error("invalid WebAssembly module: {0}")]
    Invalid(String),
    /// Valid WebAssembly, but it uses a proposal the platform does not
    /// enable (see `features.rs`); names the proposal.
    #[error("the module uses {0}, which Nimbus does not enable")]
    UnsupportedFeature(&'static str),
    /// Over the compile budget: the static limits checked before compiling
    /// (see `compile_budget.rs`), or the time or memory a compile may take.
    #[error("the module exceeds the compile budget: {0}")]
    OverBudget(String),
    /// Imports something other than WASI preview 1 functions.
    #[error("forbidden import {0}")]
    ForbiddenImport(String),
    /// No entry point the platform knows how to call.
    #[error("no entry point: {0}")]
    NoEntryPoint(String),
    /// Could never run under the limits it would get.
    #[error("the module cannot run within its limits: {0}")]
    ExceedsLimits(String),
    /// A precompiled artifact this engine cannot load.
    #[error("unusable precompiled artifact: {0}")]
    Artifact(String),
    /// A script module names an interpreter this engine has not loaded (see
    /// `nimbus_core::script`): load the interpreter, then compile again.
    #[error("unknown interpreter {0}")]
    MissingInterpreter(String),
    /// The compile crashed (a bug on our side, not the module's fault).
    #[error("the compiler failed: {0}")]
    Panicked(String),
}

/// The error a guest past its deadline is stopped with.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
pub(crate) struct DeadlineExceeded;

pub(crate) fn output_too_large(limits: &Limits) -> FunctionError {
    FunctionError::new(
        FunctionErrorKind::OutputTooLarge,
        format!(
            "output exceeds the limit of {} bytes",
            limits.max_output_bytes
        ),
    )
}

/// Name the failure precisely: the limit that stopped the guest, the trap it
/// hit, or its exit code (with the tail of its stderr, where the Rust SDK
/// writes the error it returned).
pub(crate) fn classify(
    error: wasmtime::Error,
    output_overflowed: bool,
    limits: &Limits,
    logs: &[u8],
) -> FunctionError {
    use FunctionErrorKind as Kind;
    if output_overflowed || error.is::<OutputOverflow>() {
        return output_too_large(limits);
    }
    if let Some(exceeded) = error.downcast_ref::<LimitExceeded>() {
        return FunctionError::new(Kind::MemoryLimit, exceeded.to_string());
    }
    if error.is::<DeadlineExceeded>() {
        return FunctionError::new(
            Kind::Timeout,
            format!("deadline of {} ms exceeded", limits.timeout_ms),
        );
    }
    if let Some(I32Exit(code)) = error.downcast_ref::<I32Exit>() {
        let tail = String::from_utf8_lossy(&logs[logs.len().saturating_sub(1024)..]);
        let tail = tail.trim();
        let message = if tail.is_empty() {
            format!("exited with code {code}")
        } else {
            format!("exited with code {code}: {tail}")
        };
        return FunctionError::new(Kind::Exit, message);
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => FunctionError::new(
                Kind::OutOfFuel,
                format!("fuel budget of {} exhausted", limits.fuel),
            ),
            Trap::Interrupt => FunctionError::new(
                Kind::Timeout,
                format!("deadline of {} ms exceeded", limits.timeout_ms),
            ),
            Trap::StackOverflow => FunctionError::new(
                Kind::Trap,
                format!("stack overflow: {}", trap_message(trap, &error)),
            ),
            other => FunctionError::new(Kind::Trap, trap_message(other, &error)),
        };
    }
    if let Some(function_error) = error.downcast_ref::<FunctionError>() {
        return function_error.clone();
    }
    FunctionError::new(Kind::Trap, format!("{error:#}"))
}

/// A trap without the wasm backtrace wasmtime attached to it.
pub(crate) fn without_backtrace(error: wasmtime::Error) -> wasmtime::Error {
    match error.downcast_ref::<Trap>() {
        Some(trap) => wasmtime::Error::new(*trap),
        None => error,
    }
}

fn trap_message(trap: &Trap, error: &wasmtime::Error) -> String {
    match error.downcast_ref::<wasmtime::WasmBacktrace>() {
        Some(backtrace) => format!("{trap}\n{backtrace}"),
        None => trap.to_string(),
    }
}
