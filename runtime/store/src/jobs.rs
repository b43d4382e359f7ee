//! Asynchronous invocations waiting for a worker: jobs in the work-queue
//! stream, one subject per owner and function, taken through one pull
//! consumer per owner (so that workers can serve tenants in turn).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_nats::jetstream;
use nimbus_core::wire::Job;
use nimbus_core::{Username, subjects};
use serde::Deserialize;

use crate::codec::encode;
use crate::failover::{NatsError, Retry};
use crate::{Storage, StoreError};

impl Storage {
    /// Queue `job` and wait until JetStream has stored it. The invocation id
    /// is the message id, so a retried enqueue is not queued twice.
    pub async fn enqueue_job(&self, job: &Job) -> Result<(), StoreError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", job.record.id.as_str());
        let subject = subjects::jobs(&job.record.owner, job.request.function_id);
        let payload = encode(job);
        // Deduplicated by message id, so sending it again is harmless.
        self.ride_out(Retry::Idempotent, "enqueue job", || async {
            self.js
                .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await?
                .await
        })
        .await?;
        Ok(())
    }

    /// How many of `owner`'s jobs are queued or running: a job stays in the
    /// work-queue stream until a worker acks it, which it does once the
    /// invocation's outcome is recorded.
    pub async fn jobs_of(&self, owner: &Username) -> Result<u64, StoreError> {
        let counts = self.job_counts(&subjects::jobs_of(owner)).await?;
        Ok(counts.values().sum())
    }

    /// The queues that hold jobs (queued or running), in a stable order:
    /// what a worker takes turns over.
    pub async fn job_queues(&self) -> Result<Vec<JobQueue>, StoreError> {
        let counts = self.job_counts(subjects::JOBS_EVERY).await?;
        let queues: BTreeSet<JobQueue> = counts.keys().filter_map(|s| JobQueue::of(s)).collect();
        Ok(queues.into_iter().collect())
    }

    /// Messages per subject matching `filter` in the jobs stream. One
    /// STREAM.INFO request with a subject filter answers a count per
    /// matching subject (async-nats's `info_with_subjects` would ask again
    /// for a next page every time). JetStream answers up to 100,000
    /// subjects at once: past that many functions with jobs, the rest wait
    /// for a later turn.
    async fn job_counts(&self, filter: &str) -> Result<HashMap<String, u64>, StoreError> {
        #[derive(Deserialize)]
        struct Info {
            state: State,
        }
        #[derive(Deserialize)]
        struct State {
            #[serde(default)]
            subjects: HashMap<String, u64>,
        }
        let subject = format!("STREAM.INFO.{}", subjects::JOBS_STREAM);
        let filter = serde_json::json!({ "subjects_filter": filter });
        self.ride_out(Retry::Idempotent, "count jobs", || async {
            match self.js.request(subject.clone(), &filter).await {
                Ok(jetstream::response::Response::Ok(Info { state })) => Ok(state.subjects),
                Ok(jetstream::response::Response::Err { error }) => Err(NatsError::new(error)),
                Err(e) => Err(NatsError::new(e)),
            }
        })
        .await
    }

    /// The pull consumer of one job queue, created if need be. A job not
    /// acked within `ack_wait` is delivered again. Redelivery is not
    /// limited here: workers count attempts themselves, so that the
    /// delivery after a last attempt whose worker died can still record the
    /// outcome.
    ///
    /// A tenant's consumer goes away after [`TENANT_CONSUMER_IDLE`] without
    /// pulls or acks (JetStream keeps it while a delivered job waits for its
    /// ack), so only tenants with recent jobs cost the server anything; the
    /// jobs themselves stay in the stream until acked, and the next worker
    /// to take a turn on that tenant creates the consumer again.
    pub async fn jobs_consumer(
        &self,
        queue: &JobQueue,
        ack_wait: Duration,
    ) -> Result<jetstream::consumer::PullConsumer, StoreError> {
        let (name, filter, idle) = match queue {
            JobQueue::Legacy => (
                subjects::JOBS_LEGACY_CONSUMER.to_owned(),
                subjects::JOBS_LEGACY.to_owned(),
                Duration::ZERO,
            ),
            JobQueue::Tenant(owner) => (
                subjects::jobs_consumer(owner),
                subjects::jobs_of(owner),
                TENANT_CONSUMER_IDLE,
            ),
        };
        let config = jetstream::consumer::pull::Config {
            durable_name: Some(name),
            description: Some("Nimbus workers".to_owned()),
            filter_subject: filter,
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait,
            max_deliver: -1,
            inactive_threshold: idle,
            ..Default::default()
        };
        // Create, or update to this configuration: idempotent, so every
        // worker can call it.
        self.ride_out(Retry::Idempotent, "create jobs consumer", || {
            self.jobs.create_consumer(config.clone())
        })
        .await
    }
}

/// How long a tenant's jobs consumer outlives its last pull or ack.
pub const TENANT_CONSUMER_IDLE: Duration = Duration::from_secs(600);

/// One queue of waiting jobs: a tenant's, or the legacy subjects of the
/// previous release ([`subjects::JOBS_LEGACY`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobQueue {
    Legacy,
    Tenant(String),
}

impl JobQueue {
    /// The queue a job's subject belongs to: `functions.jobs.<owner>.<id>`
    /// or the legacy `functions.jobs.<id>`.
    fn of(subject: &str) -> Option<Self> {
        let rest = subject.strip_prefix("functions.jobs.")?;
        match rest.split_once('.') {
            Some((owner, _)) => Some(Self::Tenant(owner.to_owned())),
            None => Some(Self::Legacy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_names_its_queue() {
        assert_eq!(
            JobQueue::of("functions.jobs.alice.7"),
            Some(JobQueue::Tenant("alice".into()))
        );
        assert_eq!(JobQueue::of("functions.jobs.7"), Some(JobQueue::Legacy));
        assert_eq!(JobQueue::of("functions.logs.7"), None);
    }
}
