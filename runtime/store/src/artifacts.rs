//! Precompiled artifacts (native code) in the `modules` object store,
//! signed by the platform.
//!
//! An artifact is named after its module's digest and the engine's
//! compatibility key (which differs between wasmtime versions, targets and
//! settings), so an engine only finds artifacts it can load. Native code
//! runs unchecked once loaded, so an artifact is stored with an Ed25519
//! signature over its name and the BLAKE3 hash of its bytes. Only API
//! servers hold the signing key ([`ArtifactKey`], derived from
//! `NIMBUS_ARTIFACT_KEY`); workers hold the public half
//! ([`ArtifactVerifier`], `NIMBUS_ARTIFACT_PUBLIC_KEY`) and may not write
//! to the object store at all. So neither anything else with access to the
//! store nor a compromised worker can produce an artifact that loads (the
//! first seal, a MAC, had every worker hold the secret that makes one). A
//! signature that does not verify is [`StoreError::Unsealed`]. BLAKE3 is
//! hashed while the chunks arrive (~3.5 GB/s here, ~12 ms of a 43 MB
//! artifact); the signature check itself is one Ed25519 verification.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::artifact_file::{Artifact, Sink};
use crate::objects::Check;
use crate::{Storage, StoreError, unavailable};

/// The key artifacts are signed with (API servers only).
#[derive(Clone)]
pub struct ArtifactKey(SigningKey);

impl ArtifactKey {
    /// The key derived from `secret` (any text of at least 32 bytes: a
    /// generated hex string, or what `NIMBUS_ARTIFACT_KEY` holds).
    pub fn from_secret(secret: &str) -> Result<Self, WeakArtifactKey> {
        if secret.len() < 32 {
            return Err(WeakArtifactKey);
        }
        let seed: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// What workers verify artifacts with.
    pub fn verifier(&self) -> ArtifactVerifier {
        ArtifactVerifier(self.0.verifying_key())
    }

    pub(crate) fn sign(&self, name: &str, hash: &blake3::Hash) -> Signature {
        self.0.sign(&signed_message(name, hash))
    }
}

impl std::fmt::Debug for ArtifactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArtifactKey(..)")
    }
}

/// The public half of the [`ArtifactKey`]: checks artifacts, makes none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactVerifier(VerifyingKey);

impl ArtifactVerifier {
    /// The verifier of a public key written as 64 hex digits (what
    /// [`ArtifactVerifier::to_hex`] writes, `NIMBUS_ARTIFACT_PUBLIC_KEY`).
    pub fn from_hex(hex_key: &str) -> Result<Self, InvalidPublicKey> {
        let bytes: [u8; 32] = hex::decode(hex_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(InvalidPublicKey)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| InvalidPublicKey)
    }

    /// The public key as 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    pub(crate) fn verifies(&self, name: &str, hash: &blake3::Hash, signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        self.0
            .verify_strict(&signed_message(name, hash), &signature)
            .is_ok()
    }
}

/// What an artifact's signature covers: its name and its bytes' hash.
fn signed_message(name: &str, hash: &blake3::Hash) -> Vec<u8> {
    let mut message = b"nimbus-artifact-v3\0".to_vec();
    message.extend_from_slice(name.as_bytes());
    message.push(0);
    message.extend_from_slice(hash.as_bytes());
    message
}

/// An artifact key secret that is too short.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the artifact key must be at least 32 characters (generate one with `openssl rand -hex 32`)"
)]
pub struct WeakArtifactKey;

/// An artifact public key that is not 64 hex digits of an Ed25519 key.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the artifact public key must be 64 hex digits (print it with `nimbus artifact-public-key`)"
)]
pub struct InvalidPublicKey;

/// A verified artifact and the signature it carried.
#[derive(Debug)]
pub struct SignedArtifact {
    pub artifact: Artifact,
    /// The Ed25519 signature stored in front of it.
    pub signature: Vec<u8>,
}

/// Bytes of the signature stored in front of an artifact.
pub(crate) const TAG_BYTES: usize = 64;

impl Storage {
    /// The artifact of module `digest` for engines with `engine_key`, if one
    /// is stored; [`StoreError::Unsealed`] if its signature does not verify.
    pub async fn artifact(
        &self,
        digest: &str,
        engine_key: &str,
        verifier: &ArtifactVerifier,
    ) -> Result<Option<Artifact>, StoreError> {
        let signed = self.signed_artifact(digest, engine_key, verifier).await?;
        Ok(signed.map(|signed| signed.artifact))
    }

    /// [`Storage::artifact`], with the signature it verified (what a worker
    /// keeps with it on its own disk, `local_artifacts.rs`).
    pub async fn signed_artifact(
        &self,
        digest: &str,
        engine_key: &str,
        verifier: &ArtifactVerifier,
    ) -> Result<Option<SignedArtifact>, StoreError> {
        let name = artifact_name(digest, engine_key);
        // The artifact is decoded and hashed, and written where the engine
        // will load it from, while the chunks arrive.
        let check = Check::compressed_seal;
        let Some((sink, check)) = self.read_object(&name, check, Sink::new).await? else {
            return Ok(None);
        };
        let Some(signature) = check.signature_of(&name, verifier) else {
            return Err(StoreError::Unsealed { name });
        };
        let artifact = sink
            .finish()
            .map_err(|e| unavailable("keep an artifact", e))?;
        Ok(Some(SignedArtifact {
            artifact,
            signature,
        }))
    }

