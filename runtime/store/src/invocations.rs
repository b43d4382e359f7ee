//! Records of asynchronous invocations in the `invocations` bucket, under
//! `<owner>.<id>`; the bucket's TTL expires them.

use async_nats::jetstream::kv;
use nimbus_core::Username;
use nimbus_core::wire::InvocationRecord;

use crate::codec::{decode, encode, owner_key};
use crate::failover::Retry;
use crate::{Storage, StoreError, unavailable};

impl Storage {
    /// Record a new asynchronous invocation; returns the record's revision.
    pub async fn create_invocation(&self, record: &InvocationRecord) -> Result<u64, StoreError> {
        let key = owner_key(&record.owner, &record.id);
        self.create(&self.invocations, "create invocation", &key, encode(record))
            .await
    }

    /// Replace an invocation record only if it is still at `revision`, i.e.
    /// nobody else wrote it since; the new revision, or `None` if somebody did.
    pub async fn update_invocation(
        &self,
        record: &InvocationRecord,
        revision: u64,
    ) -> Result<Option<u64>, StoreError> {
        let (key, value) = (owner_key(&record.owner, &record.id), encode(record));
        match self
            .ride_out_raw(Retry::Undelivered, "update invocation", || {
                self.invocations.update(&key, value.clone(), revision)
            })
            .await
        {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(unavailable("update invocation", e)),
        }
    }

    /// Record an asynchronous invocation's state, whatever was there.
    pub async fn put_invocation(&self, record: &InvocationRecord) -> Result<(), StoreError> {
        let (key, value) = (owner_key(&record.owner, &record.id), encode(record));
        self.ride_out(Retry::Idempotent, "write invocation", || {
            self.invocations.put(&key, value.clone())
        })
        .await?;
        Ok(())
    }

    /// `owner`'s invocation `id` and its revision (for [`Storage::update_invocation`]).
    pub async fn invocation_with_revision(
        &self,
        owner: &Username,
        id: &str,
    ) -> Result<Option<(InvocationRecord, u64)>, StoreError> {
        let key = owner_key(owner, id);
        let entry = self
            .ride_out(Retry::Idempotent, "read invocation", || {
                self.invocations.entry(&key)
            })
            .await?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                Ok(Some((decode(&key, &entry.value)?, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// `owner`'s invocation `id`; `None` if unknown, expired or someone else's.
    pub async fn invocation(
        &self,
        owner: &Username,
        id: &str,
    ) -> Result<Option<InvocationRecord>, StoreError> {
        Ok(self
            .invocation_with_revision(owner, id)
            .await?
            .map(|(record, _)| record))
    }
}
