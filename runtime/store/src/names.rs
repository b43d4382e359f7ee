//! Function names, unique per owner: the `function_names` bucket maps
//! `<owner>.<name>` to a function id. A name is claimed (compare-and-set)
//! before the function's metadata is written, so two uploads racing for one
//! name cannot both win; it is released when the function is deleted or
//! renamed.

use async_nats::jetstream::kv;
use nimbus_core::{FunctionId, FunctionName, Username};

use crate::codec::{decode, encode, owner_key};
use crate::failover::Retry;
use crate::{Storage, StoreError};

impl Storage {
    /// Give `owner`'s function `id` the name `name`;
    /// [`StoreError::AlreadyExists`] if another function of theirs has it.
    pub async fn claim_name(
        &self,
        owner: &Username,
        name: &FunctionName,
        id: FunctionId,
    ) -> Result<(), StoreError> {
        let key = owner_key(owner, name);
        match self
            .create(&self.names, "claim a function name", &key, encode(&id))
            .await
        {
            Err(StoreError::AlreadyExists) => {}
            other => return other.map(|_| ()),
        }
        // Taken, or released before (a tombstone is the key's last message):
        // a released name can be claimed again, against that tombstone.
        let entry = self
            .ride_out(Retry::Idempotent, "read a function name", || {
                self.names.entry(&key)
            })
            .await?;
        match entry {
            Some(entry) if entry.operation != kv::Operation::Put => self
                .update_at(
                    &self.names,
                    "claim a function name",
                    &key,
                    encode(&id),
                    entry.revision,
                )
                .await
                .map(|_| ()),
            Some(entry) if decode::<FunctionId>(&key, &entry.value)? == id => Ok(()),
            _ => Err(StoreError::AlreadyExists),
        }
    }

    /// Let go of `owner`'s name `name`, if function `id` holds it.
    pub async fn release_name(
        &self,
        owner: &Username,
        name: &str,
        id: FunctionId,
    ) -> Result<(), StoreError> {
        if self.function_id_by_name(owner, name).await? != Some(id) {
            return Ok(());
        }
        let key = owner_key(owner, name);
        self.ride_out(Retry::Idempotent, "release a function name", || {
            self.names.delete(&key)
        })
        .await
    }

    /// The id of `owner`'s function called `name`.
    pub async fn function_id_by_name(
        &self,
        owner: &Username,
        name: &str,
    ) -> Result<Option<FunctionId>, StoreError> {
        if FunctionName::parse(name).is_err() {
            return Ok(None);
        }
        let key = owner_key(owner, name);
        // A plain direct get, not `read_key`: anybody can ask for any name
        // on a function URL, and a miss must not cost a request to the
        // stream's leader. A name claimed a moment ago on another API server
        // may answer 404 for as long as a replica lags (milliseconds).
        let value = self
            .ride_out(Retry::Idempotent, "read a function name", || {
                self.names.get(&key)
            })
            .await?;
        value.map(|v| decode(&key, &v)).transpose()
    }
}
