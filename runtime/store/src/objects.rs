//! Module bytes in the `modules` object store, content addressed (named by
//! their sha256 digest); precompiled artifacts live in the same bucket (see
//! `artifacts.rs`).
//!
//! Objects are read chunk by chunk with direct gets on the bucket's stream,
//! not through async-nats's object reader: that one creates a JetStream
//! consumer per read and leaves it for the server to expire, so a burst of
//! first calls over many functions piled up consumers (400 after 400 reads
//! in a test; a burst of 500 in a release build hit the server's consumer
//! limit, and every uncached module failed for about a minute). A direct get
//! is a plain request any replica answers. The chunks are checked against
//! the object's size and SHA-256 digest.

use async_nats::jetstream::object_store::{self, ObjectInfo};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use nimbus_core::subjects;

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

    pub(crate) async fn put_object(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        // Not retried: async-nats reports a failed chunk only as text, so
        // whether JetStream received it is unknown. The upload answers 503.
        let mut reader = bytes;
        self.modules
            .put(name, &mut reader)
            .await
            .map_err(|e| unavailable("write object", e))?;
        Ok(())
    }

    pub(crate) async fn get_object(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.ride_out(Retry::Idempotent, "read object", || async {
            let info = match self.modules.info(name).await {
                Ok(info) if !info.deleted => info,
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(NatsError::new(e)),
            };
            self.read_chunks(&info).await.map(Some)
        })
        .await
    }

    /// The object's chunks, in order, checked against its size and digest.
    async fn read_chunks(&self, info: &ObjectInfo) -> Result<Vec<u8>, NatsError> {
        let subject = subjects::object_chunks(subjects::MODULES_BUCKET, &info.nuid);
        let mut bytes = Vec::with_capacity(info.size);
        let mut next = None;
        for _ in 0..info.chunks {
            let chunk = self
                .modules_stream
                .direct_get_next_for_subject(subject.as_str(), next)
                .await
                .map_err(NatsError::new)?;
            next = Some(chunk.sequence + 1);
            bytes.extend_from_slice(&chunk.payload);
        }
        let digest = format!(
            "SHA-256={}",
            base64::engine::general_purpose::URL_SAFE.encode(Sha256::digest(&bytes))
        );
        if bytes.len() != info.size || info.digest.as_deref().is_some_and(|d| d != digest) {
            return Err(NatsError::new(CorruptObject(info.name.clone())));
        }
        Ok(bytes)
    }
}

/// An object whose chunks do not add up to its recorded size and digest.
#[derive(Debug, thiserror::Error)]
#[error("object {0} does not match its recorded size and digest")]
struct CorruptObject(String);
