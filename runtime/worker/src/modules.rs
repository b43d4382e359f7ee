//! The compiled module for a digest: from the engine's cache, else the
//! artifact an API server made and signed at upload, else compiled from the
//! object store's bytes, checked against the digest they are stored under,
//! and kept in this worker's cache only (workers cannot sign). Artifacts are
//! used only with the platform's artifact public key; one whose signature
//! does not verify is refused, logged, and the module compiled instead.
//!
//! Concurrent first calls of one module load it once (single flight): the
//! first takes the module's turn and loads it, the others wait for the turn
//! and find it in the engine's cache. A burst of first calls therefore costs
//! one fetch and one compile, not one per call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::object_store::ObjectInfo;
use nimbus_core::script::ScriptModule;
use nimbus_engine::{CompileError, CompiledModule};
use nimbus_store::{Artifact, StoreError};

use crate::Worker;
use crate::metrics::ModuleSource;

/// Why a worker has no module to run: a platform failure, answered as such.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ModuleError {
    /// The object store could not be read.
    #[error("could not fetch module {digest}")]
    Fetch {
        digest: String,
        #[source]
        source: StoreError,
    },
    /// Nothing is stored under the digest.
    #[error("module {digest} is missing from the object store")]
    Missing { digest: String },
    /// What is stored does not compile (it did at upload), or the compiler
    /// failed.
    #[error("stored module {digest} does not compile")]
    Invalid {
        digest: String,
        #[source]
        source: CompileError,
    },
    /// What is stored is not what the digest names.
    #[error("module stored as {digest} has digest {actual}; refusing to run it")]
    DigestMismatch { digest: String, actual: String },
}

