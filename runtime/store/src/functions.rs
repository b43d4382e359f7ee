//! Function metadata in the `functions` bucket, under `<owner>.<id>`, and
//! the id counter that hands out function ids.

use async_nats::jetstream::{
    consumer::{DeliverPolicy, push::OrderedConfig},
    kv,
};
use bytes::Bytes;
use futures::StreamExt;
use nimbus_core::{FunctionId, FunctionMeta, Username};

use crate::codec::{decode, encode, owner_key};
use crate::failover::{NatsError, Retry};
use crate::replica_lag::{check_listing, last_sequence_at_leader};
use crate::{Storage, StoreError};

/// Key of the function id counter in the `functions` bucket.
pub const ID_COUNTER_KEY: &str = "_next_id";

impl Storage {
    /// Allocate the next function id: compare-and-set on a counter, so ids are
    /// unique across any number of API servers.
    pub async fn next_function_id(&self) -> Result<FunctionId, StoreError> {
        loop {
            let entry = self
                .ride_out(Retry::Idempotent, "read id counter", || {
                    self.functions.entry(ID_COUNTER_KEY)
                })
                .await?;
            // `AlreadyExists`: somebody else moved the counter first.
            let (next, attempt) = match entry {
                Some(entry) if entry.operation == kv::Operation::Put => {
                    let current: FunctionId = decode(ID_COUNTER_KEY, &entry.value)?;
                    let next = current + 1;
                    let attempt = self
                        .update_at(
                            &self.functions,
                            "update id counter",
                            ID_COUNTER_KEY,
                            encode(&next),
                            entry.revision,
                        )
                        .await
                        .map(|_| ());
                    (next, attempt)
                }
                _ => {
                    let attempt = self
                        .create(
                            &self.functions,
                            "create id counter",
                            ID_COUNTER_KEY,
                            encode(&1u64),
                        )
                        .await
                        .map(|_| ());
                    (1, attempt)
                }
            };
            match attempt {
                Ok(()) => return Ok(next),
                // Another API server won the race: read the counter again.
                Err(StoreError::AlreadyExists) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Store new function metadata; never overwrites.
    pub async fn create_function(&self, meta: &FunctionMeta) -> Result<(), StoreError> {
        let key = owner_key(&meta.owner, meta.id);
        self.create(&self.functions, "create function", &key, encode(meta))
            .await
            .map(|_| ())
    }

    /// `owner`'s function `id` and the revision of its entry, to change it
    /// with [`Storage::update_function`]; `None` if it does not exist.
    pub async fn function_entry(
        &self,
        owner: &Username,
        id: FunctionId,
    ) -> Result<Option<(FunctionMeta, u64)>, StoreError> {
        let key = owner_key(owner, id);
        let entry = self
            .read_key(&self.functions, "read function", &key)
            .await?;
        entry
            .map(|(value, revision)| Ok((decode(&key, &value)?, revision)))
            .transpose()
    }

    /// Replace `meta`'s stored metadata (same owner and id) if its entry is
    /// still at `revision`, as [`Storage::function_entry`] read it; a
    /// change made since (or a delete) makes this
    /// [`StoreError::AlreadyExists`]: read again and redo the change.
    pub async fn update_function(
        &self,
        meta: &FunctionMeta,
        revision: u64,
    ) -> Result<(), StoreError> {
        let key = owner_key(&meta.owner, meta.id);
        self.update_at(
            &self.functions,
            "update function",
            &key,
            encode(meta),
            revision,
        )
        .await
        .map(|_| ())
    }

    /// `owner`'s function `id`; `None` if it does not exist or is someone else's.
    pub async fn function(
        &self,
        owner: &Username,
        id: FunctionId,
    ) -> Result<Option<FunctionMeta>, StoreError> {
        Ok(self.function_entry(owner, id).await?.map(|(meta, _)| meta))
    }

    /// Every function `owner` has, by id.
    pub async fn functions_of(&self, owner: &Username) -> Result<Vec<FunctionMeta>, StoreError> {
        let filter = format!("{}{owner}.*", self.functions.prefix);
        // The whole read is retried: its consumer can fail mid-way too.
        let stored = self
            .ride_out(Retry::Idempotent, "list functions", || {
                self.last_per_subject(&filter)
            })
            .await?;
        let mut functions = stored
            .iter()
            .map(|(subject, value)| decode(subject, value))
            .collect::<Result<Vec<FunctionMeta>, _>>()?;
        functions.sort_by_key(|f| f.id);
        Ok(functions)
    }

    /// The latest value of every key of the `functions` bucket matching
    /// `filter`, deleted ones left out: `(subject, value)` pairs. Checked
    /// against the stream's leader (`replica_lag.rs`): a listing by a replica
    /// that is behind fails with a transient error, so that
    /// [`Storage::ride_out`] reads again.
    pub(crate) async fn last_per_subject(
        &self,
        filter: &str,
    ) -> Result<Vec<(String, Bytes)>, NatsError> {
        let at_leader = last_sequence_at_leader(&self.functions.stream, filter).await?;
        let consumer = self
            .functions
            .stream
            .create_consumer(OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: filter.to_owned(),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(NatsError::new)?;
        let mut stored = Vec::new();
        let mut seen = 0;
        if consumer.cached_info().num_pending > 0 {
            let mut messages = consumer.messages().await.map_err(NatsError::new)?;
            while let Some(message) = messages.next().await {
                let message = message.map_err(NatsError::new)?;
                let info = message.info().map_err(NatsError::boxed)?;
                let pending = info.pending;
                seen = seen.max(info.stream_sequence);
                let deleted = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("KV-Operation"))
                    .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
                if !deleted {
                    stored.push((message.subject.to_string(), message.payload.clone()));
                }
                if pending == 0 {
                    break;
                }
            }
        }
        check_listing(at_leader, seen)?;
        Ok(stored)
    }

    /// Delete `owner`'s function `id`: its metadata as it was, `None` if
    /// there was none.
    ///
    /// The module stays in the object store: modules are content addressed
    /// and may be shared by other functions. A sweep reclaims it once no
    /// function names it (`module_gc.rs`).
    pub async fn delete_function(
        &self,
        owner: &Username,
        id: FunctionId,
    ) -> Result<Option<FunctionMeta>, StoreError> {
        let Some(meta) = self.function(owner, id).await? else {
            return Ok(None);
        };
        let key = owner_key(owner, id);
        self.ride_out(Retry::Idempotent, "delete function", || {
            self.functions.delete(&key)
        })
        .await?;
        Ok(Some(meta))
    }
}
