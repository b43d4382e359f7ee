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
//! Calls come in two envelopes: the current one (headers and raw payload,
//! on `functions.execute.v2.<id>`) and, for one release, the previous one
//! (JSON, on `functions.execute.<id>`), so that API servers of the previous
//! release are served during a rolling upgrade. Both share the queue and
//! the slots; each reply goes back in its request's envelope.
//!
//! On shutdown the subscriptions are drained, not dropped: the server stops
//! sending, and what was already delivered is still queued, run and answered.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Message, Subscriber};
use futures::StreamExt;
use nimbus_core::metrics::Trigger;
use nimbus_core::subjects;
use nimbus_core::wire::{Call, Reply, headers, legacy};
use tokio::sync::{Semaphore, watch};

use crate::Worker;
use crate::fair_queue::FairQueue;

/// Which envelope a request came in; its reply goes back in the same one.
#[derive(Clone, Copy)]
enum Envelope {
    /// A header and the raw payload, on `functions.execute.v2.<id>`.
    Current,
    /// The previous release's JSON, on `functions.execute.<id>`.
    Legacy,
}

/// A request taken off a subscription, waiting for a slot.
struct Queued {
    message: Message,
    envelope: Envelope,
    received: Instant,
    /// The call and its input, read on arrival (to know its tenant).
    call: Result<(Call, bytes::Bytes), String>,
}

/// The subscriptions synchronous calls arrive on.
pub(crate) struct Intake {
    calls: Subscriber,
    legacy: Subscriber,
}

impl Intake {
    /// Join the queue group on the current envelope's subject and on the
    /// previous one's, and make sure the server has the subscriptions before
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
        let queue = Arc::new(FairQueue::<Queued>::new(
            worker.config.queue_capacity,
            worker.config.tenant_concurrency(),
            worker.metrics.queue_depth(),
        ));
        let (drain, draining) = watch::channel(false);
        let intakes = async {
            tokio::join!(
                take(
                    &worker,
                    self.calls,
                    Envelope::Current,
                    &queue,
                    draining.clone()
                ),
                take(&worker, self.legacy, Envelope::Legacy, &queue, draining),
            );
            // The subscriptions are over (drained, or the connection
            // closed): stop taking jobs too. Closing the queue lets the
            // executor finish what it holds, then stop.
            stopping.send(true).ok();
            queue.close();
        };
        let intakes = async {
            tokio::pin!(intakes);
            tokio::select! {
                () = &mut intakes => {}
                () = shutdown => {
                    stopping.send(true).ok();
                    drain.send(true).ok();
                    intakes.await;
                }
            }
        };
        // Executor: the next queued request (tenants in turn, each within
        // its share, `fair_queue.rs`), then a slot for it. (Holding a slot
        // while idle would keep it from jobs.) At most one request waits
        // outside the queue, for a slot.
        let execute = async {
            while let Some((tenant, request)) = queue.next().await {
                // Jobs leave free slots to this call (`jobs.rs`): it could
                // run now. Calls held back by their tenant's share do not
                // count, so they never hold up anybody's jobs.
                waiting.fetch_add(1, Ordering::SeqCst);
                let permit = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore never closed");
                waiting.fetch_sub(1, Ordering::SeqCst);
                let (worker, done) = (worker.clone(), Done(queue.clone(), tenant));
                tokio::spawn(async move {
                    worker.handle(request).await;
                    drop(permit);
                    drop(done);
                });
            }
        };
        tokio::join!(intakes, execute);
    }
}

/// Marks a tenant's call finished when dropped, however its task ends.
struct Done(Arc<FairQueue<Queued>>, String);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.done(&self.1);
    }
}

/// Take requests off `subscription` into the queue as they arrive, shedding
/// what the full queue cannot hold, until the subscription ends; once
/// `drain` turns true, drain it (the server stops sending; what was already
/// delivered is still taken).
async fn take(
    worker: &Worker,
    mut subscription: Subscriber,
    envelope: Envelope,
    queue: &FairQueue<Queued>,
    mut drain: watch::Receiver<bool>,
) {
    let mut draining = false;
    loop {
        let message = if draining {
            subscription.next().await
        } else {
            tokio::select! {
                () = async { drain.wait_for(|drain| *drain).await.ok(); } => {
                    draining = true;
                    subscription.drain().await.ok();
                    continue;
                }
                message = subscription.next() => message,
            }
        };
        let Some(message) = message else { break };
        let received = Instant::now();
        let call = match envelope {
            Envelope::Current => {
                Call::parse(header(&message, headers::CALL), message.payload.clone())
                    .map(|(call, input)| {
                        let invocation = header(&message, headers::INVOCATION);
                        let trace = header(&message, headers::TRACEPARENT);
                        (call.with_context(invocation, trace), input)
                    })
                    .map_err(|e| e.to_string())
            }
            Envelope::Legacy => legacy::read_request(&message.payload).map_err(|e| e.to_string()),
        };
        // Unreadable requests share one tenant: they are answered at once.
        let tenant = match &call {
            Ok((call, _)) => call.caller.to_string(),
            Err(_) => String::new(),
        };
        let request = Queued {
            message,
            envelope,
            received,
            call,
        };
        if let Err(request) = queue.push(tenant, request) {
            worker.shed(request).await;
        }
    }
}

impl Worker {
    async fn handle(&self, queued: Queued) {
        let Queued {
            message,
            envelope,
            received,
            call,
        } = queued;
        let reply = match call {
            Ok((call, input)) => {
                let waited = received.elapsed();
                if call.wait_ms > 0 && waited >= Duration::from_millis(call.wait_ms) {
                    tracing::debug!(
                        function = call.function_id,
                        waited_ms = waited.as_millis() as u64,
                        "skipped an invocation nobody waits for any more"
                    );
                    return;
                }
                let trigger = match call.http {
                    Some(_) => Trigger::Url,
                    None => Trigger::Execute,
                };
                self.invoke(&call, input, trigger).await
            }
            Err(e) => Reply::PlatformError(format!("unreadable invocation request: {e}")),
        };
        self.reply(&message, envelope, reply).await;
    }

    /// Answer a request that arrived with the queue full.
    async fn shed(&self, queued: Queued) {
        tracing::debug!(subject = %queued.message.subject, "queue full: request shed");
        self.metrics.shed();
        let reply = Reply::Overloaded(format!(
            "a worker had {} invocations running and {} waiting",
            self.config.concurrency.max(1),
            self.config.queue_capacity.max(1)
        ));
        self.reply(&queued.message, queued.envelope, reply).await;
    }

    async fn reply(&self, message: &Message, envelope: Envelope, reply: Reply) {
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!(subject = %message.subject, "invocation without a reply subject dropped");
            return;
        };
        let sent = match envelope {
            Envelope::Current => {
                let (header, payload) = reply.encode();
                let mut reply_headers = HeaderMap::new();
                reply_headers.insert(headers::REPLY, header.as_str());
                self.client
                    .publish_with_headers(reply_to, reply_headers, payload)
                    .await
            }
            Envelope::Legacy => {
                self.client
                    .publish(reply_to, legacy::encode_reply(reply))
                    .await
            }
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not send a reply");
        }
    }
}

/// The value of `message`'s header `name`, if any.
fn header<'a>(message: &'a Message, name: &'static str) -> Option<&'a str> {
    message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(name))
        .map(|value| value.as_str())
}
