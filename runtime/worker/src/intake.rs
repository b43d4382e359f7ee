//! Synchronous calls: the queue-group subscription, the bounded queue in
//! front of the slots, load shedding and replies.
//!
//! Requests are taken off the subscription as they arrive and stamped with
//! their arrival time, so the worker knows how long each has waited:
//! - a request that arrives with the queue full is answered at once with
//!   `Overloaded` (the API answers 503 with `Retry-After`), instead of waiting
//!   where nobody can see it;
//! - a request that waited longer than its requester waits for the answer
//!   (`wait_ms`) is skipped rather than run for nobody. Under overload this
//!   keeps a worker's capacity for requests that can still be answered.
//!
//! NATS queue groups pick a member at random, without regard to load, so a
//! busy worker can shed a request while another is idle; the queue is sized
//! (default 256) so that this happens only under real overload.
//!
//! On shutdown the subscriptions are drained, not dropped: the server stops
//! sending, and what was already delivered is still queued, run and answered.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Message, Subscriber};
use futures::StreamExt;
use nimbus_core::subjects;
use nimbus_core::wire::{Call, Headers, Reply, call::legacy_refusal};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::Worker;

/// A request taken off the subscription, waiting for a slot.
struct Queued {
    message: Message,
    received: Instant,
}

/// The subscriptions synchronous calls arrive on.
pub(crate) struct Intake {
    calls: Subscriber,
    legacy: Subscriber,
}

impl Intake {
    /// Join the queue group (and the previous envelope's, to refuse what
    /// comes there), and make sure the server has the subscriptions before
    /// the worker reports ready.
    pub(crate) async fn subscribe(worker: &Worker) -> anyhow::Result<Self> {
        let group = subjects::WORKER_QUEUE_GROUP.to_owned();
        let client = &worker.client;
        let calls = client
            .queue_subscribe(subjects::EXECUTE_ALL, group.clone())
            .await?;
        let legacy = client
            .queue_subscribe(subjects::EXECUTE_LEGACY_ALL, group)
            .await?;
        client.flush().await?;
        Ok(Self { calls, legacy })
    }

    /// Take calls until `shutdown`, then drain; `stopping` turns true once
    /// no more calls come (jobs stop then too). Returns when every call
    /// taken has been started.
    pub(crate) async fn run(
        self,
        worker: Arc<Worker>,
        slots: Arc<Semaphore>,
        waiting: Arc<AtomicUsize>,
        shutdown: impl Future<Output = ()>,
        stopping: watch::Sender<bool>,
    ) {
        let Self {
            mut calls,
            mut legacy,
        } = self;
        let (queue, mut queued) = mpsc::channel::<Queued>(worker.config.queue_capacity.max(1));
        let intake = async {
            tokio::pin!(shutdown);
            let mut draining = false;
            loop {
                let message = if draining {
                    calls.next().await
                } else {
                    tokio::select! {
                        _ = &mut shutdown => {
                            draining = true;
                            stopping.send(true).ok();
                            calls.drain().await.ok();
                            continue;
                        }
                        message = calls.next() => message,
                    }
                };
                let Some(message) = message else { break };
                let request = Queued {
                    message,
                    received: Instant::now(),
                };
                waiting.fetch_add(1, Ordering::SeqCst);
                if let Err(mpsc::error::TrySendError::Full(request)) = queue.try_send(request) {
                    waiting.fetch_sub(1, Ordering::SeqCst);
                    worker.shed(request.message).await;
                }
            }
            // The subscription is over (drained, or the connection closed):
            // stop taking jobs too. Closing the queue lets the executor finish
            // what it holds, then stop.
            stopping.send(true).ok();
            drop(queue);
        };
        // Executor: the next queued request, then a slot for it. (Holding a
        // slot while idle would keep it from jobs.) At most one request waits
        // outside the queue, for a slot.
        let execute = async {
            while let Some(request) = queued.recv().await {
                let permit = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore never closed");
                waiting.fetch_sub(1, Ordering::SeqCst);
                let worker = worker.clone();
                tokio::spawn(async move {
                    worker.handle(request).await;
                    drop(permit);
                });
            }
        };
        // Requests in the previous envelope get a platform error in that
        // envelope, at once and without a slot.
        let refuse_legacy = async {
            let mut stop = stopping.subscribe();
            let mut draining = false;
            loop {
                let message = if draining {
                    legacy.next().await
                } else {
                    tokio::select! {
                        _ = async { stop.wait_for(|stop| *stop).await.ok(); } => {
                            draining = true;
                            legacy.drain().await.ok();
                            continue;
                        }
                        message = legacy.next() => message,
                    }
                };
                let Some(message) = message else { break };
                if let Some(reply_to) = message.reply {
                    worker.client.publish(reply_to, legacy_refusal()).await.ok();
                }
            }
        };
        tokio::join!(intake, execute, refuse_legacy);
    }
}

impl Worker {
    async fn handle(&self, queued: Queued) {
        let Queued { message, received } = queued;
        let call = Call::from_headers(|name| {
            message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(name))
                .map(|value| value.as_str())
        });
        let reply = match call {
            Ok(call) => {
                let waited = received.elapsed();
                if call.wait_ms > 0 && waited >= Duration::from_millis(call.wait_ms) {
                    tracing::debug!(
                        function = call.function_id,
                        waited_ms = waited.as_millis() as u64,
                        "skipped an invocation nobody waits for any more"
                    );
                    return;
                }
                self.invoke(&call, message.payload.clone()).await
            }
            Err(e) => Reply::PlatformError(format!("unreadable invocation request: {e}")),
        };
        self.reply(&message, reply).await;
    }

    /// Answer a request that arrived with the queue full.
    async fn shed(&self, message: Message) {
        tracing::debug!(subject = %message.subject, "queue full: request shed");
        let reply = Reply::Overloaded(format!(
            "a worker had {} invocations running and {} waiting",
            self.config.concurrency.max(1),
            self.config.queue_capacity.max(1)
        ));
        self.reply(&message, reply).await;
    }

    async fn reply(&self, message: &Message, reply: Reply) {
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!(subject = %message.subject, "invocation without a reply subject dropped");
            return;
        };
        let (headers, payload) = reply.encode();
        if let Err(e) = self
            .client
            .publish_with_headers(reply_to, header_map(headers), payload)
            .await
        {
            tracing::warn!(error = %e, "could not send a reply");
        }
    }
}

/// The envelope's headers as NATS headers.
pub(crate) fn header_map(headers: Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(name, value.as_str());
    }
    map
}
