//! Asynchronous invocations: the job queued on `functions.jobs.<owner>.<id>`
//! (the `FUNCTION_JOBS` work-queue stream) and the record that follows it in
//! the `invocations` bucket.
//!
//! Jobs are durable: a job queued by one release may be run by the next, so
//! their JSON shape only ever gains optional fields.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    ErrorKind, ErrorSource, FunctionError, FunctionId, Limits, PlatformErrorKind, Username,
};

use super::Call;

/// An asynchronous invocation, queued on `functions.jobs.<owner>.<id>`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    /// The record this job reports to, in the `invocations` bucket.
    pub record: InvocationRecord,
    /// What to run.
    pub request: JobRequest,
}

/// What a job runs: the call and its input, as one JSON document.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobRequest {
    /// The function being invoked.
    pub function_id: FunctionId,
    /// sha256 digest of the module in the `modules` object store.
    pub digest: String,
    /// Limits to run under.
    pub limits: Limits,
    /// Who invoked it.
    pub caller: Username,
    /// The input JSON document.
    pub input: Box<RawValue>,
    /// How long the requester waits for a reply, in milliseconds: 0 for a
    /// job (nobody waits). The previous synchronous envelope had this very
    /// shape (see [`super::legacy`]).
    #[serde(default)]
    pub wait_ms: u64,
    /// The function's environment as it was when the job was queued,
    /// sealed ([`super::Call::env`]), in base64. A job runs with the code,
    /// limits and configuration its function had when it was queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The function's `allowed_outbound_hosts` when it was queued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<String>,
    /// The key-value grant for the stores its function declared, valid
    /// until the job's record expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<String>,
    /// The trace it belongs to (a `traceparent` value, the API server's
    /// span as parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl JobRequest {
    /// The call to make, and its input.
    pub fn into_call(self) -> (Call, Bytes) {
        let input = Bytes::copy_from_slice(self.input.get().as_bytes());
        use base64::Engine as _;
        // Bytes that are not base64 are passed on as they are: they do not
        // open, and the worker reports the environment unreadable.
        let env = self.env.map(|env| {
            base64::engine::general_purpose::STANDARD
                .decode(&env)
                .unwrap_or_else(|_| env.into_bytes())
                .into()
        });
        let call = Call {
            function_id: self.function_id,
            digest: self.digest,
            limits: self.limits,
            caller: self.caller,
            wait_ms: self.wait_ms,
            http: None,
            env,
            outbound: self.outbound,
            kv: self.kv,
            invocation: None,
            trace: None,
        }
        .with_context(None, self.trace.as_deref());
        (call, input)
    }
}

/// Where an asynchronous invocation stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedError {
    /// A function error kind (`timeout`, `trap`...) or a platform one
    /// (`worker_failed`).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: ErrorKind,
    /// Details.
    pub message: String,
    /// Whose fault it was (follows from `kind`; written out for readers).
    pub source: ErrorSource,
}

impl RecordedError {
    /// The platform's fault: `kind` names what failed.
    pub fn platform(kind: PlatformErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Platform(kind),
            message: message.into(),
            source: ErrorSource::Platform,
        }
    }

    /// The function's fault, with its error kind.
    pub fn function(error: FunctionError) -> Self {
        Self {
            kind: ErrorKind::Function(error.kind),
            message: error.message,
            source: ErrorSource::Function,
        }
    }
}

/// The state of one asynchronous invocation, kept in the `invocations` bucket
/// under `<owner>.<id>` (so only its owner can read it) and expiring with the
/// bucket's TTL.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Unguessable invocation id (32 hex digits).
    pub id: String,
    /// The function invoked.
    pub function_id: FunctionId,
    /// Who invoked it; only they can read the record.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub owner: Username,
    /// Where it stands.
    pub status: InvocationStatus,
    /// The output, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
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
    /// The trace it belongs to (32 hex digits), as the client's
    /// `traceparent` named it or the API server started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// RFC 3339 time it was accepted.
    pub created: String,
    /// RFC 3339 time of the last change.
    pub updated: String,
}

impl InvocationRecord {
    /// A record of `owner`'s invocation `id` of `function_id`, just accepted
    /// at `now` (RFC 3339): queued, no attempt yet.
    pub fn queued(id: String, function_id: FunctionId, owner: Username, now: String) -> Self {
        Self {
            id,
            function_id,
            owner,
            status: InvocationStatus::Queued,
            result: None,
            error: None,
            fuel_consumed: None,
            duration_us: None,
            attempts: 0,
            trace_id: None,
            created: now.clone(),
            updated: now,
        }
    }
}

/// Whether `id` has the shape of an invocation id (32 lowercase hex digits),
/// so it is safe in a KV key and a subject.
pub fn is_invocation_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_sealed_environment_reaches_its_call() {
        let request = |env: Option<&str>| JobRequest {
            function_id: 3,
            digest: "d".into(),
            limits: Limits::DEFAULT,
            caller: Username::parse("ada").unwrap(),
            input: RawValue::from_string("1".into()).unwrap(),
            wait_ms: 0,
            env: env.map(str::to_owned),
            outbound: Vec::new(),
            kv: None,
            trace: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let (call, _) = request(Some("c2VhbGVk")).into_call();
        assert_eq!(
            call.trace.map(|t| t.trace_id_hex()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            "the job's trace reaches its call"
        );
        assert_eq!(call.env.as_deref(), Some(&b"sealed"[..]));
        let (call, _) = request(Some("not base64!")).into_call();
        assert_eq!(
            call.env.as_deref(),
            Some(&b"not base64!"[..]),
            "passed on, to fail opening"
        );
        let (call, _) = request(None).into_call();
        assert_eq!(call.env, None);
        let json = serde_json::to_string(&request(None)).unwrap();
        assert!(
            !json.contains("env"),
            "no field without an environment: {json}"
        );
    }

    #[test]
    fn a_job_queued_by_the_previous_release_still_reads() {
        let queued = r#"{"record":{"id":"0123456789abcdef0123456789abcdef","function_id":3,
            "owner":"ada","status":"queued","attempts":0,"created":"t","updated":"t"},
            "request":{"function_id":3,"digest":"d","limits":{"fuel":1,"memory_bytes":2,
            "timeout_ms":3,"max_input_bytes":4,"max_output_bytes":5,"max_log_bytes":6},
            "caller":"ada","input":{"n": [1, 2]},"wait_ms":0}}"#;
        let job: Job = serde_json::from_str(queued).unwrap();
        let (call, input) = job.request.into_call();
        assert_eq!(call.function_id, 3);
        assert_eq!(&input[..], br#"{"n": [1, 2]}"#);
    }

    #[test]
    fn recorded_errors_keep_their_wire_strings() {
        let error = RecordedError::platform(PlatformErrorKind::WorkerFailed, "gone");
        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "worker_failed", "message": "gone", "source": "platform"})
        );
    }
}
