//! The environment a function's calls carry: its variables and opened
//! secrets, sealed for the worker with the environment key
//! (`nimbus_core::sealing`), and kept in
//! memory per function, keyed by the configuration revision its metadata
//! names (`FunctionMeta::config_revision`). A warm call of a function with
//! an environment makes no JetStream read and seals nothing; a function
//! without one costs a comparison with 0.
//!
//! Freshness follows the metadata: a configuration change raises the
//! function's `config_revision`, which every API server learns through the
//! function cache's watch; the next call on a server that knows the new
//! revision reads the configuration again (at that revision or later).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use nimbus_core::{Env, FunctionId, FunctionMeta, SecretsKey};
use nimbus_store::{FunctionConfig, Storage, StoredSecret, now_rfc3339};

use crate::ApiError;

/// Sealed environments by function.
pub struct EnvCache {
    inner: Mutex<HashMap<FunctionId, Cached>>,
    capacity: usize,
}

struct Cached {
    /// The configuration revision it was made from.
    revision: u64,
    /// `None`: the configuration is empty.
    sealed: Option<Bytes>,
}

impl EnvCache {
    /// An empty cache of at most `capacity` functions.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// What calls of `meta` carry: its environment, sealed; `None` when it
    /// has none.
    pub async fn sealed(
        &self,
        storage: Result<&Storage, ApiError>,
        key: Option<&SecretsKey>,
        meta: &FunctionMeta,
    ) -> Result<Option<Bytes>, ApiError> {
        if meta.config_revision == 0 {
            return Ok(None);
        }
        if let Some(cached) = self.inner.lock().unwrap().get(&meta.id)
            && cached.revision >= meta.config_revision
        {
            return Ok(cached.sealed.clone());
        }
        let key = key.ok_or_else(no_key)?;
        let (config, revision) = storage?
            .function_config_since(meta.id, meta.config_revision)
            .await?;
        let env = open(key, meta.id, &config)?;
        let sealed =
            (!env.is_empty()).then(|| Bytes::from(key.env_key().seal(meta.id, &env.encode())));
        let mut inner = self.inner.lock().unwrap();
        if inner.len() >= self.capacity {
            inner.clear();
        }
        let newer = inner.get(&meta.id).is_some_and(|c| c.revision > revision);
        if !newer {
            inner.insert(
                meta.id,
                Cached {
                    revision,
                    sealed: sealed.clone(),
                },
            );
        }
        Ok(sealed)
    }

    /// Drop what is kept for function `id` (deleted).
    pub fn forget(&self, id: FunctionId) {
        self.inner.lock().unwrap().remove(&id);
    }
}

/// The answer when this API server cannot seal or open.
pub(crate) fn no_key() -> ApiError {
    ApiError::unavailable(
        "this API server has no secrets key (NIMBUS_SECRETS_KEY), so functions can have no \
         variables or secrets",
    )
}

/// `config` as the guest sees it: variables and opened secrets, by name.
fn open(key: &SecretsKey, id: FunctionId, config: &FunctionConfig) -> Result<Env, ApiError> {
    let mut env: Vec<(String, String)> = config
        .vars
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    for (name, secret) in &config.secrets {
        let value = BASE64
            .decode(&secret.sealed)
            .ok()
            .and_then(|sealed| key.open_secret(id, name, &sealed).ok())
            .and_then(|value| String::from_utf8(value).ok())
            .ok_or_else(|| {
                ApiError::Internal(format!(
                    "secret {name} of function {id} does not open with this API server's \
                     secrets key (was NIMBUS_SECRETS_KEY changed?)"
                ))
            })?;
        env.push((name.clone(), value));
    }
    env.sort();
    Ok(Env(env))
}

/// `value` stored as secret `name` of function `id`.
pub(crate) fn seal_secret(
    key: &SecretsKey,
    id: FunctionId,
    name: &str,
    value: &str,
) -> StoredSecret {
    StoredSecret {
        sealed: BASE64.encode(key.seal_secret(id, name, value.as_bytes())),
        len: value.len(),
        updated: now_rfc3339(),
    }
}
