//! The platform's keys, as flags of `up`, `api` and `worker`: the artifact
//! key (API servers sign native artifacts, workers check them with its
//! public half) and the secrets key (API servers store secrets sealed with
//! it; workers open each call's environment with the environment key it
//! derives). `nimbus up` generates each once and keeps it under its data
//! directory.

use std::path::Path;

use anyhow::Context;
use clap::Args;
use nimbus_cli::client;
use nimbus_core::{EnvKey, SecretsKey};
use nimbus_store::{ArtifactKey, ArtifactVerifier};

/// The platform's artifact key: the secret API servers sign the native
/// artifacts they compile with, and its public half workers check them with.
#[derive(Args)]
pub struct ArtifactFlags {
    /// Secret (at least 32 characters) the API servers sign the native
    /// artifacts they compile at upload with; every API server of a
    /// deployment needs the same one. Workers need only its public half
    /// (`--artifact-public-key`). Without it, each worker compiles each
    /// module on its first call.
    #[arg(long, env = "NIMBUS_ARTIFACT_KEY", hide_env_values = true)]
    artifact_key: Option<String>,
    /// For workers: the artifact key's public half (64 hex digits, printed
    /// by `nimbus artifact-public-key`), to check artifacts with.
    #[arg(long, env = "NIMBUS_ARTIFACT_PUBLIC_KEY")]
    artifact_public_key: Option<String>,
}

impl ArtifactFlags {
    pub(super) fn key(&self) -> anyhow::Result<Option<ArtifactKey>> {
        self.artifact_key
            .as_deref()
            .map(ArtifactKey::from_secret)
            .transpose()
            .map_err(Into::into)
    }

    /// What a worker checks artifacts with: the public key, or else the
    /// one the secret derives (accepted, with a warning: a worker should
    /// not hold what signs native code).
    pub(super) fn verifier(&self) -> anyhow::Result<Option<ArtifactVerifier>> {
        if let Some(public) = &self.artifact_public_key {
            return Ok(Some(ArtifactVerifier::from_hex(public)?));
        }
        let key = self.key()?;
        if key.is_some() {
            tracing::warn!(
                "this worker was given NIMBUS_ARTIFACT_KEY, which signs native code: give workers \
                 NIMBUS_ARTIFACT_PUBLIC_KEY (`nimbus artifact-public-key`) instead"
            );
        }
        Ok(key.map(|key| key.verifier()))
    }

    /// The key for `api` and `worker`: the one given, or else the one
    /// generated once and kept under `data_dir` (`nimbus up`).
    pub(super) fn key_or_kept(&self, data_dir: &Path) -> anyhow::Result<ArtifactKey> {
        match self.key()? {
            Some(key) => Ok(key),
            None => Ok(ArtifactKey::from_secret(&load_or_create_secret(
                &data_dir.join("artifact-key"),
            )?)?),
        }
    }
}

/// The platform's secrets key (API servers: secrets are stored sealed with
/// it) and the environment key derived from it (workers: each call's
/// environment is sealed with it).
#[derive(Args)]
pub struct SecretsFlags {
    /// Secret (at least 32 characters) that functions' secrets are stored
    /// sealed with; every API server of a deployment needs the same one.
    /// Workers need only the environment key derived from it (`--env-key`).
    /// Without it, functions can have no variables or secrets. Changing it
    /// makes stored secrets unreadable.
    #[arg(long, env = "NIMBUS_SECRETS_KEY", hide_env_values = true)]
    secrets_key: Option<String>,
    /// For workers: the environment key (64 hex digits, printed by `nimbus
    /// env-key`), which opens the variables and secrets each call carries.
    #[arg(long, env = "NIMBUS_ENV_KEY", hide_env_values = true)]
    env_key: Option<String>,
}

impl SecretsFlags {
    pub(super) fn key(&self) -> anyhow::Result<Option<SecretsKey>> {
        self.secrets_key
            .as_deref()
            .map(SecretsKey::from_secret)
            .transpose()
            .map_err(Into::into)
    }

    /// What a worker opens environments with: the environment key, or else
    /// the one the secrets key derives (accepted, with a warning: a worker
    /// should not hold what opens every stored secret).
    pub(super) fn env_key(&self) -> anyhow::Result<Option<EnvKey>> {
        if let Some(hex) = &self.env_key {
            return Ok(Some(EnvKey::from_hex(hex)?));
        }
        let key = self.key()?;
        if key.is_some() {
            tracing::warn!(
                "this worker was given NIMBUS_SECRETS_KEY, which opens every stored secret: give \
                 workers NIMBUS_ENV_KEY (`nimbus env-key`) instead"
            );
        }
        Ok(key.map(|key| key.env_key().clone()))
    }

    /// The key for `up`: the one given, or else the one generated once and
    /// kept under `data_dir`.
    pub(super) fn key_or_kept(&self, data_dir: &Path) -> anyhow::Result<SecretsKey> {
        match self.key()? {
            Some(key) => Ok(key),
            None => Ok(SecretsKey::from_secret(&load_or_create_secret(
                &data_dir.join("secrets-key"),
            )?)?),
        }
    }
}

/// `nimbus env-key`: the environment key derived from NIMBUS_SECRETS_KEY,
/// for the workers' `NIMBUS_ENV_KEY`.
#[derive(Args)]
pub struct EnvKeyArgs {
    #[command(flatten)]
    secrets: SecretsFlags,
}

impl EnvKeyArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let key = self
            .secrets
            .key()?
            .context("set NIMBUS_SECRETS_KEY (or --secrets-key) to the API servers' secret")?;
        println!("{}", key.env_key().to_hex());
        Ok(())
    }
}

/// A secret `up` keeps under its data directory (the JWT secret, the
/// artifact key, the secrets key) when none is given: generated on the
/// first start and kept (mode 0600), so tokens, artifacts and stored
/// secrets survive restarts. A file that exists but cannot be read or is
/// too short is an error, never replaced: replacing the secrets key would
/// make every stored secret unreadable.
pub(super) fn load_or_create_secret(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(secret) => {
            let secret = secret.trim().to_owned();
            anyhow::ensure!(
                secret.len() >= 32,
                "{} holds a secret shorter than 32 characters: restore it, or remove it to \
                 generate a new one (what it protected is lost)",
                path.display()
            );
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = hex::encode(rand::random::<[u8; 32]>());
            client::write_private(path, &secret)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// `nimbus artifact-public-key`: the public half of the artifact key, for
/// the workers' `NIMBUS_ARTIFACT_PUBLIC_KEY`.
#[derive(Args)]
pub struct PublicKeyArgs {
    #[command(flatten)]
    artifacts: ArtifactFlags,
}

impl PublicKeyArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let key = self
            .artifacts
            .key()?
            .context("set NIMBUS_ARTIFACT_KEY (or --artifact-key) to the API servers' secret")?;
        println!("{}", key.verifier().to_hex());
        Ok(())
    }
}
