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
//! The engine knows nothing about NATS or HTTP.
#![deny(missing_docs)]

mod code_cache;
mod limiter;
mod module;
mod pipe;
mod scalar;

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nimbus_core::{FunctionError, FunctionErrorKind, Limits};
use wasmtime::{
    InstanceAllocationStrategy, Linker, PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

pub use code_cache::CodeCacheStats;
pub use module::{Abi, CompiledModule, Scalar, WASI_MODULE, digest, to_binary};

use limiter::{LimitExceeded, Limiter};
use pipe::{CappedPipe, OutputOverflow, Overflow};

/// Engine settings; the defaults suit a worker on a small machine.
#[derive(Debug, Clone)]
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
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_module_bytes: 8 << 20,
            cache_capacity: 256,
            cache_bytes: 1 << 30,
            max_concurrency: 64,
            pooling: true,
            max_memory_bytes: Limits::MAXIMUM.memory_bytes,
            epoch_tick: Duration::from_millis(1),
            consume_fuel: true,
            code_cache_bytes: 64 << 20,
        }
    }
}

/// Why a module was refused at compile time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// Larger than [`EngineConfig::max_module_bytes`].
    #[error("module is {size} bytes, the limit is {max}")]
    TooLarge {
        /// Size of what was uploaded.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Neither a wasm binary nor valid WAT text.
    #[error("not a WebAssembly module: {0}")]
    NotWasm(String),
    /// A wasm binary that does not validate.
    #[error("invalid WebAssembly module: {0}")]
    Invalid(String),
    /// Imports something other than WASI preview 1 functions.
    #[error("forbidden import {0}")]
    ForbiddenImport(String),
    /// No entry point the platform knows how to call.
    #[error("no entry point: {0}")]
    NoEntryPoint(String),
    /// Could never run under the limits it would get.
    #[error("the module cannot run within its limits: {0}")]
    ExceedsLimits(String),
    /// A precompiled artifact this engine cannot load.
    #[error("unusable precompiled artifact: {0}")]
    Artifact(String),
}

/// What one invocation produced. Logs and fuel are reported whether the
/// function succeeded or not.
#[derive(Debug)]
pub struct Invocation {
    /// The result JSON text, or why there is none.
    pub result: Result<Vec<u8>, FunctionError>,
    /// Fuel burned.
    pub fuel_consumed: u64,
    /// Wall time from instantiation to the end of the call.
    pub duration: Duration,
    /// What the guest wrote to stderr, up to the log cap.
    pub logs: Vec<u8>,
    /// Whether stderr output was dropped at the cap.
    pub logs_truncated: bool,
}

/// Per-Store host state.
pub struct Host {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

/// Largest `random_get` a guest may ask for in one call.
const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// Memory and table bytes per pooled slot kept resident between instances.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// Bytes in a WebAssembly page.
const WASM_PAGE_BYTES: u64 = 64 << 10;

/// Fuel between two yields of a running guest: about 0.1 ms of compute,
/// short enough for fairness, long enough that yielding costs little.
const FUEL_YIELD_INTERVAL: u64 = 1_000_000;

/// The error a guest past its deadline is stopped with.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

/// Compiles and runs functions. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    wasmtime: wasmtime::Engine,
    linker: Linker<Host>,
    cache: Mutex<ModuleCache>,
    code_cache: Option<Arc<code_cache::CodeCache>>,
    slots: tokio::sync::Semaphore,
    config: EngineConfig,
    _ticker: Ticker,
}

