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

/// `error` and its sources, outermost first: "a: b: c", for a message shown
/// at an edge (an HTTP answer, a worker's reply). Some errors print their
/// source in their own message already; a cause whose text is already there
/// is not repeated.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whose fault a failed invocation was: the guest's, or the platform's.
/// Stable strings on the wire, in records and in HTTP bodies (`"source"`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorSource {
    /// The function failed: a [`FunctionErrorKind`].
    Function,
    /// The platform could not run it: a [`PlatformErrorKind`].
    Platform,
}

impl ErrorSource {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Platform => "platform",
        }
    }
}

impl fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the platform could not run an invocation; stable strings on the wire
/// and in HTTP bodies. The API maps each to its status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformErrorKind {
    /// A worker took the invocation and could not run it (module missing,
    /// limits it refuses, an unreadable request).
    WorkerFailed,
    /// No worker is subscribed.
    NoWorker,
    /// No worker answered within the deadline and its grace.
    WorkerTimeout,
    /// The worker that got it was at capacity with a full queue.
    Overloaded,
    /// JetStream was unreachable, or refused for longer than the failover wait.
    Unavailable,
}

impl PlatformErrorKind {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WorkerFailed => "worker_failed",
            Self::NoWorker => "no_worker",
            Self::WorkerTimeout => "worker_timeout",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for PlatformErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of any invocation failure: the function's or the platform's.
/// Serialised as its bare snake_case name (`"trap"`, `"worker_failed"`); the
/// two sets of names are disjoint, so the name alone says which it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorKind {
    /// The guest's fault.
    Function(FunctionErrorKind),
    /// The platform's.
    Platform(PlatformErrorKind),
}

impl ErrorKind {
    /// Whose fault it is.
    pub fn source(self) -> ErrorSource {
        match self {
            Self::Function(_) => ErrorSource::Function,
            Self::Platform(_) => ErrorSource::Platform,
        }
    }

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Function(kind) => kind.as_str(),
            Self::Platform(kind) => kind.as_str(),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_travel_as_their_bare_names() {
        let kinds = [
            ErrorKind::Function(FunctionErrorKind::OutOfFuel),
            ErrorKind::Platform(PlatformErrorKind::WorkerFailed),
        ];
        for kind in kinds {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<ErrorKind>(&json).unwrap(), kind);
        }
        assert_eq!(
            ErrorKind::Platform(PlatformErrorKind::Unavailable).source(),
            ErrorSource::Platform
        );
    }
}
