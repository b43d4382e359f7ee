//! A task that runs as long as the server: aborted when its handle is
//! dropped (when `serve` returns).

/// Aborts its task when dropped; `None` when nothing was started.
pub(crate) struct BackgroundTask(pub(crate) Option<tokio::task::JoinHandle<()>>);

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