impl Engine {
    /// Build the engine, its linker and its epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self, wasmtime::Error> {
        let mut wasm_config = wasmtime::Config::new();
        wasm_config
            .consume_fuel(config.consume_fuel)
            .epoch_interruption(true);
        if config.pooling {
            let slots = config.max_concurrency;
            let mut pool = PoolingAllocationConfig::default();
            pool.total_core_instances(slots)
                .total_memories(slots)
                .total_tables(slots)
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
        let mut linker = Linker::new(&wasmtime);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |host: &mut Host| &mut host.wasi)?;
        let ticker = Ticker::start(wasmtime.clone(), config.epoch_tick);
        Ok(Self {
            inner: Arc::new(Inner {
                wasmtime,
                linker,
                cache: Mutex::new(ModuleCache::new(config.cache_capacity, config.cache_bytes)),
                code_cache,
                slots: tokio::sync::Semaphore::new(config.max_concurrency as usize),
                config,
                _ticker: ticker,
            }),
        })
    }

    /// Validate and compile `source` (wasm binary or WAT text). Returns the
    /// module and its binary form, which is what gets stored and digested.
    ///
    /// CPU-bound (Cranelift): call it from a blocking context.
    pub fn compile<'a>(
        &self,
        source: &'a [u8],
    ) -> Result<(Arc<CompiledModule>, Cow<'a, [u8]>), CompileError> {
        let max = self.inner.config.max_module_bytes;
        if source.len() > max {
            return Err(CompileError::TooLarge {
                size: source.len(),
                max,
            });
        }
        let binary = to_binary(source)?;
        let digest = digest(&binary);
        if let Some(module) = self.cached(&digest) {
            return Ok((module, binary));
        }
        let module = wasmtime::Module::new(&self.inner.wasmtime, &binary)
            .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
        let compiled = self.finish(digest, module)?;
        Ok((compiled, binary))
    }

    /// The compiled module for `digest`, if this engine has it.
    pub fn cached(&self, digest: &str) -> Option<Arc<CompiledModule>> {
        self.inner.cache.lock().expect("cache lock").get(digest)
    }

    /// Number of compiled modules held.
    pub fn cached_modules(&self) -> usize {
        self.inner.cache.lock().expect("cache lock").entries.len()
    }

    /// Bytes of compiled modules held (see [`EngineConfig::cache_bytes`]).
    pub fn cached_bytes(&self) -> u64 {
        self.inner.cache.lock().expect("cache lock").bytes
    }

    /// How often compiles reused machine code (zero when the cache is off).
    pub fn code_cache_stats(&self) -> CodeCacheStats {
        self.inner
            .code_cache
            .as_ref()
            .map(|cache| cache.stats())
            .unwrap_or_default()
    }

    /// A native artifact of `module` that another engine with the same
    /// configuration can load with [`Engine::load_precompiled`].
    pub fn serialize(&self, module: &CompiledModule) -> Result<Vec<u8>, wasmtime::Error> {
        module.module.serialize()
    }

    /// A key that differs between engines whose artifacts are incompatible
    /// (wasmtime version, target, settings); store artifacts under it.
    pub fn artifact_key(&self) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner
            .wasmtime
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// Load a native artifact made by [`Engine::serialize`] for the module
    /// with `digest`, skipping compilation.
    ///
    /// Artifacts are machine code: they must come only from storage that is
    /// as trusted as this process (Nimbus's own object store), never from users.
    #[allow(unsafe_code)]
    pub fn load_precompiled(
        &self,
        digest: &str,
        artifact: &[u8],
    ) -> Result<Arc<CompiledModule>, CompileError> {
        if let Some(module) = self.cached(digest) {
            return Ok(module);
        }
        // SAFETY: wasmtime checks that the artifact was produced by a
        // compatible engine; its integrity rests on the trusted store it came
        // from, as documented above.
        let module = unsafe { wasmtime::Module::deserialize(&self.inner.wasmtime, artifact) }
            .map_err(|e| CompileError::Artifact(format!("{e:#}")))?;
        self.finish(digest.to_owned(), module)
    }

    fn finish(
        &self,
        digest: String,
        module: wasmtime::Module,
    ) -> Result<Arc<CompiledModule>, CompileError> {
        module::check_imports(&module)?;
        let abi = module::detect_abi(&module)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&module)
            .map_err(|e| CompileError::ForbiddenImport(format!("{e:#}")))?;
        let compiled = Arc::new(CompiledModule {
            digest: digest.clone(),
            abi,
            module,
            pre,
        });
        self.inner
            .cache
            .lock()
            .expect("cache lock")
            .insert(digest, compiled.clone());
        Ok(compiled)
    }

    /// Refuse, at upload, a module that could never start under `limits`:
    /// its initial memory is above the function's memory cap.
    pub fn check_limits(
        &self,
        module: &CompiledModule,
        limits: &Limits,
    ) -> Result<(), CompileError> {
        let resources = module.module.resources_required();
        let initial = resources
            .max_initial_memory_size
            .unwrap_or(0)
            .saturating_mul(WASM_PAGE_BYTES)
            .saturating_mul(u64::from(resources.num_memories));
        if initial > limits.memory_bytes {
            return Err(CompileError::ExceedsLimits(format!(
                "its initial linear memory is {initial} bytes, above the function's memory_bytes limit of {}",
                limits.memory_bytes
            )));
        }
        Ok(())
    }

    /// Run `module` once on `input` (JSON text) under `limits`.
    pub async fn invoke(
        &self,
        module: &CompiledModule,
        input: &[u8],
        limits: &Limits,
    ) -> Invocation {
        let refused = |error: FunctionError| Invocation {
            result: Err(error),
            fuel_consumed: 0,
            duration: Duration::ZERO,
            logs: Vec::new(),
            logs_truncated: false,
        };
        if input.len() as u64 > limits.max_input_bytes {
            return refused(FunctionError::new(
                FunctionErrorKind::InvalidInput,
                format!(
                    "input is {} bytes, the limit is {}",
                    input.len(),
                    limits.max_input_bytes
                ),
            ));
        }
        let params = match &module.abi {
            Abi::Command => None,
            Abi::Scalar { params, .. } => match scalar::params(input, params) {
                Ok(values) => Some(values),
                Err(e) => return refused(e),
            },
        };

        let _slot = self
            .inner
            .slots
            .acquire()
            .await
            .expect("semaphore never closed");
        let stdout = CappedPipe::new(clamp_usize(limits.max_output_bytes), Overflow::Trap);
        let stderr = CappedPipe::new(clamp_usize(limits.max_log_bytes), Overflow::Discard);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            // `random_get` fills its buffer on the host, outside the memory
            // limiter: keep each call small.
            .max_random_size(MAX_RANDOM_BYTES);
        if params.is_none() {
            wasi.stdin(MemoryInputPipe::new(input.to_vec()));
        }
        let host = Host {
            wasi: wasi.build_p1(),
            limiter: Limiter::new(clamp_usize(limits.memory_bytes)),
        };
        let mut store = Store::new(&self.inner.wasmtime, host);
        store.limiter(|host| &mut host.limiter);
        // Guests yield to the scheduler at every epoch tick, so neither a
        // busy loop nor a guest spending its time in host calls (which cost
        // almost no fuel) can hold a tokio thread. They also yield every
        // FUEL_YIELD_INTERVAL units of fuel: only a fuel yield writes the
        // guest's fuel counter back to the store (an epoch check does not),
        // so a guest stopped by its deadline still reports, to within one
        // interval, the fuel it burned.
        let metered = self.inner.config.consume_fuel;
        if metered {
            store.set_fuel(limits.fuel).expect("fuel is enabled");
            store
                .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
                .expect("fuel is enabled");
        }
        let start = Instant::now();
        let timeout = Duration::from_millis(limits.timeout_ms);
        let deadline = start + timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(DeadlineExceeded.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        // The epoch callback stops running guests; this outer timeout covers a
        // guest parked in a host call (a WASI sleep), where no epoch check runs.
        let grace = self.inner.config.epoch_tick * 4;
        let run = tokio::time::timeout(timeout + grace, run(&mut store, module, params)).await;
        let duration = start.elapsed();
        let fuel_consumed = if self.inner.config.consume_fuel {
            limits.fuel - store.get_fuel().unwrap_or(0)
        } else {
            0
        };
        drop(store);

        let logs = stderr.take();
        let mut result = match run {
            Err(_elapsed) => Err(FunctionError::new(
                FunctionErrorKind::Timeout,
                format!("deadline of {} ms exceeded", limits.timeout_ms),
            )),
            Ok(Ok(_)) if stdout.overflowed() => Err(output_too_large(limits)),
            Ok(Ok(RunOutput::Scalar(bytes))) => Ok(bytes),
            Ok(Ok(RunOutput::Stdout)) => command_output(stdout.take()),
            Ok(Err(error)) => Err(classify(error, &stdout, limits, &logs)),
        };
        if let Err(error) = &mut result {
            error.fuel_consumed = fuel_consumed;
        }
        Invocation {
            result,
            fuel_consumed,
            duration,
            logs,
            logs_truncated: stderr.overflowed(),
        }
    }
}

