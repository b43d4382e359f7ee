//! Quotas per tenant: how many functions one user may have, how many
//! module bytes they may hold and how much log space their functions may
//! reserve, checked at upload (403 `quota_exceeded`), and what a user uses
//! ([`Usage`], shown by `GET /account`).
//!
//! Module bytes count each distinct module of the user's functions once
//! (the store keeps one copy of equal bytes). Log space is reserved, not
//! counted as written: the log stream keeps a number of entries per
//! function, each at most the function's `max_log_bytes`, so a function
//! reserves their product whether it logs or not, and a tenant's logs can
//! never take more than its quota. Jobs are bounded by
//! `ApiConfig::max_jobs_per_user`.
//!
//! Exact per API server: one user's uploads pass the check and write their
//! function one at a time (a per-user turn). Uploads of one user through
//! different API servers at the same instant can each pass it, so a user
//! can overshoot by at most one function per further API server.

use std::collections::HashSet;

use nimbus_core::FunctionMeta;

use crate::ApiError;

/// Quotas per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Functions one user may have.
    pub functions: u64,
    /// Bytes of modules one user's functions may hold in all.
    pub module_bytes: u64,
    /// Bytes of logs one user's functions may keep in all, reserved per
    /// function as entries kept x its `max_log_bytes`.
    pub log_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            functions: 100,
            // 20 Python components (~22 MB each), or thousands of small ones.
            module_bytes: 512 << 20,
            // 100 functions at the default 64 KiB log cap, 50 entries each,
            // reserve 312.5 MiB.
            log_bytes: 512 << 20,
        }
    }
}

/// What one user's functions hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub functions: u64,
    pub module_bytes: u64,
    /// Log space reserved (see the module docs).
    pub log_bytes: u64,
}

impl Usage {
    /// The usage of `functions`, whose logs keep `log_entries` each.
    pub(crate) fn of(functions: &[FunctionMeta], log_entries: u64) -> Self {
        let mut seen = HashSet::new();
        let module_bytes = functions
            .iter()
            .filter(|f| seen.insert(f.digest.as_str()))
            .map(|f| f.size)
            .sum();
        Self {
            functions: functions.len() as u64,
            module_bytes,
            log_bytes: functions
                .iter()
                .map(|f| log_reservation(f.limits.max_log_bytes, log_entries))
                .sum(),
        }
    }
}

impl Quotas {
    /// Refuse one more function before anything is compiled.
    pub(crate) fn check_count(&self, usage: Usage) -> Result<(), ApiError> {
        if usage.functions >= self.functions {
            return Err(ApiError::QuotaExceeded(format!(
                "you have {} functions, the quota is {}; delete one first",
                usage.functions, self.functions
            )));
        }
        Ok(())
    }

    /// Refuse a function whose module (`digest`, `size` bytes) or logs
    /// (`max_log_bytes` per entry, `log_entries` kept) would take the user
    /// past a quota. A module the user already holds adds nothing.
    pub(crate) fn check_upload(
        &self,
        functions: &[FunctionMeta],
        digest: &str,
        size: u64,
        max_log_bytes: u64,
        log_entries: u64,
    ) -> Result<(), ApiError> {
        let usage = Usage::of(functions, log_entries);
        self.check_count(usage)?;
        let added = if functions.iter().any(|f| f.digest == digest) {
            0
        } else {
            size
        };
        if usage.module_bytes + added > self.module_bytes {
            return Err(ApiError::QuotaExceeded(format!(
                "your modules take {} bytes and this one {added}, the quota is {} bytes; delete functions first",
                usage.module_bytes, self.module_bytes
            )));
        }
        let reserved = log_reservation(max_log_bytes, log_entries);
        if usage.log_bytes.saturating_add(reserved) > self.log_bytes {
            return Err(ApiError::QuotaExceeded(format!(
                "your functions reserve {} bytes of logs and this one {reserved} \
                 ({log_entries} entries of up to {max_log_bytes} bytes), the quota is {} bytes; \
                 ask for a smaller max_log_bytes or delete functions first",
                usage.log_bytes, self.log_bytes
            )));
        }
        Ok(())
    }
}

/// The log space a function reserves: `entries` of `max_log_bytes`.
pub(crate) fn log_reservation(max_log_bytes: u64, entries: u64) -> u64 {
    max_log_bytes.saturating_mul(entries)
}
