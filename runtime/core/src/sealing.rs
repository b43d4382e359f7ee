//! The platform's secrets key, which API servers and workers hold and
//! nobody else: secrets are stored sealed with it (in the `function_config`
//! bucket), and a function's environment travels sealed with it from API
//! server to worker (in calls and queued jobs), so neither is readable in
//! JetStream's files nor on the wire by anyone without the key.
//!
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`): an AEAD with
//! 192-bit random nonces, so nonces never need coordinating between API
//! servers. Each sealed value is bound to what it is (the associated data
//! names the function and, for a secret, its name): a sealed value copied
//! to another function, or from a secret to a call, does not open.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::FunctionId;

/// Length of the nonce in front of every sealed value.
const NONCE_LEN: usize = 24;

/// The key secrets and environments are sealed with.
#[derive(Clone)]
pub struct SecretsKey(XChaCha20Poly1305);

/// A secrets key shorter than 32 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the secrets key must be at least 32 characters (e.g. 64 hex digits)")]
pub struct WeakSecretsKey;

/// A sealed value that does not open: another key, another purpose, or
/// altered bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a sealed value does not open with this secrets key: it was sealed with another key \
     (NIMBUS_SECRETS_KEY differs between API servers and workers?), for something else, or altered"
)]
pub struct Unsealable;

/// What a sealed value is, bound into it as associated data.
#[derive(Debug, Clone, Copy)]
pub enum Purpose<'a> {
    /// A secret of a function, stored.
    Secret(FunctionId, &'a str),
    /// A function's whole environment, in a call or a job.
    Env(FunctionId),
}

impl Purpose<'_> {
    fn associated_data(self) -> Vec<u8> {
        match self {
            Self::Secret(id, name) => format!("nimbus secret v1 {id} {name}"),
            Self::Env(id) => format!("nimbus env v1 {id}"),
        }
        .into_bytes()
    }
}

impl SecretsKey {
    /// The key derived from `secret` (at least 32 characters), with BLAKE3's
    /// key derivation, so any long random string will do.
    pub fn from_secret(secret: &str) -> Result<Self, WeakSecretsKey> {
        if secret.len() < 32 {
            return Err(WeakSecretsKey);
        }
        let key = blake3::derive_key("nimbus 2026-12 secrets key v1", secret.as_bytes());
        Ok(Self(XChaCha20Poly1305::new(&key.into())))
    }

    /// `plaintext` sealed for `purpose`: a fresh random nonce, then the
    /// ciphertext and its tag.
    pub fn seal(&self, purpose: Purpose<'_>, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = purpose.associated_data();
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("sealing cannot fail for in-memory sizes");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Open what [`SecretsKey::seal`] made for the same `purpose`.
    pub fn open(&self, purpose: Purpose<'_>, sealed: &[u8]) -> Result<Vec<u8>, Unsealable> {
        if sealed.len() < NONCE_LEN {
            return Err(Unsealable);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = purpose.associated_data();
        self.0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| Unsealable)
    }
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: char) -> SecretsKey {
        SecretsKey::from_secret(&seed.to_string().repeat(32)).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_purpose() {
        let sealed = key('a').seal(Purpose::Secret(1, "API_KEY"), b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "not in clear");
        assert_eq!(
            key('a')
                .open(Purpose::Secret(1, "API_KEY"), &sealed)
                .unwrap(),
            b"hunter2"
        );
        assert_eq!(
            key('b').open(Purpose::Secret(1, "API_KEY"), &sealed),
            Err(Unsealable),
            "another key"
        );
        assert_eq!(
            key('a').open(Purpose::Secret(2, "API_KEY"), &sealed),
            Err(Unsealable),
            "another function"
        );
        assert_eq!(
            key('a').open(Purpose::Secret(1, "OTHER"), &sealed),
            Err(Unsealable),
            "another name"
        );
        assert_eq!(
            key('a').open(Purpose::Env(1), &sealed),
            Err(Unsealable),
            "another purpose"
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            key('a').open(Purpose::Secret(1, "API_KEY"), &altered),
            Err(Unsealable)
        );
        assert_eq!(key('a').open(Purpose::Env(1), b"short"), Err(Unsealable));
    }

    #[test]
    fn nonces_are_fresh_and_weak_keys_refused() {
        let a = key('a').seal(Purpose::Env(1), b"same");
        let b = key('a').seal(Purpose::Env(1), b"same");
        assert_ne!(a, b);
        assert_eq!(SecretsKey::from_secret("short").err(), Some(WeakSecretsKey));
    }
}
