//! The sweeper: every `module_gc_interval`, reclaim the objects of the
//! modules store no function uses (`nimbus_store`'s `module_gc.rs` says how
//! this is safe against uploads and against other API servers sweeping).

use std::sync::Arc;

use crate::AppState;
use crate::background::BackgroundTask;

/// Start sweeping, unless sweeps are off or there is no store.
pub(crate) fn start(state: &Arc<AppState>) -> BackgroundTask {
    let interval = state.config.module_gc_interval;
    let grace = state.config.module_gc_grace;
    let Ok(storage) = state.storage().cloned() else {
        return BackgroundTask(None);
    };
    if interval.is_zero() {
        return BackgroundTask(None);
    }
    BackgroundTask(Some(tokio::spawn(async move {
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
