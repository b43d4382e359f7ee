//! Engine settings and their defaults.

use std::path::PathBuf;
use std::time::Duration;

use nimbus_core::Limits;
use serde::{Deserialize, Serialize};

use crate::CompileBudget;

/// Engine settings; the defaults suit a worker on a small machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Largest module accepted, in bytes (binary or WAT text).
    pub max_module_bytes: usize,
    /// Compiled modules kept in memory, at most.
    pub cache_capacity: usize,
    /// Bytes of compiled modules kept in memory, at most: the size of each
    /// module's loaded image (machine code plus its data segments). The
    /// least recently used modules are dropped first; a module larger than
    /// the whole budget is still returned to its caller, just not kept.
    /// wasmtime also keeps a copy-on-write image of each module's initial
    /// memory, which this does not count: for data-heavy modules (JS
    /// snapshots) resident memory can approach twice this budget.
    pub cache_bytes: u64,
    /// Invocations running at once; also the number of pooled instance slots.
    pub max_concurrency: u32,
    /// Use the pooling instance allocator (fast instantiation, reserves
    /// virtual address space up front) instead of on-demand allocation.
    pub pooling: bool,
    /// The most linear memory any invocation may get (the platform maximum).
    pub max_memory_bytes: u64,
    /// How often the epoch advances: the granularity of deadlines and of
    /// guests yielding to the scheduler.
    pub epoch_tick: Duration,
    /// Meter fuel. Only benchmarks turn this off, to measure its overhead;
    /// without it fuel limits are not enforced and `fuel_consumed` is 0.
    pub consume_fuel: bool,
    /// Bytes of machine code kept for reuse across compiles (Cranelift's
    /// incremental cache, see `code_cache.rs`); 0 turns it off. Every JS
    /// function shares the QuickJS shim's code, so this is what makes the
    /// second and later JS compiles cheap.
    pub code_cache_bytes: usize,
    /// Compiles running at once; more wait for a turn (see
    /// `compile_pool.rs`). Each may use every core.
    pub compile_concurrency: usize,
    /// The program compiles run in (the `nimbus` binary, which serves
    /// `compile-module`), killed when a compile exceeds `compile_budget`
    /// (see `compile_process.rs`). `None` compiles in this process, under
    /// the static limits only.
    pub compiler: Option<PathBuf>,
    /// Time and memory a compile may take (with `compiler`).
    pub compile_budget: CompileBudget,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_module_bytes: 64 << 20,
            cache_capacity: 4096,
            cache_bytes: 1 << 30,
            max_concurrency: 64,
            pooling: true,
            max_memory_bytes: Limits::MAXIMUM.memory_bytes,
            epoch_tick: Duration::from_millis(1),
            consume_fuel: true,
            code_cache_bytes: 64 << 20,
            compile_concurrency: 2,
            compiler: None,
            compile_budget: CompileBudget::default(),
        }
    }
}
