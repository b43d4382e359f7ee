//! Module bytes and precompiled artifacts in the `modules` object store.
//! Modules are content addressed (named by their sha256 digest); an
//! artifact is named after its module and the engine's artifact key (which
//! differs between wasmtime versions, targets and settings), so an engine
//! only finds artifacts it can load.

use async_nats::jetstream::object_store;
use tokio::io::AsyncReadExt;

use crate::failover::{NatsError, Retry};
use crate::{Storage, StoreError, unavailable};

impl Storage {
    /// Store module bytes under `digest` unless an object of that name exists
    /// already (same digest, same bytes).
    pub async fn put_module(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if self.modules.info(digest).await.is_ok() {
            return Ok(());
        }
        self.put_object(digest, bytes).await
    }

    /// The module stored under `digest`, if any.
    pub async fn module(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_object(digest).await
    }

    /// A precompiled artifact of module `digest` for engines with `engine_key`.
    pub async fn artifact(
        &self,
        digest: &str,
        engine_key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_object(&artifact_name(digest, engine_key)).await
    }

    /// Keep a precompiled artifact of module `digest` for engines with `engine_key`.
    pub async fn put_artifact(
        &self,
        digest: &str,
        engine_key: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.put_object(&artifact_name(digest, engine_key), bytes)
            .await
    }

    async fn put_object(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        // Not retried: async-nats reports a failed chunk only as text, so
        // whether JetStream received it is unknown. The upload answers 503.
        let mut reader = bytes;
        self.modules
            .put(name, &mut reader)
            .await
            .map_err(|e| unavailable("write object", e))?;
        Ok(())
    }

    async fn get_object(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.ride_out(Retry::Idempotent, "read object", || async {
            let mut object = match self.modules.get(name).await {
                Ok(object) => object,
                Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(NatsError::new(e)),
            };
            let mut bytes = Vec::with_capacity(object.info.size);
            object
                .read_to_end(&mut bytes)
                .await
                .map_err(NatsError::new)?;
            Ok(Some(bytes))
        })
        .await
    }
}

fn artifact_name(digest: &str, engine_key: &str) -> String {
    format!("{digest}.cwasm-{engine_key}")
}