/// Modules being loaded, by digest: one turn each (see the module docs).
#[derive(Default)]
pub(crate) struct Loading(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Worker {
    /// The compiled module for `digest`, or why there is none.
    pub(crate) async fn module(&self, digest: &str) -> Result<Arc<CompiledModule>, ModuleError> {
        if let Some(module) = self.engine.cached(digest) {
            self.metrics.module(ModuleSource::Cache, Duration::ZERO);
            return Ok(module);
        }
        self.once(digest, async || {
            let started = Instant::now();
            let (module, source) = self.load(digest).await?;
            self.metrics.module(source, started.elapsed());
            Ok(module)
        })
        .await
    }

    /// `load` the module `digest` unless it is loaded: one load per module
    /// at a time (see the module docs); who waits for a turn finds the
    /// module loaded when it gets it.
    async fn once<E>(
        &self,
        digest: &str,
        load: impl AsyncFnOnce() -> Result<Arc<CompiledModule>, E>,
    ) -> Result<Arc<CompiledModule>, E> {
        let turn = {
            let mut loading = self.loading.0.lock().expect("loading lock");
            loading.entry(digest.to_owned()).or_default().clone()
        };
        let loaded = {
            let _turn = turn.lock().await;
            match self.engine.cached(digest) {
                Some(module) => Ok(module),
                None => load().await,
            }
        };
        // Forget the turn once nobody else holds it (clones are only made
        // under this lock, so the count cannot grow meanwhile).
        let mut loading = self.loading.0.lock().expect("loading lock");
        if Arc::strong_count(&turn) == 2 {
            loading.remove(digest);
        }
        loaded
    }

    /// Load the modules with the most recently stored artifacts (at most
    /// `warm_modules`), one at a time, taking each module's turn as a first
    /// call would (a call that comes meanwhile waits for the turn or finds
    /// the module loaded). Only artifacts: warming never compiles.
    pub(crate) async fn warm(self: Arc<Self>) {
        let (limit, Some(key)) = (self.config.warm_modules, &self.config.artifact_verifier) else {
            return;
        };
        if limit == 0 {
            return;
        }
        let engine_key = self.engine.artifact_key();
        let digests = match self.storage.recent_artifacts(&engine_key, limit).await {
            Ok(digests) => digests,
            Err(e) => {
                let error = nimbus_core::error::describe(&e);
                tracing::warn!(%error, "could not list artifacts to warm up with");
                return;
            }
        };
        let mut loaded = 0;
        for digest in &digests {
            if self.warm_one(digest, &engine_key, key).await {
                loaded += 1;
            }
        }
        tracing::info!(loaded, listed = digests.len(), "warmed up");
    }

    /// The object store's metadata as objects are stored (plain NATS; the
    /// object names are all `load_as_stored` reads of it: digests and
    /// engine keys), unless warming is off (`warm_modules` 0).
    pub(crate) async fn subscribe_stored(&self) -> Option<async_nats::Subscriber> {
        if self.config.warm_modules == 0 || self.config.artifact_verifier.is_none() {
            return None;
        }
        let subject = nimbus_core::subjects::object_meta_all(nimbus_core::subjects::MODULES_BUCKET);
        self.client
            .subscribe(subject)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "not loading artifacts as they are stored"))
            .ok()
    }

    /// Load each artifact for this engine as an API server stores it (at an
    /// upload), one at a time, as `warm` does at start: the function's
    /// first call on this worker then finds it loaded, or joins the load
    /// under way.
    pub(crate) async fn load_as_stored(self: Arc<Self>, stored: Option<async_nats::Subscriber>) {
        let (Some(mut stored), Some(key)) = (stored, &self.config.artifact_verifier) else {
            return;
        };
        let engine_key = self.engine.artifact_key();
        let suffix = nimbus_store::artifact_name("", &engine_key);
        while let Some(message) = futures::StreamExt::next(&mut stored).await {
            let Ok(info) = serde_json::from_slice::<ObjectInfo>(&message.payload) else {
                continue;
            };
            let Some(digest) = info.name.strip_suffix(&suffix) else {
                continue;
            };
            if info.deleted || self.engine.cached(digest).is_some() {
                continue;
            }
            // Only what fits beside the modules this worker has loaded: a
            // new function's artifact does not push out called ones.
            let (cached, bytes) = (
                self.engine.cached_bytes(),
                nimbus_store::artifact_bytes(&info),
            );
            if cached + bytes > self.config.module_cache_bytes {
                tracing::debug!(%digest, bytes, cached, "not loading a stored artifact ahead: the cache is full");
                continue;
            }
            if self.stored_yet(&info.name).await {
                self.warm_one(digest, &engine_key, key).await;
            }
        }
    }

    /// Whether object `name` can be read: the news of an object is
    /// published as the stream stores it, and may arrive first. Waits at
    /// most ~1 s for it.
    async fn stored_yet(&self, name: &str) -> bool {
        for wait_ms in [0, 20, 100, 300, 600] {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            match self.storage.has_object(name).await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    let error = nimbus_core::error::describe(&e);
                    tracing::debug!(%name, %error, "could not look up a stored artifact");
                    return false;
                }
            }
        }
        false
    }

    /// Load the artifact of `digest` under the module's turn, ahead of its
    /// calls; whether it is loaded. One that cannot be used was logged: its
    /// module loads on a call.
    async fn warm_one(
        &self,
        digest: &str,
        engine_key: &str,
        key: &nimbus_store::ArtifactVerifier,
    ) -> bool {
        let warmed = self
            .once(digest, async || {
                let started = Instant::now();
                let module = self.shared_artifact(digest, engine_key, key).await;
                let module = module.map(|(module, _)| module);
                if module.is_some() {
                    self.metrics.module(ModuleSource::Warm, started.elapsed());
                }
                module.ok_or(())
            })
            .await;
        warmed.is_ok()
    }

    /// Load `digest`: a shared artifact, else the stored module compiled;
    /// and which it was.
    async fn load(&self, digest: &str) -> Result<(Arc<CompiledModule>, ModuleSource), ModuleError> {
        let engine_key = self.engine.artifact_key();
        if let Some(key) = &self.config.artifact_verifier
            && let Some((module, kept)) = self.shared_artifact(digest, &engine_key, key).await
        {
            let source = if kept {
                ModuleSource::Kept
            } else {
                ModuleSource::Artifact
            };
            return Ok((module, source));
        }
        let bytes = self
            .storage
            .module(digest)
            .await
            .map_err(|source| ModuleError::Fetch {
                digest: digest.to_owned(),
                source,
            })?
            .ok_or_else(|| ModuleError::Missing {
                digest: digest.to_owned(),
            })?;
        let compiled = match ScriptModule::decode(&bytes) {
            // A script (a JavaScript function): its interpreter, loaded like
            // any module (and then kept), is all the code it needs.
            Ok(Some(script)) => {
                let interpreter = Box::pin(self.module(script.interpreter)).await?;
                self.engine.keep(&interpreter);
                self.engine.compile(&bytes).map(|(module, _)| module)
            }
            // On the engine's low-priority compile pool: a compile does not
            // take CPU from the invocations this worker is running.
            _ => self
                .engine
                .compile_job(move |engine| engine.compile(&bytes).map(|(module, _)| module))
                .await
                .and_then(|compiled| compiled),
        };
        let module = compiled.map_err(|source| ModuleError::Invalid {
            digest: digest.to_owned(),
            source,
        })?;
        if module.digest() != digest {
            return Err(ModuleError::DigestMismatch {
                digest: digest.to_owned(),
                actual: module.digest().to_owned(),
            });
        }
        Ok((module, ModuleSource::Compile))
    }

    /// The signed artifact of `digest` for this engine, if there is a usable
    /// one: the copy kept on this worker's disk, else the object store's
    /// (then kept on disk, in the background); and whether it was the kept
    /// copy.
    async fn shared_artifact(
        &self,
        digest: &str,
        engine_key: &str,
        key: &nimbus_store::ArtifactVerifier,
    ) -> Option<(Arc<CompiledModule>, bool)> {
        let started = std::time::Instant::now();
        let name = nimbus_store::artifact_name(digest, engine_key);
        let kept = match &self.local_artifacts {
            Some(local) => {
                let (local, name, key) = (local.clone(), name.clone(), key.clone());
                tokio::task::spawn_blocking(move || local.load(&name, &key))
                    .await
                    .ok()
                    .flatten()
            }
            None => None,
        };
        let (artifact, to_keep) = match kept {
            Some(artifact) => (artifact, None),
            None => match self.storage.signed_artifact(digest, engine_key, key).await {
                Ok(signed) => {
                    let signed = signed?;
                    let artifact = match signed.artifact.try_clone() {
                        Ok(artifact) => artifact,
                        Err(e) => {
                            tracing::warn!(%digest, error = %e, "could not open a fetched artifact");
                            return None;
                        }
                    };
                    (artifact, self.local_artifacts.is_some().then_some(signed))
                }
                Err(e) => {
                    let message = nimbus_core::error::describe(&e);
                    tracing::warn!(%digest, error = %message, "not loading the artifact; compiling instead");
                    return None;
                }
            },
        };
        let from_disk = to_keep.is_none() && self.local_artifacts.is_some();
        let fetched = started.elapsed();
        let engine = self.engine.clone();
        let digest_owned = digest.to_owned();
        let loaded = tokio::task::spawn_blocking(move || match artifact {
            Artifact::File(file) => engine.load_precompiled_file(&digest_owned, file),
            Artifact::Bytes(bytes) => engine.load_precompiled(&digest_owned, &bytes),
        })
        .await;
        match loaded {
            Ok(Ok(module)) => {
                tracing::debug!(
                    %digest,
                    from_disk,
                    fetched_ms = fetched.as_secs_f64() * 1e3,
                    loaded_ms = (started.elapsed() - fetched).as_secs_f64() * 1e3,
                    "loaded an artifact"
                );
                if let (Some(local), Some(signed)) = (&self.local_artifacts, to_keep) {
                    let local = local.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = local.keep(&name, &signed) {
                            tracing::warn!(%name, error = %e, "could not keep an artifact on disk");
                        }
                    });
                }
                Some((module, from_disk))
            }
            Ok(Err(e)) => {
                tracing::warn!(%digest, error = %e, "ignoring unusable artifact");
                None
            }
            Err(e) => {
                tracing::warn!(%digest, error = %e, "artifact loading panicked");
                None
            }
        }
    }
}
