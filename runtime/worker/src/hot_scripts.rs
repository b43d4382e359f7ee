//! JavaScript functions prepared once they are hot: after
//! [`WorkerConfig::prepare_scripts_after`](crate::WorkerConfig) successful
//! calls on this worker, a function's script module is replaced in the
//! engine's cache by a snapshot taken after its top level ran
//! (`nimbus_engine`'s `tier_up.rs`), which burns the same fuel and skips
//! loading the bytecode and running the top level on every call.
//!
//! Counting is a map lookup on the call's path; preparing happens in the
//! background, one function at a time, under the function's own limits
//! (it costs no more than one of its calls), then compiles on the engine's
//! low-priority pool. The prepared module stays on this worker (it is never
//! stored: any worker makes its own, and nothing one makes is trusted by
//! another). A function whose top level cannot be snapshotted, or whose
//! prepared module the cache cannot hold, is not tried again; one that
//! failed for a passing reason, or whose prepared module the cache evicted,
//! is counted afresh, needing twice the calls each time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use nimbus_core::Limits;
use nimbus_engine::{CompiledModule, TierUpError};
use tokio::sync::mpsc;

use crate::Worker;
use crate::metrics::Preparation;

/// Functions tracked at most; past that, the map starts over (a worker
/// serving that many distinct JavaScript functions has few hot ones).
const MAX_TRACKED: usize = 100_000;

/// Functions waiting to be prepared; more are counted again.
const QUEUED: usize = 64;

/// Where each tracked script stands.
enum Count {
    /// Successful calls so far, and the number that makes it hot.
    Calls { calls: u32, needed: u32 },
    /// Queued or being prepared.
    Preparing { needed: u32 },
    /// Prepared and in the cache. Seen again as a script: it was evicted.
    Prepared { needed: u32 },
    /// Not worth preparing: never tried again.
    Refused,
}

/// A script to prepare, and the limits of the call that made it hot.
type Queued = (Arc<CompiledModule>, Limits);

/// The calls counted, and the queue of scripts to prepare.
pub(crate) struct HotScripts {
    counts: Mutex<HashMap<String, Count>>,
    queue: mpsc::Sender<Queued>,
}

impl HotScripts {
    /// The counter, and the receiving end of its queue for
    /// [`Worker::prepare_hot_scripts`].
    pub(crate) fn new() -> (Self, mpsc::Receiver<Queued>) {
        let (queue, queued) = mpsc::channel(QUEUED);
        let counts = Mutex::default();
        (Self { counts, queue }, queued)
    }

    fn set(&self, digest: &str, count: Count) {
        self.counts
            .lock()
            .expect("counts lock")
            .insert(digest.to_owned(), count);
    }
}

/// Twice `needed`, for a function counted afresh.
fn again(needed: u32) -> Count {
    Count::Calls {
        calls: 0,
        needed: needed.saturating_mul(2),
    }
}

impl Worker {
    /// Count a successful call of `module` under `limits`; queue it to be
    /// prepared on the call that makes it hot.
    pub(crate) fn count_call(&self, module: &Arc<CompiledModule>, limits: &Limits) {
        let after = self.config.prepare_scripts_after;
        if after == 0 || module.preparable_on().is_none() {
            return;
        }
        let hot = &self.hot_scripts;
        let needed = {
            let mut counts = hot.counts.lock().expect("counts lock");
            if counts.len() >= MAX_TRACKED && !counts.contains_key(module.digest()) {
                counts.retain(|_, count| matches!(count, Count::Preparing { .. }));
            }
            let count = counts
                .entry(module.digest().to_owned())
                .or_insert(Count::Calls {
                    calls: 0,
                    needed: after,
                });
            if let Count::Prepared { needed } = *count {
                *count = again(needed);
            }
            let Count::Calls { calls, needed } = count else {
                return;
            };
            *calls += 1;
            if *calls < *needed {
                return;
            }
            let needed = *needed;
            *count = Count::Preparing { needed };
            needed
        };
        if hot.queue.try_send((module.clone(), *limits)).is_err() {
            hot.set(module.digest(), again(needed));
        }
    }

    /// Prepare the scripts [`Worker::count_call`] queues, one at a time,
    /// until the worker stops.
    pub(crate) async fn prepare_hot_scripts(self: Arc<Self>, mut queued: mpsc::Receiver<Queued>) {
        while let Some((script, limits)) = queued.recv().await {
            let started = Instant::now();
            let digest = script.digest().to_owned();
            let needed = match self
                .hot_scripts
                .counts
                .lock()
                .expect("counts lock")
                .get(&digest)
            {
                Some(Count::Preparing { needed }) => *needed,
                _ => self.config.prepare_scripts_after,
            };
            let prepared = self.prepare(&script, &limits).await;
            let prepared = match prepared {
                Ok(prepared) => {
                    let fuel = prepared.preparation().map_or(0, |(fuel, _)| fuel);
                    if self.engine.promote(prepared) {
                        Ok(fuel)
                    } else {
                        Err(PrepareError::Refused(
                            "the module cache cannot hold it".into(),
                        ))
                    }
                }
                Err(e) => Err(e),
            };
            match prepared {
                Ok(fuel) => {
                    self.hot_scripts.set(&digest, Count::Prepared { needed });
                    self.metrics.preparation(Preparation::Prepared);
                    tracing::info!(
                        %digest,
                        fuel,
                        ms = started.elapsed().as_millis() as u64,
                        "prepared a hot JavaScript function"
                    );
                }
                Err(PrepareError::Refused(why)) => {
                    self.hot_scripts.set(&digest, Count::Refused);
                    self.metrics.preparation(Preparation::Refused);
                    tracing::debug!(%digest, %why, "not preparing a JavaScript function");
                }
                Err(PrepareError::Failed(why)) => {
                    self.hot_scripts.set(&digest, again(needed));
                    self.metrics.preparation(Preparation::Failed);
                    tracing::warn!(%digest, %why, "could not prepare a JavaScript function");
                }
            }
        }
    }

    async fn prepare(
        &self,
        script: &Arc<CompiledModule>,
        limits: &Limits,
    ) -> Result<Arc<CompiledModule>, PrepareError> {
        let interpreter = script.preparable_on().expect("only scripts are queued");
        let interpreter = match self.storage.module(interpreter).await {
            Ok(Some(bytes)) => Bytes::from(bytes),
            Ok(None) => return Err(PrepareError::Failed("its interpreter is not stored".into())),
            Err(e) => return Err(PrepareError::Failed(nimbus_core::error::describe(&e))),
        };
        self.engine
            .prepare_script(script, interpreter, limits)
            .await
            .map_err(|e| {
                let why = nimbus_core::error::describe(&e);
                match e {
                    // What the function does: it would do it again.
                    TierUpError::NotPreparable
                    | TierUpError::WrongInterpreter { .. }
                    | TierUpError::Impure(_)
                    | TierUpError::Differs(_) => PrepareError::Refused(why),
                    // A timeout under load, a compile that failed: perhaps
                    // not next time.
                    TierUpError::Failed(_) | TierUpError::Compile(_) => PrepareError::Failed(why),
                }
            })
    }
}

enum PrepareError {
    /// Never worth trying again.
    Refused(String),
    /// Perhaps next time (counted afresh, needing twice the calls).
    Failed(String),
}
