//! The wasmtime executor: compile untrusted modules once, run each invocation
//! in a fresh `Store` under fuel, memory, table, deadline and output limits,
//! and say precisely why a run failed.
//!
//! Why it is shaped this way:
//! - One `wasmtime::Engine` and one `Linker` per process; each module is
//!   compiled once, pre-linked (`InstancePre`) and kept in a bounded cache by
//!   its sha256 digest, so an invocation costs an instantiation, not a compile.
//! - The pooling allocator with copy-on-write memory images makes that
//!   instantiation cheap; a semaphore sized to the pool makes callers wait for
//!   a slot instead of failing when every slot is busy.
//! - Guests run on tokio through wasmtime's async support. A single ticker
//!   thread bumps the engine epoch; at every tick a running guest yields to the
//!   scheduler, and past its deadline it is stopped. One busy guest therefore
//!   cannot starve the others, and a guest asleep in a host call is cut off by
//!   an outer timeout.
//! - Fuel is the deterministic cost: the same module and input burn the same
//!   fuel every time, on every machine.
//!
//! The engine knows nothing about NATS, nor about HTTP beyond handing a
//! request to a `wasi:http` component and reading its response.
#![deny(missing_docs)]

mod code_cache;
mod compile;
mod compile_budget;
mod compile_pool;
mod compile_process;
mod component;
mod config;
mod error;
pub mod features;
mod guest_memory;
mod http;
mod http_import;
mod invoke;
mod keyvalue;
mod kv;
mod kv_import;
mod limiter;
mod module;
mod module_cache;
mod outbound;
mod pipe;
mod scalar;
mod spent_segments;
mod ticker;
mod tier_up;

use std::sync::{Arc, Mutex};

use wasmtime::{InstanceAllocationStrategy, Linker, PoolingAllocationConfig};

pub use code_cache::CodeCacheStats;
pub use compile::LoadStats;
pub use compile_budget::{
    CompileBudget, MAX_FUNCTION_BODY_BYTES, MAX_FUNCTION_LOCALS, MAX_FUNCTIONS,
};
pub use compile_process::{COMPILE_MODULE_COMMAND, serve_compile_module};
pub use config::EngineConfig;
pub use error::CompileError;
pub use invoke::{Host, Outcome};
pub use kv::{KeyValue, KvAccess};
pub use module::{Abi, CompiledModule, Scalar, WASI_MODULE, digest, to_binary};
pub use outbound::{Outbound, Reach};
pub use tier_up::TierUpError;

use module_cache::ModuleCache;
use ticker::Ticker;

/// Core instances, memories and tables pooled per invocation slot.
const CORE_INSTANCES_PER_SLOT: u32 = 16;
const MEMORIES_PER_SLOT: u32 = 2;
const TABLES_PER_SLOT: u32 = 8;

/// Memory and table bytes per pooled slot kept resident between instances.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// Compiles and runs functions. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    wasmtime: wasmtime::Engine,
    linker: Linker<Host>,
    component_linker: wasmtime::component::Linker<component::ComponentHost>,
    cache: Mutex<ModuleCache>,
    /// Modules kept whatever the cache evicts (`Engine::keep`).
    kept: Mutex<std::collections::HashMap<String, Arc<CompiledModule>>>,
    /// The interpreter last instrumented to prepare scripts, by digest
    /// (`tier_up.rs`).
    instrumented: Mutex<Option<(String, wasmtime::InstancePre<Host>)>>,
    code_cache: Option<Arc<code_cache::CodeCache>>,
    compile_pool: compile_pool::CompilePool,
    slots: tokio::sync::Semaphore,
    /// Modules compiled with Cranelift, loaded from artifacts, and of those
    /// mapped from a file.
    compiled: std::sync::atomic::AtomicU64,
    loaded: std::sync::atomic::AtomicU64,
    mapped: std::sync::atomic::AtomicU64,
    /// Guests run, counted as each starts (`Engine::runs`).
    runs: std::sync::atomic::AtomicU64,
    config: EngineConfig,
    _ticker: Ticker,
}

impl Engine {
    /// Build the engine, its linker and its epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self, wasmtime::Error> {
        let mut wasm_config = wasmtime::Config::new();
        wasm_config
            .consume_fuel(config.consume_fuel)
            .epoch_interruption(true)
            // Artifacts carry neither a symbol table nor `.eh_frame`: wasm
            // backtraces need neither (they walk frame pointers and read
            // wasmtime's own address map, kept for the offsets in trap
            // messages), host panics never unwind through guest frames, and
            // both cost bytes on every artifact fetch (~2.6 of the Python
            // component's 43 MB) and, for unwind tables, a registration per
            // function at every load.
            .debug_symbols(false)
            .native_unwind_info(false);
        features::configure(&mut wasm_config);
        if config.pooling {
            let slots = config.max_concurrency;
            let mut pool = PoolingAllocationConfig::default();
            // A component instance is several core instances (its module
            // and the adapter shims wit-component adds; a componentize-py
            // component holds a dozen), each with its memory and tables.
            pool.total_component_instances(slots)
                .total_core_instances(slots * CORE_INSTANCES_PER_SLOT)
                .total_memories(slots * MEMORIES_PER_SLOT)
                .total_tables(slots * TABLES_PER_SLOT)
                .total_stacks(slots)
                .max_memory_size(usize::try_from(config.max_memory_bytes)?)
                .table_elements(limiter::TABLE_ELEMENTS_CAP)
                // Reset the pages a freed slot dirtied by copying the image
                // back rather than dropping them, so the next instance starts
                // without a page fault per page it touches (QuickJS snapshots
                // touch many). PAGEMAP_SCAN (Linux 6.7+) finds just those pages.
                .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
                .table_keep_resident(KEEP_RESIDENT_BYTES)
                .pagemap_scan(wasmtime::Enabled::Auto);
            wasm_config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let code_cache = (config.code_cache_bytes > 0)
            .then(|| Arc::new(code_cache::CodeCache::new(config.code_cache_bytes)));
        if let Some(cache) = &code_cache {
            wasm_config.enable_incremental_compilation(cache.clone())?;
        }
        let wasmtime = wasmtime::Engine::new(&wasm_config)?;
        let linker = invoke::linker(&wasmtime)?;
        let component_linker = component::linker(&wasmtime)?;
        let compile_pool = compile_pool::CompilePool::new(config.compile_concurrency)
            .map_err(wasmtime::Error::msg)?;
        let ticker = Ticker::start(wasmtime.clone(), config.epoch_tick);
        Ok(Self {
            inner: Arc::new(Inner {
                wasmtime,
                linker,
                component_linker,
                cache: Mutex::new(ModuleCache::new(config.cache_capacity, config.cache_bytes)),
                kept: Mutex::default(),
                instrumented: Mutex::default(),
                code_cache,
                compile_pool,
                slots: tokio::sync::Semaphore::new(config.max_concurrency as usize),
                compiled: Default::default(),
                loaded: Default::default(),
                mapped: Default::default(),
                runs: Default::default(),
                config,
                _ticker: ticker,
            }),
        })
    }
}

/// What one invocation may use besides computing: its environment
/// (variables and secrets), the hosts it may call and its function's
/// key-value stores.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// Environment variables (WASI `environ`, `wasi:cli/environment`,
    /// `wasi:config/store`).
    pub env: nimbus_core::Env,
    /// Outbound HTTP (`wasi:http/outgoing-handler`).
    pub outbound: Outbound,
    /// Key-value state (`wasi:keyvalue`, `nimbus_kv`).
    pub kv: KvAccess,
}
