//! What API servers and workers send each other over NATS: the synchronous
//! call (a header + the raw payload, see [`call`]; its answer, [`reply`]) and the asynchronous job with
//! the record that follows it (JSON, durable, see [`job`]); a function called
//! on its URL gets the HTTP request and answers a response ([`http`]); [`legacy`] is
//! the previous synchronous envelope, still served for one release.

pub mod call;
mod fields;
pub mod http;
pub mod job;
pub mod legacy;
pub mod reply;

pub use call::{Call, EnvelopeError, headers};
pub use http::{HttpRequest, HttpResponse, RequestHead, ResponseHead};
pub use job::{
    InvocationRecord, InvocationStatus, Job, JobRequest, RecordedError, is_invocation_id,
};
pub use reply::{Reply, Success};
