//! The HTTP routes, one file per resource; the router is in `lib.rs`.

use serde::Serialize;
use utoipa::ToSchema;

pub mod account;
pub mod accounts;
pub mod console;
pub mod function_config;
pub mod functions;
pub mod invocations;
pub mod kv;
pub(crate) mod live_logs;
pub mod logs;
pub mod stats;
pub mod urls;

/// An answer that only says what was done.
#[derive(Serialize, ToSchema)]
pub struct Message {
    /// What was done.
    message: String,
}

impl Message {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
