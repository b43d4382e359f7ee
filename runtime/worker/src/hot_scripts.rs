//! JavaScript functions prepared once they are hot: after
//! [`WorkerConfig::prepare_scripts_after`](crate::WorkerConfig) calls on this
//! worker, a function's script module is replaced in the engine's cache by a
//! snapshot taken after its top level ran (`nimbus_engine`'s `tier_up.rs`),
//! which burns the same fuel and skips loading the bytecode and running the
//! top level on every call.
//!
//! Counting is a map lookup on the call's path; preparing happens in the
//! background, one function at a time, on the engine's low-priority compile
//! pool. The prepared module stays on this worker (it is never stored: any
//! worker makes its own, and nothing it makes is trusted by another). A
//! function whose top level cannot be snapshotted is not tried again; one
//! evicted from the cache is counted afresh when loaded again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use nimbus_engine::{CompiledModule, TierUpError};
use tokio::sync::mpsc;

use crate::Worker;
use crate::metrics::Preparation;

/// Functions counted at most; past that, new ones are not counted (a
/// worker serving that many distinct JavaScript functions has few hot ones).
const MAX_COUNTED: usize = 100_000;

/// Functions waiting to be prepared; more are dropped and counted again.
const QUEUED: usize = 64;

/// Where each counted script stands.
enum Count {
    Calls(u32),
    /// Queued or being prepared.
    Preparing,
    /// Its top level cannot be snapshotted: never tried again.
    Refused,
}

/// The calls counted, and the queue of scripts to prepare.
pub(crate) struct HotScripts {
    counts: Mutex<HashMap<String, Count>>,
    queue: mpsc::Sender<Arc<CompiledModule>>,
}

impl HotScripts {
    /// The counter, and the receiving end of its queue for
    /// [`Worker::prepare_hot_scripts`].
    pub(crate) fn new() -> (Self, mpsc::Receiver<Arc<CompiledModule>>) {
        let (queue, queued) = mpsc::channel(QUEUED);
        let counts = Mutex::default();
        (Self { counts, queue }, queued)
    }

    fn set(&self, digest: &str, count: Option<Count>) {
        let mut counts = self.counts.lock().expect("counts lock");
        match count {
            Some(count) => counts.insert(digest.to_owned(), count),
            None => counts.remove(digest),
        };
    }
}

impl Worker {
    /// Count a call of `module`; queue it to be prepared on the call that
    /// makes it hot.
    pub(crate) fn count_call(&self, module: &Arc<CompiledModule>) {
        let after = self.config.prepare_scripts_after;
        if after == 0 || module.preparable_on().is_none() {
            return;
        }
        let hot = &self.hot_scripts;
        {
            let mut counts = hot.counts.lock().expect("counts lock");
            let full = counts.len() >= MAX_COUNTED;
            let count = match counts.get_mut(module.digest()) {
                Some(count) => count,
                None if full => return,
                None => counts
                    .entry(module.digest().to_owned())
                    .or_insert(Count::Calls(0)),
            };
            let Count::Calls(calls) = count else {
                return;
            };
            *calls += 1;
            if *calls < after {
                return;
            }
            *count = Count::Preparing;
        }
        if hot.queue.try_send(module.clone()).is_err() {
            hot.set(module.digest(), None);
        }
    }

    /// Prepare the scripts [`Worker::count_call`] queues, one at a time,
    /// until the worker stops.
    pub(crate) async fn prepare_hot_scripts(
        self: Arc<Self>,
        mut queued: mpsc::Receiver<Arc<CompiledModule>>,
    ) {
        while let Some(script) = queued.recv().await {
            let started = Instant::now();
            let digest = script.digest().to_owned();
            match self.prepare(&script).await {
                Ok(prepared) => {
                    self.engine.promote(prepared);
                    self.hot_scripts.set(&digest, None);
                    self.metrics.preparation(Preparation::Prepared);
                    tracing::info!(
                        %digest,
                        ms = started.elapsed().as_millis() as u64,
                        "prepared a hot JavaScript function"
                    );
                }
                Err(PrepareError::Refused(why)) => {
                    self.hot_scripts.set(&digest, Some(Count::Refused));
                    self.metrics.preparation(Preparation::Refused);
                    tracing::debug!(%digest, %why, "not preparing a JavaScript function");
                }
                Err(PrepareError::Failed(why)) => {
                    // Counted afresh: maybe it works next time.
                    self.hot_scripts.set(&digest, None);
                    self.metrics.preparation(Preparation::Failed);
                    tracing::warn!(%digest, %why, "could not prepare a JavaScript function");
                }
            }
        }
    }

    async fn prepare(
        &self,
        script: &Arc<CompiledModule>,
    ) -> Result<Arc<CompiledModule>, PrepareError> {
        let interpreter = script.preparable_on().expect("only scripts are queued");
        let interpreter = match self.storage.module(interpreter).await {
            Ok(Some(bytes)) => Bytes::from(bytes),
            Ok(None) => return Err(PrepareError::Failed("its interpreter is not stored".into())),
            Err(e) => return Err(PrepareError::Failed(nimbus_core::error::describe(&e))),
        };
        self.engine
            .prepare_script(script, interpreter)
            .await
            .map_err(|e: TierUpError| PrepareError::Refused(nimbus_core::error::describe(&e)))
    }
}

enum PrepareError {
    /// Preparing it failed: it would fail again.
    Refused(String),
    /// Its interpreter could not be read: perhaps next time.
    Failed(String),
}
