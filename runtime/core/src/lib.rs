//! Shared vocabulary of Nimbus: the types every other crate speaks.
//!
//! This crate does no I/O on purpose. The engine, the store, the API and the
//! worker all meet here, so the shape of a function's metadata, its limits, the
//! messages on the wire, NATS subject names and error kinds are defined exactly
//! once. Anything that needs a socket, a file or wasmtime lives elsewhere.
#![deny(missing_docs)]

pub mod call_stats;
pub mod env;
pub mod error;
pub mod http;
pub mod kv;
pub mod limits;
pub mod meta;
pub mod metrics;
pub mod outbound;
pub mod round_robin;
pub mod script;
pub mod sealing;
pub mod subjects;
pub mod trace;
pub mod wire;

pub use env::Env;
pub use error::{ErrorKind, ErrorSource, FunctionError, FunctionErrorKind, PlatformErrorKind};
pub use limits::{LimitError, LimitPolicy, Limits, LimitsRequest};
pub use meta::{
    Access, FunctionId, FunctionMeta, FunctionName, InvalidFunctionName, Runtime, Username, World,
};
pub use sealing::{EnvKey, SecretsKey};
