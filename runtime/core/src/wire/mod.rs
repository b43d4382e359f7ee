//! What API servers and workers send each other over NATS: the synchronous
//! call (a header + the raw payload, see [`call`]) and the asynchronous job with
//! the record that follows it (JSON, durable, see [`job`]); [`legacy`] is
//! the previous synchronous envelope, still served for one release.

pub mod call;
pub mod job;
pub mod legacy;

pub use call::{Call, EnvelopeError, Reply, Success, headers};
pub use job::{
    InvocationRecord, InvocationStatus, Job, JobRequest, RecordedError, is_invocation_id,
};
