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
//! worker and kept (dropped on an error: e.g. JetStream removed an idle
//! tenant's consumer, see [`nimbus_store::Storage::jobs_consumer`]).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use nimbus_store::{JobQueue, Storage, StoreError};

/// Longest wait for the answer to a job fetch (normally immediate).
const JOB_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct JobTurns {
    storage: Storage,
    ack_wait: Duration,
    consumers: HashMap<JobQueue, PullConsumer>,
    /// Queues left in this turn.
    turn: VecDeque<JobQueue>,
    /// The queue served last: the next turn starts after it.
    last: Option<JobQueue>,
}

impl JobTurns {
    pub(crate) fn new(storage: Storage, ack_wait: Duration) -> Self {
        Self {
            storage,
            ack_wait,
            consumers: HashMap::new(),
            turn: VecDeque::new(),
            last: None,
        }
    }

    /// The next job in turn, or `None` when no tenant has one waiting.
    pub(crate) async fn next(&mut self) -> Result<Option<jetstream::Message>, StoreError> {
        let mut asked = false;
        loop {
            let Some(queue) = self.turn.pop_front() else {
                // A turn asked the stream already and found nothing left.
                if asked {
                    return Ok(None);
                }
                asked = true;
                let queues = self.storage.job_queues().await?;
                self.turn = starting_after(queues, self.last.as_ref());
                continue;
            };
            if let Some(job) = self.fetch(&queue).await {
                self.last = Some(queue);
                return Ok(Some(job));
            }
        }
    }

    /// One job of `queue`, if it has one that is not running already. A
    /// queue that cannot be read now is passed over (and logged): the other
    /// tenants' jobs still run.
    async fn fetch(&mut self, queue: &JobQueue) -> Option<jetstream::Message> {
        let consumer = match self.consumers.get(queue) {
            Some(consumer) => consumer.clone(),
            None => match self.storage.jobs_consumer(queue, self.ack_wait).await {
                Ok(consumer) => {
                    self.consumers.insert(queue.clone(), consumer.clone());
                    consumer
                }
                Err(e) => {
                    tracing::warn!(queue = ?queue, error = %e, "cannot bind a jobs consumer");
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
                // Maybe the consumer is gone (idle too long): made again
                // on this queue's next turn.
                tracing::warn!(queue = ?queue, error = %e, "cannot pull jobs");
                self.consumers.remove(queue);
                None
            }
            Err(_) => {
                tracing::warn!(queue = ?queue, "a job fetch went unanswered");
                None
            }
        }
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
