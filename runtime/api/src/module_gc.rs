//! The sweeper: every `module_gc_interval`, reclaim the objects of the
//! modules store no function uses (`nimbus_store`'s `module_gc.rs` says how
//! this is safe against uploads and against other API servers sweeping).

use std::sync::Arc;

use crate::AppState;

/// Aborts the sweeper when dropped (when the server stops).
pub(crate) struct Sweeper(Option<tokio::task::JoinHandle<()>>);

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Start sweeping, unless sweeps are off or there is no store.
pub(crate) fn start(state: &Arc<AppState>) -> Sweeper {
    let interval = state.config.module_gc_interval;
    let grace = state.config.module_gc_grace;
    let Ok(storage) = state.storage().cloned() else {
        return Sweeper(None);
    };
    if interval.is_zero() {
        return Sweeper(None);
    }
    Sweeper(Some(tokio::spawn(async move {
        // Servers started together do not sweep in lockstep.
        let jitter = interval.mul_f64(rand::random::<f64>() * 0.2);
        tokio::time::sleep(jitter).await;
        loop {
            match storage.collect_garbage(grace).await {
                Ok(sweep) if sweep.reclaimed > 0 => tracing::info!(
                    reclaimed = sweep.reclaimed,
                    bytes = sweep.reclaimed_bytes,
                    young = sweep.young,
                    "swept the modules store"
                ),
                Ok(sweep) => tracing::debug!(young = sweep.young, "swept the modules store"),
                Err(e) => {
                    tracing::warn!(error = %nimbus_core::error::describe(&e), "could not sweep the modules store")
                }
            }
            tokio::time::sleep(interval).await;
        }
    })))
}
