//! Why a store operation failed.
//!
//! Failures keep their source instead of flattening it to text: the message
//! says which operation JetStream could not do ("JetStream could not read
//! user"), its [`source`](std::error::Error::source) says why (async-nats's
//! error, itself carrying the NATS error underneath). Callers that log the
//! whole chain see both; callers that only need a status ask
//! [`StoreError::is_unavailable`].

use std::error::Error as StdError;

use crate::failover::NatsError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key already exists (a username taken, an id reused).
    #[error("already exists")]
    AlreadyExists,
    /// JetStream could not be reached or answered with an error.
    #[error("JetStream could not {what}")]
    Unavailable {
        /// The operation that failed, e.g. "read user", "create function".
        what: &'static str,
        /// The error async-nats answered.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A stored artifact whose seal does not verify: written by someone
    /// without the platform's artifact key, or damaged. Never loaded.
    #[error("artifact `{name}` is not sealed with this platform's artifact key")]
    Unsealed {
        /// The object's name.
        name: String,
    },
    /// A stored value could not be decoded.
    #[error("corrupt record `{key}`")]
    Corrupt {
        /// The key that held it.
        key: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    /// Whether JetStream could not be reached or refused the operation: worth
    /// trying again later, unlike the other variants.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// [`StoreError::Unavailable`]: JetStream could not do `what` because of `error`.
pub(crate) fn unavailable(
    what: &'static str,
    error: impl StdError + Send + Sync + 'static,
) -> StoreError {
    let source: Box<dyn StdError + Send + Sync> = Box::new(error);
    // A NatsError only carries the error of one of several async-nats calls
    // and prints as it does: keep that error, so that it does not appear
    // twice in the chain.
    let source = match source.downcast::<NatsError>() {
        Ok(nats) => nats.into_inner(),
        Err(source) => source,
    };
    StoreError::Unavailable { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::kv;

    #[test]
    fn unavailable_says_what_failed_and_keeps_why() {
        let error = unavailable(
            "read user",
            kv::EntryError::new(kv::EntryErrorKind::TimedOut),
        );
        assert!(error.is_unavailable());
        assert_eq!(error.to_string(), "JetStream could not read user");
        let source = error.source().expect("keeps its source");
        assert!(source.downcast_ref::<kv::EntryError>().is_some());
        assert!(!StoreError::AlreadyExists.is_unavailable());
    }

    #[test]
    fn a_nats_error_is_unwrapped_into_what_it_carries() {
        let wrapped = NatsError::new(kv::EntryError::new(kv::EntryErrorKind::TimedOut));
        let error = unavailable("read logs", wrapped);
        let source = error.source().expect("keeps its source");
        assert!(source.downcast_ref::<kv::EntryError>().is_some());
    }
}
