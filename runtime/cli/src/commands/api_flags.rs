//! The API server's flags (`nimbus up` and `nimbus api`), read into an
//! [`ApiConfig`] whose defaults they show.

use nimbus_core::kv::KvQuota;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nimbus_api::ApiConfig;
use nimbus_api::config::{AuthLimitConfig, Quotas};
use nimbus_cli::client;
use nimbus_engine::CompileBudget;

use super::serve::MIB;

/// The shortest grace period sweeps may give unused objects.
const MIN_GC_GRACE_SECS: f64 = 60.0;

#[derive(Args)]
pub struct ApiFlags {
    /// Address the HTTP API listens on.
    #[arg(long, env = "NIMBUS_LISTEN", default_value = client::DEFAULT_LISTEN)]
    pub(super) listen: SocketAddr,
    /// HS256 secret for tokens (at least 32 bytes); every API server of a
    /// deployment needs the same one.
    #[arg(long, env = "NIMBUS_JWT_SECRET", hide_env_values = true)]
    pub(super) jwt_secret: Option<String>,
    /// bcrypt cost for new passwords.
    #[arg(long, env = "NIMBUS_BCRYPT_COST", default_value_t = ApiConfig::default().bcrypt_cost)]
    bcrypt_cost: u32,
    /// Token lifetime in seconds.
    #[arg(
        long,
        env = "NIMBUS_TOKEN_TTL_SECS",
        default_value_t = ApiConfig::default().token_ttl.as_secs()
    )]
    token_ttl_secs: u64,
    /// Asynchronous invocations one user may have queued or running.
    #[arg(
        long,
        env = "NIMBUS_MAX_JOBS_PER_USER",
        default_value_t = ApiConfig::default().max_jobs_per_user
    )]
    max_jobs_per_user: u64,
    /// Largest module or component an upload may carry, in MiB.
    #[arg(
        long,
        env = "NIMBUS_MAX_MODULE_MB",
        default_value_t = ApiConfig::default().max_module_bytes as u64 / MIB
    )]
    max_module_mb: u64,
    /// Seconds any upload's compile may take, plus
    /// `--compile-secs-per-mib` per MiB of module; past that the compile is
    /// killed and the upload refused (422 `compile_budget_exceeded`).
    #[arg(
        long,
        env = "NIMBUS_COMPILE_SECS",
        default_value_t = CompileBudget::default().base.as_secs_f64()
    )]
    compile_secs: f64,
    /// Seconds of compile time allowed per MiB of module.
    #[arg(
        long,
        env = "NIMBUS_COMPILE_SECS_PER_MIB",
        default_value_t = CompileBudget::default().per_mib.as_secs_f64()
    )]
    compile_secs_per_mib: f64,
    /// Memory one compile may use, in MiB.
    #[arg(
        long,
        env = "NIMBUS_COMPILE_MEMORY_MB",
        default_value_t = CompileBudget::default().memory_bytes / MIB
    )]
    compile_memory_mb: u64,
    /// Compiles one user may have running at once.
    #[arg(
        long,
        env = "NIMBUS_COMPILES_PER_USER",
        default_value_t = ApiConfig::default().compiles_per_user
    )]
    compiles_per_user: usize,
    /// Login attempts per minute from one client address.
    #[arg(
        long,
        env = "NIMBUS_LOGINS_PER_MINUTE",
        default_value_t = AuthLimitConfig::default().logins_per_minute
    )]
    logins_per_minute: u32,
    /// Registrations per hour from one client address.
    #[arg(
        long,
        env = "NIMBUS_REGISTRATIONS_PER_HOUR",
        default_value_t = AuthLimitConfig::default().registrations_per_hour
    )]
    registrations_per_hour: u32,
    /// Invocations per second one user may start through this API server.
    #[arg(
        long,
        env = "NIMBUS_CALLS_PER_SECOND",
        default_value_t = ApiConfig::default().calls_per_second
    )]
    calls_per_second: u32,
    /// The header a trusted gateway puts the client's address in (APISIX:
    /// X-Real-IP). Only when every request comes through that gateway.
    #[arg(long, env = "NIMBUS_CLIENT_IP_HEADER")]
    client_ip_header: Option<String>,
    /// Functions one user may have.
    #[arg(
        long,
        env = "NIMBUS_MAX_FUNCTIONS_PER_USER",
        default_value_t = Quotas::default().functions
    )]
    max_functions_per_user: u64,
    /// MiB of modules one user's functions may hold in all.
    #[arg(
        long,
        env = "NIMBUS_MODULE_MB_PER_USER",
        default_value_t = Quotas::default().module_bytes / MIB
    )]
    module_mb_per_user: u64,
    /// MiB of logs one user's functions may reserve in all (each reserves
    /// the entries kept per function x its `max_log_bytes`).
    #[arg(
        long,
        env = "NIMBUS_LOG_MB_PER_USER",
        default_value_t = Quotas::default().log_bytes / MIB
    )]
    log_mb_per_user: u64,
    /// Keys one user's key-value stores may hold in all.
    #[arg(
        long,
        env = "NIMBUS_KV_KEYS_PER_USER",
        default_value_t = KvQuota::default().keys
    )]
    kv_keys_per_user: u64,
    /// MiB of keys and values one user's key-value stores may hold in all.
    #[arg(
        long,
        env = "NIMBUS_KV_MB_PER_USER",
        default_value_t = KvQuota::default().bytes / MIB
    )]
    kv_mb_per_user: u64,
    /// Key-value stores (with at least one key) one user may have.
    #[arg(
        long,
        env = "NIMBUS_KV_STORES_PER_USER",
        default_value_t = KvQuota::default().stores
    )]
    kv_stores_per_user: u64,
    /// Seconds between sweeps of the modules store for objects no function
    /// uses (0: never).
    #[arg(
        long,
        env = "NIMBUS_MODULE_GC_SECS",
        default_value_t = ApiConfig::default().module_gc_interval.as_secs_f64()
    )]
    module_gc_secs: f64,
    /// Seconds an unused object is kept after an upload last wrote or
    /// touched it.
    #[arg(
        long,
        env = "NIMBUS_MODULE_GC_GRACE_SECS",
        default_value_t = ApiConfig::default().module_gc_grace.as_secs_f64()
    )]
    module_gc_grace_secs: f64,
    /// Functions given series of their own in /metrics (the first seen);
    /// the others are counted together as function="other".
    #[arg(
        long,
        env = "NIMBUS_METRICS_FUNCTIONS",
        default_value_t = ApiConfig::default().metrics_function_series
    )]
    metrics_functions: usize,
}

