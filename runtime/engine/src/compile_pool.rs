//! Compiling off the request path: a bounded pool of low-priority threads.
//!
//! Cranelift is the heaviest thing a Nimbus process does: a 20 MB component
//! keeps every core busy for tens of seconds. Run on the async runtime's
//! blocking threads at normal priority, that starves whatever else the
//! process serves (logins, `execute`, `/healthz`, a worker's invocations).
//! So every compile runs here:
//! - on a rayon pool of its own, one thread per core, whose threads run at
//!   a lower scheduling priority (nice 10): wasmtime's parallel compilation
//!   stays inside this pool, uses every idle cycle, and yields the CPU to
//!   request handling the moment it wants it;
//! - at most [`EngineConfig::compile_concurrency`](crate::EngineConfig) at
//!   a time: further compiles wait for a turn (queue) instead of all
//!   sharing the cores and all finishing late.
//!
//! A turn is held by the job itself, not by whoever waits for it, so a
//! caller that goes away (an upload whose client disconnected) does not let
//! an extra compile start while its own is still running.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crate::{CompileError, Engine};

/// The nice value of compiling threads (0 is the default, 19 the lowest).
const COMPILE_NICE: i32 = 10;

pub(crate) struct CompilePool {
    threads: rayon::ThreadPool,
    turns: Arc<tokio::sync::Semaphore>,
}

impl CompilePool {
    pub(crate) fn new(concurrency: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(cores)
            .thread_name(|i| format!("nimbus-compile-{i}"))
            .start_handler(|_| lower_priority())
            .build()?;
        Ok(Self {
            threads,
            turns: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
        })
    }
}

/// Lower the calling thread's scheduling priority (Linux keeps a nice value
/// per thread). Failing to is harmless: the thread just competes as usual.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_priority() {
    // SAFETY: two system calls about the calling thread, no memory passed.
    let outcome = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, COMPILE_NICE)
    };
    if outcome != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not lower the priority of a compiling thread"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

impl Engine {
    /// Run `job` (a compile and what goes with it: checks, serialising the
    /// artifact) on the compile pool, waiting for a turn first. See the
    /// module docs. A job that panics answers [`CompileError::Panicked`].
    pub async fn compile_job<T, F>(&self, job: F) -> Result<T, CompileError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> T + Send + 'static,
    {
        let pool = &self.inner.compile_pool;
        let turn = pool
            .turns
            .clone()
            .acquire_owned()
            .await
            .expect("the compile semaphore is never closed");
        let (answer, answered) = tokio::sync::oneshot::channel();
        let engine = self.clone();
        pool.threads.spawn(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| job(&engine)));
            drop(turn);
            let _ = answer.send(result);
        });
        match answered.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a compile panicked".to_owned());
                Err(CompileError::Panicked(message))
            }
            Err(_) => Err(CompileError::Panicked(
                "the compile pool dropped the job".to_owned(),
            )),
        }
    }
}
