//! Messages between API servers and workers on `functions.execute.<id>`.
//!
//! JSON envelopes: the input and output are carried as raw JSON text
//! (`RawValue`) so neither side re-parses a payload it only forwards.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{FunctionError, FunctionId, Limits};

/// What a worker needs to run one invocation.
#[derive(Debug, Serialize, Deserialize)]
pub struct InvocationRequest {
    /// The function being invoked (for logs and error events).
    pub function_id: FunctionId,
    /// sha256 digest of the module in the `modules` object store.
    pub digest: String,
    /// Limits to run under.
    pub limits: Limits,
    /// Who invoked it.
    pub caller: String,
    /// The input JSON document.
    pub input: Box<RawValue>,
    /// How long the requester waits for the reply, in milliseconds (0:
    /// unknown). A worker that only gets to the request after this long
    /// skips it: nobody is waiting for the answer any more.
    #[serde(default)]
    pub wait_ms: u64,
}

/// A worker's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationReply {
    /// The function ran and answered.
    Ok(InvocationOutput),
    /// The function failed: its fault, reported to the caller.
    FunctionError(FunctionError),
    /// The worker could not run it (module missing, store unreachable...).
    PlatformError(String),
    /// The worker is at capacity with a full queue and did not take the
    /// request; trying again later (or another worker) may succeed.
    Overloaded(String),
}

/// A successful run.
#[derive(Debug, Serialize, Deserialize)]
pub struct InvocationOutput {
    /// The result JSON document.
    pub result: Box<RawValue>,
    /// Fuel burned.
    pub fuel_consumed: u64,
    /// Wall time spent in the engine, microseconds.
    pub duration_us: u64,
}
