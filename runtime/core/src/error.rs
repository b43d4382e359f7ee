//! How a function can fail.
//!
//! A *function* error is the guest's fault (it trapped, ran out of fuel, wrote
//! garbage) and is reported to the caller as such; it is never confused with a
//! *platform* failure (no worker, NATS down), which the API maps separately.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of a function failure; stable strings on the wire and in HTTP bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionErrorKind {
    /// The fuel budget ran out.
    OutOfFuel,
    /// The guest asked for more linear memory or table space than allowed.
    MemoryLimit,
    /// The wall-clock deadline passed.
    Timeout,
    /// A WebAssembly trap: `unreachable`, stack overflow, out-of-bounds access...
    Trap,
    /// A WASI command exited with a non-zero code.
    Exit,
    /// The guest wrote more than the output cap to stdout.
    OutputTooLarge,
    /// The guest's output is not what the ABI promises (not JSON, wrong type).
    InvalidOutput,
    /// The input cannot be given to this function (too large, wrong shape for its ABI).
    InvalidInput,
}

impl FunctionErrorKind {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfFuel => "out_of_fuel",
            Self::MemoryLimit => "memory_limit",
            Self::Timeout => "timeout",
            Self::Trap => "trap",
            Self::Exit => "exit",
            Self::OutputTooLarge => "output_too_large",
            Self::InvalidOutput => "invalid_output",
            Self::InvalidInput => "invalid_input",
        }
    }
}

impl fmt::Display for FunctionErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A function failure: its kind, a human-readable message, and the fuel burned
/// before it stopped (a failed invocation still costs what it ran).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct FunctionError {
    /// What went wrong.
    pub kind: FunctionErrorKind,
    /// Details for the function's author.
    pub message: String,
    /// Fuel consumed up to the failure.
    #[serde(default)]
    pub fuel_consumed: u64,
}

impl FunctionError {
    /// A failure with no fuel accounted yet.
    pub fn new(kind: FunctionErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            fuel_consumed: 0,
        }
    }
}
