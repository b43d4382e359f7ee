//! The HTTP routes, one file per resource; the router is in `lib.rs`.

pub mod account;
pub mod accounts;
pub mod function_config;
pub mod functions;
pub mod invocations;
pub mod kv;
pub(crate) mod live_logs;
pub mod urls;
