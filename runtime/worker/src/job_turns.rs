//! Which tenant's job a worker takes next: tenants in turn.
//!
//! Jobs wait in one work-queue stream, each tenant's behind its own pull
//! consumer ([`nimbus_store::JobQueue`]). A worker with a free slot takes
//! the next job of the next tenant in its turn; a turn visits every tenant
//! that had jobs when it began, in name order, starting after the tenant
//! served last, and each new turn asks the stream again which tenants have
//! jobs. So a tenant that queues one job behind another tenant's thousand
//! waits for one job per tenant ahead of it in the turn, not for the
//! thousand (first come first served within a tenant).
//!
//! A turn over N tenants costs one STREAM.INFO request plus one no-wait
//! fetch per tenant; consumers are created on a tenant's first turn on this
//! worker and kept while the tenant has jobs (dropped on an error: e.g.
//! JetStream removed an idle tenant's consumer, see
//! [`nimbus_store::Storage::jobs_consumer`]). A tenant whose queue cannot be
//! read (its consumer cannot be made, a fetch goes unanswered) is passed
//! over for [`QUEUE_REST`], so one broken queue costs the others one wait
//! of at most [`BIND_TIMEOUT`] now and then, not one per turn.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use nimbus_store::{JobQueue, Storage, StoreError};

/// Longest wait for the answer to a job fetch (normally immediate).
const JOB_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for a consumer's creation (normally a few milliseconds; it
/// rides out a JetStream leader election for a while).
const BIND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a queue that could not be read is passed over.
const QUEUE_REST: Duration = Duration::from_secs(30);

/// What looking for the next job found.
pub(crate) enum Next {
    Job(Box<jetstream::Message>),
    /// No tenant has a job waiting that is not running already.
    Idle,
    /// The search stopped because `give_way` said so.
    GaveWay,
}

pub(crate) struct JobTurns {
    storage: Storage,
    ack_wait: Duration,
    consumers: HashMap<JobQueue, PullConsumer>,
    /// Queues passed over until the given time.
    resting: HashMap<JobQueue, Instant>,
    /// Queues left in this turn.
    turn: VecDeque<JobQueue>,
    /// The queue served last: the next turn starts after it.
    last: Option<JobQueue>,
    /// Whether the legacy consumer is being narrowed again (once at a time).
    narrowing: Arc<AtomicBool>,
}

impl JobTurns {
    pub(crate) fn new(storage: Storage, ack_wait: Duration) -> Self {
        Self {
            storage,
            ack_wait,
            consumers: HashMap::new(),
            resting: HashMap::new(),
            turn: VecDeque::new(),
            last: None,
            narrowing: Arc::default(),
        }
    }

    /// The next job in turn, unless no tenant has one waiting or
    /// `give_way` says to stop looking (asked before each tenant's fetch:
    /// synchronous calls are waiting for the slot this search holds, or the
    /// worker stops; the turn goes on where it stopped).
    pub(crate) async fn next(&mut self, give_way: impl Fn() -> bool) -> Result<Next, StoreError> {
        let mut asked = false;
        loop {
            if give_way() {
                return Ok(Next::GaveWay);
            }
            let Some(queue) = self.turn.pop_front() else {
                // A turn asked the stream already and found nothing left.
                if asked {
                    return Ok(Next::Idle);
                }
                asked = true;
                let queues = self.storage.job_queues().await?;
                // Consumers of tenants with no job left are forgotten (the
                // server removes them once idle).
                // (`queues` is sorted.)
                self.consumers
                    .retain(|queue, _| queues.binary_search(queue).is_ok());
                let now = Instant::now();
                self.resting.retain(|_, until| *until > now);
                let queues = queues
                    .into_iter()
                    .filter(|queue| !self.resting.contains_key(queue))
                    .collect();
                self.turn = starting_after(queues, self.last.as_ref());
                continue;
            };
            if let Some(job) = self.fetch(&queue).await {
                self.last = Some(queue);
                return Ok(Next::Job(Box::new(job)));
            }
        }
    }