enum RunOutput {
    Scalar(Vec<u8>),
    Stdout,
}

async fn run(
    store: &mut Store<Host>,
    module: &CompiledModule,
    params: Option<Vec<wasmtime::Val>>,
) -> Result<RunOutput, wasmtime::Error> {
    let instance = module.pre.instantiate_async(&mut *store).await?;
    match (&module.abi, params) {
        (Abi::Scalar { results, .. }, Some(params)) => {
            let handle = instance
                .get_func(&mut *store, "handle")
                .expect("ABI detection found `handle`");
            let mut slots = scalar::result_slots(results);
            handle.call_async(&mut *store, &params, &mut slots).await?;
            Ok(RunOutput::Scalar(
                scalar::output(&slots).map_err(wasmtime::Error::new)?,
            ))
        }
        _ => {
            let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
            match start.call_async(&mut *store, ()).await {
                Ok(()) => Ok(RunOutput::Stdout),
                Err(e) if matches!(e.downcast_ref::<I32Exit>(), Some(I32Exit(0))) => {
                    Ok(RunOutput::Stdout)
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// A command's stdout must be one JSON document (surrounding whitespace
/// allowed). Writing nothing means `null`: a function with no result.
fn command_output(stdout: Vec<u8>) -> Result<Vec<u8>, FunctionError> {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(b"null".to_vec());
    }
    match serde_json::from_slice::<&serde_json::value::RawValue>(&stdout) {
        Ok(raw) => Ok(raw.get().as_bytes().to_vec()),
        Err(e) => {
            let preview = String::from_utf8_lossy(&stdout[..stdout.len().min(120)]).into_owned();
            Err(FunctionError::new(
                FunctionErrorKind::InvalidOutput,
                format!("stdout is not a JSON document ({e}); it starts with {preview:?}"),
            ))
        }
    }
}

fn output_too_large(limits: &Limits) -> FunctionError {
    FunctionError::new(
        FunctionErrorKind::OutputTooLarge,
        format!(
            "output exceeds the limit of {} bytes",
            limits.max_output_bytes
        ),
    )
}

/// Name the failure precisely: the limit that stopped the guest, the trap it
/// hit, or its exit code (with the tail of its stderr, where the Rust SDK
/// writes the error it returned).
fn classify(
    error: wasmtime::Error,
    stdout: &CappedPipe,
    limits: &Limits,
    logs: &[u8],
) -> FunctionError {
    use FunctionErrorKind as Kind;
    if stdout.overflowed() || error.is::<OutputOverflow>() {
        return output_too_large(limits);
    }
    if let Some(exceeded) = error.downcast_ref::<LimitExceeded>() {
        return FunctionError::new(Kind::MemoryLimit, exceeded.to_string());
    }
    if error.is::<DeadlineExceeded>() {
        return FunctionError::new(
            Kind::Timeout,
            format!("deadline of {} ms exceeded", limits.timeout_ms),
        );
    }
    if let Some(I32Exit(code)) = error.downcast_ref::<I32Exit>() {
        let tail = String::from_utf8_lossy(&logs[logs.len().saturating_sub(1024)..]);
        let tail = tail.trim();
        let message = if tail.is_empty() {
            format!("exited with code {code}")
        } else {
            format!("exited with code {code}: {tail}")
        };
        return FunctionError::new(Kind::Exit, message);
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => FunctionError::new(
                Kind::OutOfFuel,
                format!("fuel budget of {} exhausted", limits.fuel),
            ),
            Trap::Interrupt => FunctionError::new(
                Kind::Timeout,
                format!("deadline of {} ms exceeded", limits.timeout_ms),
            ),
            Trap::StackOverflow => FunctionError::new(
                Kind::Trap,
                format!("stack overflow: {}", trap_message(trap, &error)),
            ),
            other => FunctionError::new(Kind::Trap, trap_message(other, &error)),
        };
    }
    if let Some(function_error) = error.downcast_ref::<FunctionError>() {
        return function_error.clone();
    }
    FunctionError::new(Kind::Trap, format!("{error:#}"))
}

fn trap_message(trap: &Trap, error: &wasmtime::Error) -> String {
    match error.downcast_ref::<wasmtime::WasmBacktrace>() {
        Some(backtrace) => format!("{trap}\n{backtrace}"),
        None => trap.to_string(),
    }
}

fn clamp_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Least-recently-used cache of compiled modules by digest. Small (hundreds
/// of entries), so eviction scans instead of keeping a linked list.
struct ModuleCache {
    capacity: usize,
    max_bytes: u64,
    bytes: u64,
    clock: u64,
    entries: HashMap<String, CacheEntry>,
}

struct CacheEntry {
    module: Arc<CompiledModule>,
    bytes: u64,
    used: u64,
}

impl ModuleCache {
    fn new(capacity: usize, max_bytes: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
            clock: 0,
            entries: HashMap::new(),
        }
    }

    fn get(&mut self, digest: &str) -> Option<Arc<CompiledModule>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(digest).map(|entry| {
            entry.used = clock;
            entry.module.clone()
        })
    }

    fn insert(&mut self, digest: String, module: Arc<CompiledModule>) {
        let bytes = module.image_bytes();
        if bytes > self.max_bytes {
            return;
        }
        if let Some(old) = self.entries.remove(&digest) {
            self.bytes -= old.bytes;
        }
        while !self.entries.is_empty()
            && (self.entries.len() >= self.capacity || self.bytes + bytes > self.max_bytes)
        {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(digest, _)| digest.clone())
                .expect("not empty");
            let evicted = self.entries.remove(&oldest).expect("present");
            self.bytes -= evicted.bytes;
        }
        self.clock += 1;
        self.bytes += bytes;
        self.entries.insert(
            digest,
            CacheEntry {
                module,
                bytes,
                used: self.clock,
            },
        );
    }
}

/// The one thread that advances the engine's epoch.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: wasmtime::Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("nimbus-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
