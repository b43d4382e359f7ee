//! Artifacts made anew, in the background, for the modules functions use
//! that have none this engine can load.
//!
//! An artifact is named after the engine's compatibility key and its
//! storage format (`nimbus_store::artifact_name`), so an upgrade of
//! wasmtime, of the engine's settings or of the format leaves every stored
//! function without a usable artifact: each worker would compile each
//! function on its first call (~20 s for the Python example), which is what
//! the platform promises not to do. So an API server, once started, lists
//! the modules in use without an artifact for its engine (not scripts,
//! which have none; yes their interpreters) and compiles and signs them one
//! at a time, as an upload would (the platform's own pinned interpreters as
//! it installs them, trusted). Compiles run on the engine's low-priority
//! pool and hold one of its turns (2 by default: uploads keep the other),
//! and workers load each new artifact as it is stored (`load_as_stored`).
//! The order is random, so API servers started together rarely compile the
//! same module at once; each checks just before compiling, and again before
//! storing (`put_artifact`), that the artifact is still missing. A listing
//! that fails is tried again a minute later.

use std::sync::Arc;

use nimbus_core::script::ScriptModule;
use nimbus_engine::{CompileError, Engine};
use nimbus_store::{ArtifactKey, Storage};

use crate::AppState;
use crate::background::BackgroundTask;

/// Start making the missing artifacts, unless this server signs none.
pub(crate) fn start(state: &Arc<AppState>) -> BackgroundTask {
    let (Ok(storage), Some(key)) = (state.storage(), &state.config.artifact_key) else {
        return BackgroundTask(None);
    };
    let (storage, key, engine) = (storage.clone(), key.clone(), state.engine.clone());
    BackgroundTask(Some(tokio::spawn(async move {
        let engine_key = engine.artifact_key();
        let mut missing = loop {
            match storage.modules_without_artifact(&engine_key).await {
                Ok(missing) => break missing,
                Err(e) => {
                    let error = nimbus_core::error::describe(&e);
                    tracing::warn!(%error, "could not list the modules without an artifact; trying again in a minute");
                    tokio::time::sleep(RETRY_LISTING).await;
                }
            }
        };
        rand::seq::SliceRandom::shuffle(&mut missing[..], &mut rand::thread_rng());
        let mut made = 0;
        for (digest, pinned) in missing {
            match reseal_one(&storage, &engine, &key, &engine_key, &digest, pinned).await {
                Ok(true) => made += 1,
                Ok(false) => {}
                Err(error) => tracing::warn!(%digest, %error, "could not make an artifact"),
            }
        }
        if made > 0 {
            tracing::info!(
                made,
                "made artifacts for modules stored without one for this engine"
            );
        }
    })))
}

/// How long after a failed listing it is tried again.
const RETRY_LISTING: std::time::Duration = std::time::Duration::from_secs(60);

/// Compile (as the platform's own code if `pinned`), sign and store module
/// `digest`'s artifact if it still has none (`false`: it has one by now, is
/// gone, or is a script, which has no code of its own).
async fn reseal_one(
    storage: &Storage,
    engine: &Engine,
    key: &ArtifactKey,
    engine_key: &str,
    digest: &str,
    pinned: bool,
) -> Result<bool, String> {
    let describe = |e: nimbus_store::StoreError| nimbus_core::error::describe(&e);
    let name = nimbus_store::artifact_name(digest, engine_key);
    if storage.has_object(&name).await.map_err(describe)? {
        return Ok(false);
    }
    let Some(bytes) = storage.module(digest).await.map_err(describe)? else {
        return Ok(false);
    };
    if matches!(ScriptModule::decode(&bytes), Ok(Some(_))) {
        return Ok(false);
    }
    let artifact = engine
        .compile_job(move |engine| {
            let compiled = if pinned {
                engine.compile_trusted(&bytes)
            } else {
                engine.compile(&bytes)
            };
            let (module, _) = compiled.map_err(|e| e.to_string())?;
            engine.serialize(&module).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e: CompileError| e.to_string())??;
    let Some(artifact) = artifact else {
        return Ok(false);
    };
    storage
        .put_artifact(digest, engine_key, artifact, key)
        .await
        .map_err(describe)?;
    Ok(true)
}