    /// One job of `queue`, if it has one that is not running already. A
    /// queue that cannot be read now is passed over (and logged): the other
    /// tenants' jobs still run.
    async fn fetch(&mut self, queue: &JobQueue) -> Option<jetstream::Message> {
        let consumer = match self.consumers.get(queue) {
            Some(consumer) => consumer.clone(),
            None => match self.bind(queue).await {
                Some(consumer) => consumer,
                None => {
                    self.rest(queue);
                    return None;
                }
            },
        };
        // A no-wait fetch answers at once; the timeout covers a reply lost
        // with the connection (the caller's slot must not stay held, nor
        // shutdown wait).
        let fetch = async {
            match consumer.fetch().max_messages(1).messages().await {
                Ok(mut batch) => batch.next().await.transpose().map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        match tokio::time::timeout(JOB_FETCH_TIMEOUT, fetch).await {
            Ok(Ok(job)) => job,
            Ok(Err(e)) => {
                // Most likely the consumer is gone (JetStream removes an
                // idle tenant's): made again on this queue's next turn.
                tracing::debug!(queue = ?queue, error = %e, "cannot pull jobs");
                self.consumers.remove(queue);
                None
            }
            Err(_) => {
                tracing::warn!(queue = ?queue, "a job fetch went unanswered");
                self.rest(queue);
                None
            }
        }
    }

    /// The consumer of `queue`, created (or updated) now.
    async fn bind(&mut self, queue: &JobQueue) -> Option<PullConsumer> {
        let create = self.storage.jobs_consumer(queue, self.ack_wait);
        let error = match tokio::time::timeout(BIND_TIMEOUT, create).await {
            Ok(Ok(consumer)) => {
                self.consumers.insert(queue.clone(), consumer.clone());
                return Some(consumer);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer in time".to_owned(),
        };
        tracing::warn!(queue = ?queue, error = %error, "cannot bind a jobs consumer");
        // A consumer over every job (the previous release's, made again by
        // an older worker) keeps tenants' consumers from being made on a
        // work-queue stream: narrow it again (meanwhile, not on this slot;
        // one attempt at a time however many tenants fail).
        if *queue != JobQueue::Legacy && !self.narrowing.swap(true, Ordering::SeqCst) {
            let (storage, ack_wait) = (self.storage.clone(), self.ack_wait);
            let narrowing = self.narrowing.clone();
            tokio::spawn(async move {
                let narrow = storage.jobs_consumer(&JobQueue::Legacy, ack_wait);
                if let Ok(Err(e)) = tokio::time::timeout(BIND_TIMEOUT, narrow).await {
                    tracing::debug!(error = %e, "cannot narrow the legacy jobs consumer");
                }
                narrowing.store(false, Ordering::SeqCst);
            });
        }
        None
    }

    /// Pass `queue` over for a while.
    fn rest(&mut self, queue: &JobQueue) {
        self.resting
            .insert(queue.clone(), Instant::now() + QUEUE_REST);
    }
}

/// `queues` (in order) rotated to start right after `last`.
fn starting_after(queues: Vec<JobQueue>, last: Option<&JobQueue>) -> VecDeque<JobQueue> {
    let split = last.map_or(0, |last| queues.partition_point(|queue| queue <= last));
    let mut turn: VecDeque<JobQueue> = queues.into();
    turn.rotate_left(split);
    turn
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants(names: &[&str]) -> Vec<JobQueue> {
        names
            .iter()
            .map(|name| JobQueue::Tenant((*name).into()))
            .collect()
    }

    #[test]
    fn a_turn_starts_after_the_tenant_served_last() {
        let queues = tenants(&["alice", "bob", "carol"]);
        let bob = JobQueue::Tenant("bob".into());
        assert_eq!(
            starting_after(queues.clone(), Some(&bob)),
            tenants(&["carol", "alice", "bob"])
        );
        assert_eq!(
            starting_after(queues.clone(), None),
            tenants(&["alice", "bob", "carol"])
        );
        // The tenant served last has no job left: the next one after it
        // still comes first.
        let bea = JobQueue::Tenant("bea".into());
        assert_eq!(
            starting_after(queues, Some(&bea)),
            tenants(&["bob", "carol", "alice"])
        );
    }

    #[test]
    fn one_tenant_alone_is_served_every_turn() {
        let alice = JobQueue::Tenant("alice".into());
        assert_eq!(
            starting_after(tenants(&["alice"]), Some(&alice)),
            tenants(&["alice"])
        );
    }
}
