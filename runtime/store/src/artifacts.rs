//! Precompiled artifacts (native code) in the `modules` object store, sealed
//! with the platform's artifact key.
//!
//! An artifact is named after its module's digest and the engine's
//! compatibility key (which differs between wasmtime versions, targets and
//! settings), so an engine only finds artifacts it can load. Native code
//! runs unchecked once loaded, so an artifact is stored with a tag over its
//! name and bytes, a keyed BLAKE3 hash (a MAC) with a secret only API
//! servers and workers hold ([`ArtifactKey`], `NIMBUS_ARTIFACT_KEY`):
//! anything else with write access to the object store cannot produce one
//! that loads. A tag that does not verify is [`StoreError::Unsealed`].
//! BLAKE3 rather than HMAC-SHA256 (the first seal): it hashes ~3.5 GB/s
//! here against ~1.1, which is ~27 ms of a 43 MB artifact's first load.

use sha2::{Digest, Sha256};

use crate::artifact_file::{Artifact, Sink};
use crate::objects::Check;
use crate::{Storage, StoreError, unavailable};

/// The secret artifacts are sealed with.
#[derive(Clone)]
pub struct ArtifactKey([u8; 32]);

impl ArtifactKey {
    /// The key derived from `secret` (any text of at least 32 bytes: a
    /// generated hex string, or what `NIMBUS_ARTIFACT_KEY` holds).
    pub fn from_secret(secret: &str) -> Result<Self, WeakArtifactKey> {
        if secret.len() < 32 {
            return Err(WeakArtifactKey);
        }
        Ok(Self(Sha256::digest(secret.as_bytes()).into()))
    }

    /// The MAC of artifact `name`, to be fed its bytes.
    pub(crate) fn mac_of(&self, name: &str) -> Box<blake3::Hasher> {
        let mut mac = Box::new(blake3::Hasher::new_keyed(&self.0));
        mac.update(b"nimbus-artifact-v2\0");
        mac.update(name.as_bytes());
        mac.update(b"\0");
        mac
    }
}

impl std::fmt::Debug for ArtifactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArtifactKey(..)")
    }
}

/// An artifact key secret that is too short.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the artifact key must be at least 32 characters (generate one with `openssl rand -hex 32`)"
)]
pub struct WeakArtifactKey;

/// Bytes of the tag stored in front of an artifact.
pub(crate) const TAG_BYTES: usize = 32;

impl Storage {
    /// The artifact of module `digest` for engines with `engine_key`, if one
    /// is stored; [`StoreError::Unsealed`] if its tag does not verify.
    pub async fn artifact(
        &self,
        digest: &str,
        engine_key: &str,
        key: &ArtifactKey,
    ) -> Result<Option<Artifact>, StoreError> {
        let name = artifact_name(digest, engine_key);
        // The MAC is computed, and the artifact written where the engine
        // will load it from, while the chunks arrive.
        let check = || Check::Seal {
            tag: Vec::with_capacity(TAG_BYTES),
            hasher: key.mac_of(&name),
        };
        let Some((sink, Check::Seal { tag, hasher })) =
            self.read_object(&name, check, Sink::new).await?
        else {
            return Ok(None);
        };
        // `blake3::Hash` compares in constant time.
        let verified = <[u8; TAG_BYTES]>::try_from(tag.as_slice())
            .is_ok_and(|tag| hasher.finalize() == blake3::Hash::from_bytes(tag));
        if !verified {
            return Err(StoreError::Unsealed { name });
        }
        let artifact = sink
            .finish()
            .map_err(|e| unavailable("keep an artifact", e))?;
        Ok(Some(artifact))
    }

    /// Store the artifact of module `digest` for engines with `engine_key`,
    /// sealed with `key`, unless one is stored already. Artifacts are written
    /// once: replacing an object needs a stream purge, which neither API
    /// servers nor workers may do (deploy/nats), and a stored artifact that
    /// does not verify only makes workers compile (they log it).
    pub async fn put_artifact(
        &self,
        digest: &str,
        engine_key: &str,
        artifact: &[u8],
        key: &ArtifactKey,
    ) -> Result<(), StoreError> {
        let name = artifact_name(digest, engine_key);
        // Touched, if stored: kept as long as its module (module_gc.rs).
        if self.touch_object(&name, false).await? {
            return Ok(());
        }
        let mut mac = key.mac_of(&name);
        mac.update(artifact);
        let tag = mac.finalize();
        let mut sealed = Vec::with_capacity(TAG_BYTES + artifact.len());
        sealed.extend_from_slice(tag.as_bytes());
        sealed.extend_from_slice(artifact);
        self.put_object(&name, &sealed, false).await
    }
}

impl Storage {
    /// The digests of the modules with an artifact for engines with
    /// `engine_key`, the most recently stored first, at most `limit` (what a
    /// starting worker loads ahead of its first calls). Reads the object
    /// store's listing (one short-lived consumer).
    pub async fn recent_artifacts(
        &self,
        engine_key: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        use futures::StreamExt as _;
        let suffix = artifact_name("", engine_key);
        let mut list = self
            .modules
            .list()
            .await
            .map_err(|e| unavailable("list objects", e))?;
        let mut found = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| unavailable("list objects", e))?;
            if let (false, Some(digest)) = (info.deleted, info.name.strip_suffix(&suffix)) {
                // The listing comes in the order objects were stored: the
                // position breaks ties between equal times.
                found.push((info.modified, found.len(), digest.to_owned()));
            }
        }
        found.sort_by_key(|(modified, position, _)| std::cmp::Reverse((*modified, *position)));
        found.truncate(limit);
        Ok(found.into_iter().map(|(_, _, digest)| digest).collect())
    }
}

/// The object name of an artifact: `<digest>.sealed-v2-<engine key>` (v2:
/// the BLAKE3 seal; artifacts sealed before are not looked for, and each
/// module's first load compiles it once and stores it sealed anew).
pub fn artifact_name(digest: &str, engine_key: &str) -> String {
    format!("{digest}.sealed-v2-{engine_key}")
}
