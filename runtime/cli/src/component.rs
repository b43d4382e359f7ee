//! Starting and stopping a long-running part of Nimbus (an API server, a
//! worker) in one way, whoever runs it: `nimbus up`, `nimbus api`, `nimbus
//! worker`, [`crate::platform::Components`] and the end-to-end tests.
//!
//! A component is a task that serves until its [`Shutdown`] resolves, then
//! finishes what it has in flight and returns. The API server and the worker
//! both take their shutdown as a future, so stopping one is always the same
//! two steps: request the stop, then await the task for its error.
//! [`Component::abort`] is the other way out, the one a crash looks like:
//! nothing in flight finishes.

use std::future::Future;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};

/// Resolves once a stop is requested. Clone it for everything that must
/// hear the same request.
///
/// # Examples
///
/// ```no_run
/// # async fn example() {
/// use nimbus_cli::component::Shutdown;
///
/// let (trigger, shutdown) = Shutdown::trigger();
/// let serving = tokio::spawn(shutdown.requested());
/// trigger.request();
/// serving.await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Requests the stop of every [`Shutdown`] made with it. Dropping it
/// requests the stop too: a component whose handle is dropped winds down
/// rather than running on with nothing able to stop it.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

impl Trigger {
    /// Request the stop; requesting it again does nothing.
    pub fn request(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A shutdown resolved by its [`Trigger`].
    pub fn trigger() -> (Trigger, Self) {
        let (sender, receiver) = watch::channel(false);
        (Trigger(sender), Self(receiver))
    }

    /// A shutdown that resolves when `signal` does. Must be called within a
    /// tokio runtime: `signal` is awaited on a task of its own.
    pub fn on(signal: impl Future<Output = ()> + Send + 'static) -> Self {
        let (trigger, shutdown) = Self::trigger();
        tokio::spawn(async move {
            signal.await;
            trigger.request();
        });
        shutdown
    }

    /// A shutdown that resolves on SIGINT (Ctrl-C) or SIGTERM. Both handlers
    /// are installed before this returns: from then on, either signal is a
    /// request to stop gracefully, no longer the default of dying at once.
    pub fn on_terminate() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(Self::on(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }))
    }

    /// Resolves once the stop is requested (at once if it already was).
    pub async fn requested(mut self) {
        // An error means every trigger is gone: that is a request too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// A component running as a task of this process, with the trigger that
/// stops it.
#[derive(Debug)]
pub struct Component {
    name: String,
    stop: Trigger,
    task: JoinHandle<anyhow::Result<()>>,
    /// How the task ended, once [`Component::ended`] has seen it end.
    ended: Option<Result<anyhow::Result<()>, JoinError>>,
}

impl Component {
    /// Spawn `run` with the [`Shutdown`] this handle triggers; `name` goes
    /// into its errors.
    pub fn spawn<F, Fut>(name: impl Into<String>, run: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, shutdown) = Shutdown::trigger();
        Self {
            name: name.into(),
            stop,
            task: tokio::spawn(run(shutdown)),
            ended: None,
        }
    }

    /// Stop gracefully: request the stop, wait until the component has
    /// finished what was in flight, and return its error if it failed (or
    /// had failed already).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.request();
        let joined = match self.ended.take() {
            Some(joined) => joined,
            None => self.task.await,
        };
        joined
            .with_context(|| format!("the {} task panicked or was aborted", self.name))?
            .with_context(|| format!("the {} failed", self.name))
    }

    /// Run until `shutdown` resolves, then [`stop`](Self::stop). If the
    /// component ends first, return at once: with its error, or with one
    /// saying it stopped by itself (a server that stops serving while
    /// nobody asked must not look like a clean exit).
    pub async fn run_until(mut self, shutdown: Shutdown) -> anyhow::Result<()> {
        let by_itself = tokio::select! {
            () = shutdown.requested() => {
                tracing::info!("shutting down");
                false
            }
            () = self.ended() => true,
        };
        let name = self.name.clone();
        self.stop().await?;
        anyhow::ensure!(!by_itself, "the {name} stopped by itself");
        Ok(())
    }

    /// Resolves once the task has ended, for whatever reason, without
    /// consuming the handle: [`stop`](Self::stop) still returns its error.
    /// Cancel-safe, so it can race other futures in a `select!`.
    pub async fn ended(&mut self) {
        if self.ended.is_none() {
            self.ended = Some((&mut self.task).await);
        }
    }

    /// Cancel the task at its next await point, with no graceful stop:
    /// what a crash looks like from outside. Await [`ended`](Self::ended)
    /// to know it is gone.
    pub fn abort(&self) {
        self.task.abort();
    }
}
