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
        let bucket = self.config_bucket()?;
        let entry = self
            .ride_out(Retry::Idempotent, "read function configuration", || {
                bucket.entry(&key)
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
    /// by a replica that has not caught up yet is made again, for a while,
    /// then refused rather than answered with an older configuration.
    pub async fn function_config_since(
        &self,
        id: FunctionId,
        revision: u64,
    ) -> Result<(FunctionConfig, u64), StoreError> {
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            let found = self.function_config(id).await?;
            if found.1 >= revision {
                return Ok(found);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable {
                    what: "read function configuration",
                    source: format!(
                        "the store answers revision {} of function {id}'s configuration, \
                         its metadata names revision {revision}",
                        found.1
                    )
                    .into(),
                });
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
            self.config_bucket()?,
            "write function configuration",
            &key,
            encode(config),
            revision,
        )
        .await
    }

    /// Remove function `id`'s configuration, if it has one (its function was
    /// deleted). The bucket keeps one message per key: the sealed secrets go
    /// with it, and a function that never had any leaves no marker.
    pub async fn delete_function_config(&self, id: FunctionId) -> Result<(), StoreError> {
        let (config, revision) = self.function_config(id).await?;
        if config.is_empty() && revision == 0 {
            return Ok(());
        }
        let key = id.to_string();
        let bucket = self.config_bucket()?;
        self.ride_out(Retry::Idempotent, "delete function configuration", || {
            bucket.purge(&key)
        })
        .await
    }

    /// The bucket, which only API servers open (`Storage::open`); workers
    /// never read it.
    fn config_bucket(&self) -> Result<&kv::Store, StoreError> {
        self.function_config.as_ref().ok_or_else(|| {
            StoreError::Unavailable {
                what: "read function configuration",
                source: "this component does not open the function configuration bucket (workers never do)".into(),
            }
        })
    }
}