impl ApiFlags {
    pub(super) fn config(&self) -> anyhow::Result<ApiConfig> {
        let seconds = |value: f64, flag: &str| {
            Duration::try_from_secs_f64(value)
                .with_context(|| format!("--{flag} must be a non-negative number of seconds"))
        };
        Ok(ApiConfig {
            bcrypt_cost: self.bcrypt_cost,
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            max_jobs_per_user: self.max_jobs_per_user,
            max_module_bytes: usize::try_from(self.max_module_mb.saturating_mul(MIB))
                .unwrap_or(usize::MAX),
            // Compiles run in this very binary (`nimbus compile-module`),
            // where they can be killed at their budget.
            compiler: Some(
                std::env::current_exe().context("cannot find the nimbus binary to compile in")?,
            ),
            compile_budget: CompileBudget {
                base: seconds(self.compile_secs, "compile-secs")?,
                per_mib: seconds(self.compile_secs_per_mib, "compile-secs-per-mib")?,
                memory_bytes: self.compile_memory_mb.saturating_mul(MIB),
            },
            compiles_per_user: self.compiles_per_user.max(1),
            auth_limits: AuthLimitConfig {
                logins_per_minute: self.logins_per_minute,
                registrations_per_hour: self.registrations_per_hour,
                ..AuthLimitConfig::default()
            },
            client_ip_header: self.client_ip_header.clone(),
            metrics_function_series: self.metrics_functions,
            calls_per_second: self.calls_per_second,
            quotas: Quotas {
                functions: self.max_functions_per_user,
                module_bytes: self.module_mb_per_user.saturating_mul(MIB),
                log_bytes: self.log_mb_per_user.saturating_mul(MIB),
            },
            kv_quota: KvQuota {
                keys: self.kv_keys_per_user,
                bytes: self.kv_mb_per_user.saturating_mul(MIB),
                stores: self.kv_stores_per_user,
            },
            module_gc_interval: seconds(self.module_gc_secs, "module-gc-secs")?,
            module_gc_grace: {
                // It must outlast an upload's steps between storing its
                // module and writing its function (module_gc.rs).
                anyhow::ensure!(
                    self.module_gc_grace_secs >= MIN_GC_GRACE_SECS,
                    "--module-gc-grace-secs must be at least {MIN_GC_GRACE_SECS}"
                );
                seconds(self.module_gc_grace_secs, "module-gc-grace-secs")?
            },
            ..ApiConfig::default()
        })
    }

    pub(super) async fn bind(&self) -> anyhow::Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.listen))
    }
}
