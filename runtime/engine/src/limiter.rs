//! Memory and table caps for one Store.
//!
//! wasmtime's `StoreLimits` makes an over-cap `memory.grow` return -1, which
//! a guest may ignore or turn into an unrelated trap; we want the failure
//! named. So growing past the cap is an error ([`LimitExceeded`]) that traps
//! the guest and that the invoker maps to `memory_limit`.

/// The error a growth past the cap traps with.
#[derive(Debug, thiserror::Error)]
#[error("{what} would grow to {desired} (limit {limit})")]
pub(crate) struct LimitExceeded {
    what: &'static str,
    desired: usize,
    limit: usize,
}

/// Tracks the sum of all linear memories and table elements of one instance.
pub(crate) struct Limiter {
    memory_cap: usize,
    table_cap: usize,
    memory_used: usize,
}

/// No function needs more table slots than this; it bounds host memory spent on tables.
pub(crate) const TABLE_ELEMENTS_CAP: usize = 100_000;

impl Limiter {
    pub(crate) fn new(memory_cap: usize) -> Self {
        Self {
            memory_cap,
            table_cap: TABLE_ELEMENTS_CAP,
            memory_used: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Past the memory's own declared maximum the grow fails with -1, as
        // the spec says; that is the guest's business, not our limit, and it
        // must not count against the cap.
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let others = self.memory_used.saturating_sub(current);
        let total = others.saturating_add(desired);
        if total > self.memory_cap {
            return Err(LimitExceeded {
                what: "linear memory",
                desired: total,
                limit: self.memory_cap,
            }
            .into());
        }
        self.memory_used = total;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Approved above but refused by wasmtime (out of address space in
        // the slot): nothing was allocated, and the guest sees -1.
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_cap {
            return Err(LimitExceeded {
                what: "table",
                desired,
                limit: self.table_cap,
            }
            .into());
        }
        Ok(true)
    }
}