    /// Store the artifact of module `digest` for engines with `engine_key`,
    /// signed with `key`, unless one is stored already (then touch it: it is
    /// kept as long as its module, `module_gc.rs`). Artifacts are written
    /// once, and a stored artifact that does not verify only makes workers
    /// compile (they log it). Stored compressed (`artifact_encoding.rs`).
    pub async fn put_artifact(
        &self,
        digest: &str,
        engine_key: &str,
        artifact: Vec<u8>,
        key: &ArtifactKey,
    ) -> Result<(), StoreError> {
        let name = artifact_name(digest, engine_key);
        if self.touch_object(&name, false).await? {
            return Ok(());
        }
        // Hashed, signed and compressed (~0.15 s for the Python example's
        // 40 MB) off the runtime.
        let (key, signed_name, size) = (key.clone(), name.clone(), artifact.len());
        let stored = tokio::task::spawn_blocking(move || {
            let signature = key.sign(&signed_name, &blake3::hash(&artifact));
            crate::artifact_encoding::encode(&signature.to_bytes(), &artifact)
        })
        .await
        .map_err(|e| unavailable("compress an artifact", e))?
        .map_err(|e| unavailable("compress an artifact", e))?;
        let metadata = [(ARTIFACT_BYTES.to_owned(), size.to_string())].into();
        self.put_object(&name, &stored, metadata).await
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
        let suffix = artifact_name("", engine_key);
        let mut found = Vec::new();
        for info in self.stored_objects().await? {
            if let Some(digest) = info.name.strip_suffix(&suffix) {
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

impl Storage {
    /// The digests of the modules functions use that have no artifact for
    /// engines with `engine_key` (scripts have no code of their own), and
    /// whether each is pinned (the platform's own: a JavaScript
    /// interpreter); what an API server makes artifacts for (`nimbus_api`'s
    /// `reseal.rs`). Reads the functions and, if some exist, the object
    /// store's listing (one short-lived consumer).
    pub async fn modules_without_artifact(
        &self,
        engine_key: &str,
    ) -> Result<Vec<(String, bool)>, StoreError> {
        let (used, scripts) = self.referenced_modules().await?;
        if used.len() == scripts.len() {
            return Ok(Vec::new());
        }
        let suffix = artifact_name("", engine_key);
        let (mut modules, mut sealed) = (Vec::new(), std::collections::HashSet::new());
        for info in self.stored_objects().await? {
            if let Some(digest) = info.name.strip_suffix(&suffix) {
                sealed.insert(digest.to_owned());
            } else if used.contains(&info.name) && !scripts.contains(&info.name) {
                let pinned = info.metadata.contains_key(crate::module_gc::PINNED);
                modules.push((info.name, pinned));
            }
        }
        modules.retain(|(digest, _)| !sealed.contains(digest));
        Ok(modules)
    }

    /// Every object stored (not deleted), in the order they were stored, from
    /// the object store's listing (one short-lived consumer).
    async fn stored_objects(
        &self,
    ) -> Result<Vec<async_nats::jetstream::object_store::ObjectInfo>, StoreError> {
        use futures::StreamExt as _;
        let mut list = self
            .modules
            .list()
            .await
            .map_err(|e| unavailable("list objects", e))?;
        let mut stored = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| unavailable("list objects", e))?;
            if !info.deleted {
                stored.push(info);
            }
        }
        Ok(stored)
    }
}

/// The metadata key of an artifact object that records the artifact's
/// size, decoded (what a worker's module cache holds of it).
const ARTIFACT_BYTES: &str = "nimbus-artifact-bytes";

/// The bytes the artifact in the object `info` describes takes once
/// decoded: what its upload recorded, else (stored without the record)
/// twice its compressed size, about what native code compresses by.
pub fn artifact_bytes(info: &async_nats::jetstream::object_store::ObjectInfo) -> u64 {
    info.metadata
        .get(ARTIFACT_BYTES)
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or(info.size as u64 * 2)
}

/// The object name of an artifact: `<digest>.sealed-v4-<engine key>` (v4:
/// compressed, `artifact_encoding.rs`; v3: the Ed25519 signature).
/// Artifacts stored under older names are not looked for: API servers make
/// new ones at their start (`nimbus_api`'s `reseal.rs`), and until then a
/// worker compiles such a module on its first call.
pub fn artifact_name(digest: &str, engine_key: &str) -> String {
    format!("{digest}.sealed-v4-{engine_key}")
}

impl Check {
    /// The signature of a signed artifact this checked, if `verifier`
    /// verifies it for `name` (and, stored compressed, it decoded).
    pub(crate) fn signature_of(self, name: &str, verifier: &ArtifactVerifier) -> Option<Vec<u8>> {
        match self {
            Self::Seal {
                tag,
                hasher,
                undecodable,
                ..
            } => {
                if let Some(why) = undecodable {
                    tracing::debug!(%name, %why, "an artifact did not decode");
                    return None;
                }
                verifier
                    .verifies(name, &hasher.finalize(), &tag)
                    .then_some(tag)
            }
            Self::Digest(_) => None,
        }
    }
}
