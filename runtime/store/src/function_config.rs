//! Functions' configuration in the `function_config` bucket, one entry per
//! function under its id: variables in clear, secrets sealed. API servers
//! seal and open secrets (`nimbus_core::sealing`); nothing here ever holds
//! a secret's value in clear, and workers may not read the bucket at all
//! (they receive the environment of each function they run with its call).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use nimbus_core::FunctionId;
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::failover::Retry;
use crate::{Storage, StoreError};

/// A function's variables and secrets as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    /// Plain variables, by name.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Secrets, by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, StoredSecret>,
}

impl FunctionConfig {
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty() && self.secrets.is_empty()
    }
}

/// One secret as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// The value sealed with the secrets key for this function and name,
    /// in base64.
    pub sealed: String,
    /// Length of the value in bytes (for the environment's size limit).
    pub len: usize,
    /// RFC 3339 time it was last set.
    pub updated: String,
}

/// How long a read waits for a replica to catch up with a revision it
/// must have (a write acknowledged by the stream's leader).
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

impl Storage {
    /// Function `id`'s configuration and the revision of its entry: empty
    /// at revision 0 if it never had one, empty at the revision of its
    /// removal if it was removed (a write must name that revision).
    pub async fn function_config(
        &self,
        id: FunctionId,
    ) -> Result<(FunctionConfig, u64), StoreError> {
        let key = id.to_string();
        let entry = self
            .ride_out(Retry::Idempotent, "read function configuration", || {
                self.function_config.entry(&key)
            })
            .await?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                Ok((decode(&key, &entry.value)?, entry.revision))
            }
            Some(entry) => Ok((FunctionConfig::default(), entry.revision)),
            None => Ok((FunctionConfig::default(), 0)),
        }
    }

    /// Function `id`'s configuration at `revision` or later: a read served
    /// by a replica that has not caught up yet is made again, for a while.
    pub async fn function_config_since(
        &self,
        id: FunctionId,
        revision: u64,
    ) -> Result<(FunctionConfig, u64), StoreError> {
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            let found = self.function_config(id).await?;
            if found.1 >= revision || tokio::time::Instant::now() >= deadline {
                return Ok(found);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Store function `id`'s configuration if its entry is still at
    /// `revision` (as [`Storage::function_config`] read it): the new
    /// revision, or
    /// [`StoreError::AlreadyExists`] if somebody changed it since.
    pub async fn put_function_config(
        &self,
        id: FunctionId,
        config: &FunctionConfig,
        revision: u64,
    ) -> Result<u64, StoreError> {
        let key = id.to_string();
        self.update_at(
            &self.function_config,
            "write function configuration",
            &key,
            encode(config),
            revision,
        )
        .await
    }

    /// Remove function `id`'s configuration (its function was deleted).
    /// The bucket keeps one message per key: the sealed secrets go with it.
    pub async fn delete_function_config(&self, id: FunctionId) -> Result<(), StoreError> {
        let key = id.to_string();
        self.ride_out(Retry::Idempotent, "delete function configuration", || {
            self.function_config.purge(&key)
        })
        .await
    }
}
