//! The platform's secrets key, held by API servers only, and the
//! environment key derived from it, held by API servers and workers.
//! Secrets are stored sealed with the first (in the `function_config`
//! bucket); a function's environment travels sealed with the second from
//! API server to worker (in calls and queued jobs). So neither is readable
//! in JetStream's files nor on the wire without a key, and a compromised
//! worker, which holds only the environment key, cannot open the stored
//! secrets (of a backup, say): it sees the environments of the calls and
//! jobs it takes.
//!
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`): an AEAD with
//! 192-bit random nonces, so nonces never need coordinating between API
//! servers. Both keys are derived from the operator's secret with BLAKE3's
//! key derivation, under different contexts. Each sealed value is bound to
//! what it is (the associated data names the function and, for a secret,
//! its name): a sealed value copied to another function does not open.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::FunctionId;

/// Length of the nonce in front of every sealed value.
const NONCE_LEN: usize = 24;

/// The key secrets are stored sealed with; it also makes the
/// [`EnvKey`]. API servers only.
#[derive(Clone)]
pub struct SecretsKey {
    at_rest: XChaCha20Poly1305,
    env: EnvKey,
    /// Signs key-value grants (`crate::kv::Grant`): only API servers can
    /// make or check one.
    grants: [u8; 32],
}

/// The key functions' environments travel sealed with, in calls and jobs:
/// what workers hold.
#[derive(Clone)]
pub struct EnvKey {
    cipher: XChaCha20Poly1305,
    bytes: [u8; 32],
}

/// A secrets key shorter than 32 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the secrets key must be at least 32 characters (e.g. 64 hex digits)")]
pub struct WeakSecretsKey;

/// An environment key that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the environment key must be 64 hex digits (printed by `nimbus env-key`)")]
pub struct MalformedEnvKey;

/// A sealed value that does not open: another key, another function or
/// name, or altered bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a sealed value does not open with this key: it was sealed with another one \
     (NIMBUS_SECRETS_KEY / NIMBUS_ENV_KEY differ between components?), for something else, or altered"
)]
pub struct Unsealable;

impl SecretsKey {
    /// The keys derived from `secret` (at least 32 characters), so any long
    /// random string will do.
    pub fn from_secret(secret: &str) -> Result<Self, WeakSecretsKey> {
        if secret.len() < 32 {
            return Err(WeakSecretsKey);
        }
        let at_rest = blake3::derive_key("nimbus 2026-12 secrets at rest v1", secret.as_bytes());
        let env = blake3::derive_key(
            "nimbus 2026-12 environments in transit v1",
            secret.as_bytes(),
        );
        Ok(Self {
            at_rest: XChaCha20Poly1305::new(&at_rest.into()),
            env: EnvKey::from_bytes(env),
            grants: blake3::derive_key("nimbus 2026-12 key-value grants v1", secret.as_bytes()),
        })
    }

    /// The environment key, for sealing calls and for workers.
    pub fn env_key(&self) -> &EnvKey {
        &self.env
    }

    /// The tag of `message` under the grant key (a keyed BLAKE3 hash).
    pub fn grant_tag(&self, message: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.grants, message).as_bytes()
    }

    /// Whether `tag` is [`SecretsKey::grant_tag`] of `message` (compared in
    /// constant time).
    pub fn grant_tag_matches(&self, message: &[u8], tag: &[u8]) -> bool {
        <[u8; 32]>::try_from(tag)
            .is_ok_and(|tag| blake3::keyed_hash(&self.grants, message) == blake3::Hash::from(tag))
    }

    /// `value` sealed as secret `name` of function `id`.
    pub fn seal_secret(&self, id: FunctionId, name: &str, value: &[u8]) -> Vec<u8> {
        seal(&self.at_rest, &secret_aad(id, name), value)
    }

    /// Open what [`SecretsKey::seal_secret`] made for the same function and name.
    pub fn open_secret(
        &self,
        id: FunctionId,
        name: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, Unsealable> {
        open(&self.at_rest, &secret_aad(id, name), sealed)
    }
}

impl EnvKey {
    fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&bytes.into()),
            bytes,
        }
    }

    /// The key from its 64 hex digits ([`EnvKey::to_hex`]).
    pub fn from_hex(hex: &str) -> Result<Self, MalformedEnvKey> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MalformedEnvKey);
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| MalformedEnvKey)?;
        }
        Ok(Self::from_bytes(bytes))
    }

    /// The key as 64 hex digits, for workers' `NIMBUS_ENV_KEY`.
    pub fn to_hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Function `id`'s environment (encoded), sealed for its calls.
    pub fn seal(&self, id: FunctionId, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.cipher, &env_aad(id), plaintext)
    }

    /// Open what [`EnvKey::seal`] made for the same function.
    pub fn open(&self, id: FunctionId, sealed: &[u8]) -> Result<Vec<u8>, Unsealable> {
        open(&self.cipher, &env_aad(id), sealed)
    }
}

fn secret_aad(id: FunctionId, name: &str) -> Vec<u8> {
    format!("nimbus secret v1 {id} {name}").into_bytes()
}

fn env_aad(id: FunctionId) -> Vec<u8> {
    format!("nimbus env v1 {id}").into_bytes()
}

/// A fresh random nonce, then the ciphertext and its tag.
fn seal(cipher: &XChaCha20Poly1305, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("sealing cannot fail for in-memory sizes");
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

fn open(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Unsealable> {
    if sealed.len() < NONCE_LEN {
        return Err(Unsealable);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| Unsealable)
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl std::fmt::Debug for EnvKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: char) -> SecretsKey {
        SecretsKey::from_secret(&seed.to_string().repeat(32)).unwrap()
    }

    #[test]
    fn a_secret_opens_only_with_its_key_function_and_name() {
        let sealed = key('a').seal_secret(1, "API_KEY", b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "not in clear");
        assert_eq!(
            key('a').open_secret(1, "API_KEY", &sealed).unwrap(),
            b"hunter2"
        );
        assert_eq!(
            key('b').open_secret(1, "API_KEY", &sealed),
            Err(Unsealable),
            "another key"
        );
        assert_eq!(
            key('a').open_secret(2, "API_KEY", &sealed),
            Err(Unsealable),
            "another function"
        );
        assert_eq!(
            key('a').open_secret(1, "OTHER", &sealed),
            Err(Unsealable),
            "another name"
        );
        assert_eq!(
            key('a').env_key().open(1, &sealed),
            Err(Unsealable),
            "the environment key"
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            key('a').open_secret(1, "API_KEY", &altered),
            Err(Unsealable)
        );
        assert_eq!(
            key('a').open_secret(1, "API_KEY", b"short"),
            Err(Unsealable)
        );
    }

    #[test]
    fn an_environment_opens_with_the_workers_copy_of_the_env_key_only() {
        let api = key('a');
        let worker = EnvKey::from_hex(&api.env_key().to_hex()).unwrap();
        let sealed = api.env_key().seal(7, b"[[\"A\",\"1\"]]");
        assert_eq!(worker.open(7, &sealed).unwrap(), b"[[\"A\",\"1\"]]");
        assert_eq!(worker.open(8, &sealed), Err(Unsealable), "another function");
        assert_eq!(
            key('b').env_key().open(7, &sealed),
            Err(Unsealable),
            "another key"
        );
        assert_ne!(api.env_key().to_hex(), key('b').env_key().to_hex());
        assert_eq!(EnvKey::from_hex("00").err(), Some(MalformedEnvKey));
        assert_eq!(
            EnvKey::from_hex(&"g".repeat(64)).err(),
            Some(MalformedEnvKey)
        );
    }

    #[test]
    fn nonces_are_fresh_and_weak_keys_refused() {
        let a = key('a').env_key().seal(1, b"same");
        let b = key('a').env_key().seal(1, b"same");
        assert_ne!(a, b);
        assert_eq!(SecretsKey::from_secret("short").err(), Some(WeakSecretsKey));
    }
}
