//! Asynchronous invocations waiting for a worker: jobs in the work-queue
//! stream, one subject per owner and function, taken through one shared
//! pull consumer.

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
        // One STREAM.INFO request with a subject filter answers a count per
        // matching subject (one per function of the owner). async-nats's
        // `info_with_subjects` would ask again for a next page every time.
        #[derive(Deserialize)]
        struct Info {
            state: State,
        }
        #[derive(Deserialize)]
        struct State {
            #[serde(default)]
            subjects: std::collections::HashMap<String, u64>,
        }
        let subject = format!("STREAM.INFO.{}", subjects::JOBS_STREAM);
        let filter = serde_json::json!({"subjects_filter": subjects::jobs_of(owner)});
        self.ride_out(Retry::Idempotent, "count jobs", || async {
            match self.js.request(subject.clone(), &filter).await {
                Ok(jetstream::response::Response::Ok(Info { state })) => {
                    Ok(state.subjects.values().sum())
                }
                Ok(jetstream::response::Response::Err { error }) => Err(NatsError::new(error)),
                Err(e) => Err(NatsError::new(e)),
            }
        })
        .await
    }

    /// The pull consumer every worker shares to take jobs: a job not acked
    /// within `ack_wait` is delivered again. Redelivery is not limited here:
    /// workers count attempts themselves, so that the delivery after a last
    /// attempt whose worker died can still record the outcome.
    pub async fn jobs_consumer(
        &self,
        ack_wait: Duration,
    ) -> Result<jetstream::consumer::PullConsumer, StoreError> {
        let config = jetstream::consumer::pull::Config {
            durable_name: Some(subjects::JOBS_CONSUMER.to_owned()),
            description: Some("Nimbus workers".to_owned()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait,
            max_deliver: -1,
            ..Default::default()
        };
        // Create, or update to this configuration: idempotent, so every
        // worker can call it at start-up.
        self.ride_out(Retry::Idempotent, "create jobs consumer", || {
            self.jobs.create_consumer(config.clone())
        })
        .await
    }
}
