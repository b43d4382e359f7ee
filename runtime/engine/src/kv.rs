//! Key-value access for one invocation: the stores its function declared,
//! a cap on operations, and the backend that carries them (a worker's
//! NATS client, [`KeyValue`]). Components reach it through
//! `wasi:keyvalue` (`keyvalue.rs`), WASI preview 1 modules through
//! `nimbus_kv` (`kv_import.rs`); both come here.
//!
//! A guest waiting for an operation holds its slot like any host call; the
//! wait counts against its deadline. Fuel does not move while it waits: the
//! same input and the same answers burn the same fuel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use nimbus_core::kv::{KvError, KvErrorKind, KvReply, KvRequest};

/// Carries a function's key-value operations to its stores.
pub trait KeyValue: Send + Sync {
    /// Apply `request`; the reply (its `error` set when it failed).
    fn call(
        &self,
        request: KvRequest,
    ) -> Pin<Box<dyn Future<Output = Result<KvReply, KvError>> + Send + 'static>>;
}

/// What one invocation may do with key-value state.
#[derive(Clone, Default)]
pub struct KvAccess {
    /// Where operations go; `None`: this engine has no key-value state.
    pub backend: Option<Arc<dyn KeyValue>>,
    /// The stores the function declared (`key_value_stores`).
    pub stores: Vec<String>,
    /// Operations one invocation may make (every attempt counts).
    pub max_operations: u32,
}

impl KvAccess {
    /// Operations per invocation unless the operator says otherwise.
    pub const DEFAULT_MAX_OPERATIONS: u32 = 1000;
}

impl std::fmt::Debug for KvAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvAccess")
            .field("backend", &self.backend.is_some())
            .field("stores", &self.stores)
            .field("max_operations", &self.max_operations)
            .finish()
    }
}

/// One invocation's operations so far.
pub(crate) struct KvCalls {
    access: KvAccess,
    made: u32,
}

impl KvCalls {
    pub(crate) fn new(access: KvAccess) -> Self {
        Self { access, made: 0 }
    }

    /// Whether the function may open `store` (it declared it).
    pub(crate) fn may_open(&self, store: &str) -> Result<(), KvError> {
        if self.access.stores.iter().any(|s| s == store) {
            Ok(())
        } else {
            Err(KvError::access_denied(store))
        }
    }

    /// Apply `request` to one of the function's stores, counted.
    pub(crate) async fn call(&mut self, request: KvRequest) -> Result<KvReply, KvError> {
        if self.made >= self.access.max_operations {
            return Err(KvError::new(
                KvErrorKind::TooManyOperations,
                format!(
                    "an invocation may make at most {} key-value operations",
                    self.access.max_operations
                ),
            ));
        }
        self.made += 1;
        self.may_open(&request.store)?;
        if request.value.len() > nimbus_core::kv::MAX_VALUE_BYTES {
            return Err(KvError::new(
                KvErrorKind::TooLarge,
                format!(
                    "a value of {} bytes; at most {}",
                    request.value.len(),
                    nimbus_core::kv::MAX_VALUE_BYTES
                ),
            ));
        }
        let backend =
            self.access.backend.clone().ok_or_else(|| {
                KvError::unavailable("this worker has no key-value state to offer")
            })?;
        backend.call(request).await?.into_result()
    }
}
