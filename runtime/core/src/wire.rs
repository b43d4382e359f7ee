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

/// An asynchronous invocation, queued on `functions.jobs.<owner>.<id>`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    /// The record this job reports to, in the `invocations` bucket.
    pub record: InvocationRecord,
    /// What to run (its `wait_ms` is 0: nobody waits on a reply).
    pub request: InvocationRequest,
}

/// Where an asynchronous invocation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationStatus {
    /// Accepted, waiting for a worker (or for a retry).
    Queued,
    /// A worker is running it.
    Running,
    /// The function answered; `result` holds its output.
    Succeeded,
    /// The function failed, or the platform gave up on it; see `error`.
    Failed,
}

impl InvocationStatus {
    /// Whether the invocation is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// Why an asynchronous invocation failed: the same kinds and split between
/// the function's fault and the platform's as a synchronous error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedError {
    /// A function error kind (`timeout`, `trap`...) or a platform one
    /// (`worker_failed`).
    pub kind: String,
    /// Details.
    pub message: String,
    /// `function` or `platform`.
    pub source: String,
}

impl RecordedError {
    /// The platform's fault: `kind` names what failed (`worker_failed`,
    /// `unavailable`).
    pub fn platform(kind: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            message: message.into(),
            source: "platform".to_owned(),
        }
    }

    /// The function's fault, with its error kind.
    pub fn function(error: FunctionError) -> Self {
        Self {
            kind: error.kind.as_str().to_owned(),
            message: error.message,
            source: "function".to_owned(),
        }
    }
}

/// The state of one asynchronous invocation, kept in the `invocations`
/// bucket under `<owner>.<id>` (so only its owner can read it) and expiring
/// with the bucket's TTL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Unguessable invocation id (32 hex digits).
    pub id: String,
    /// The function invoked.
    pub function_id: FunctionId,
    /// Who invoked it; only they can read the record.
    pub owner: String,
    /// Where it stands.
    pub status: InvocationStatus,
    /// The output, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<RawValue>>,
    /// Why it failed (or, while queued again, why the last attempt failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordedError>,
    /// Fuel burned by the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_consumed: Option<u64>,
    /// Engine time of the last attempt, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// Attempts started so far.
    pub attempts: u64,
    /// RFC 3339 time it was accepted.
    pub created: String,
    /// RFC 3339 time of the last change.
    pub updated: String,
}

/// Whether `id` has the shape of an invocation id (32 lowercase hex digits),
/// so it is safe in a KV key and a subject.
pub fn is_invocation_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
