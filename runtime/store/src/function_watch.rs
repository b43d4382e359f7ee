//! Following the `functions` bucket: every put and delete from now on, for
//! the API's in-memory function cache.

use futures::StreamExt;
use futures::stream::BoxStream;
use nimbus_core::{FunctionId, FunctionMeta, Username};

use crate::codec::decode;
use crate::functions::ID_COUNTER_KEY;
use crate::{Storage, StoreError, unavailable};

/// A change to the `functions` bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionChange {
    /// A function was created.
    Put(FunctionMeta),
    /// `owner`'s function `id` was deleted.
    Deleted {
        /// Its owner.
        owner: Username,
        /// Its id.
        id: FunctionId,
    },
}

impl Storage {
    /// The changes to function metadata from now on (not the history). The
    /// stream is an ordered consumer: after a lost message or a reconnection
    /// it yields an error and resumes by itself from the last message it
    /// delivered. Unreadable records are skipped (and logged).
    pub async fn watch_functions(
        &self,
    ) -> Result<BoxStream<'static, Result<FunctionChange, StoreError>>, StoreError> {
        let watch = self
            .functions
            .watch_all()
            .await
            .map_err(|e| unavailable("watch functions", e))?;
        Ok(watch
            .filter_map(|entry| async move {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => return Some(Err(unavailable("follow functions", e))),
                };
                if entry.key == ID_COUNTER_KEY {
                    return None;
                }
                match entry.operation {
                    async_nats::jetstream::kv::Operation::Put => {
                        match decode(&entry.key, &entry.value) {
                            Ok(meta) => Some(Ok(FunctionChange::Put(meta))),
                            // No reason to stop following the others: the
                            // record's readers will say it is corrupt.
                            Err(e) => {
                                tracing::warn!(key = %entry.key, error = %e, "unreadable function record");
                                None
                            }
                        }
                    }
                    async_nats::jetstream::kv::Operation::Delete
                    | async_nats::jetstream::kv::Operation::Purge => {
                        let (owner, id) = entry.key.split_once('.')?;
                        Some(Ok(FunctionChange::Deleted {
                            owner: Username::parse(owner).ok()?,
                            id: id.parse().ok()?,
                        }))
                    }
                }
            })
            .boxed())
    }
}
