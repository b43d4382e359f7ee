//! Nimbus's state in NATS JetStream: users and function metadata in KV
//! buckets, module bytes in a content-addressed object store, function logs in
//! a limits stream; asynchronous invocations as jobs in a work-queue stream
//! and their records in a KV bucket with a TTL.
//!
//! JetStream is the database on purpose: it replicates (R3 on a cluster), it
//! is already there for messaging, and API servers and workers stay stateless.
//! Buckets are created idempotently at start-up by whoever comes first.
//!
//! Key layout of the `functions` bucket: `<owner>.<id>` ->
//! [`FunctionMeta`](nimbus_core::FunctionMeta). Putting the owner in the key
//! means a user's listing is a server-side subject filter (`<owner>.*`), and
//! looking up somebody else's function simply finds nothing. The id counter
//! lives under [`ID_COUNTER_KEY`], a key no username can produce (usernames
//! start with a letter or digit).
//!
//! One file per responsibility, each adding methods to [`Storage`]:
//!
//! - `provisioning`: [`Storage::open`], the buckets and streams at start-up;
//! - `users`: accounts;
//! - `functions`: function metadata and the id counter;
//! - `function_watch`: the changes to function metadata, as they happen;
//! - `invocations`: records of asynchronous invocations;
//! - `jobs`: the work queue of asynchronous invocations;
//! - `logs`: function logs; `log_follow`: following them as they come;
//! - `objects`: modules and precompiled artifacts in the object store;
//! - `local_artifacts`: a worker's copies of artifacts on its own disk;
//! - `nats_metrics`: the connection's counters, for `/metrics`;
//! - `failover`: retrying what a JetStream failover explains;
//! - `replica_lag`: listings checked against the stream's leader;
//! - `codec`, `config`, `error`: record encoding, settings, [`StoreError`].

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store::ObjectStore};
use bytes::Bytes;

mod artifact_encoding;
mod artifact_file;
mod artifacts;
mod codec;
mod config;
mod error;
mod failover;
mod function_config;
mod function_watch;
mod functions;
mod invocations;
mod jobs;
mod kv_listing;
mod kv_state;
mod local_artifacts;
mod log_follow;
mod logs;
mod module_gc;
mod names;
mod nats_metrics;
mod objects;
mod provisioning;
mod replica_lag;
mod users;

pub use artifact_file::Artifact;
pub use artifacts::{
    ArtifactKey, ArtifactVerifier, InvalidPublicKey, SignedArtifact, WeakArtifactKey,
    artifact_bytes, artifact_name,
};
pub use codec::now_rfc3339;
pub use config::StoreConfig;
pub use error::StoreError;
pub use function_config::{FunctionConfig, StoredSecret};
pub use function_watch::FunctionChange;
pub use functions::ID_COUNTER_KEY;
pub use jobs::JobQueue;
pub use kv_listing::{escape_key, unescape_key};
pub use kv_state::{KvEntry, KvUsage, StoreUsage};
pub use local_artifacts::LocalArtifacts;
pub use log_follow::{FollowFrom, LogFollow};
pub use logs::{LogEntry, LogUsage};
pub use module_gc::{Garbage, Sweep};
pub use nats_metrics::NatsMetrics;
pub use users::UserRecord;

use error::unavailable;
use failover::{Retry, ride_out};

/// Handles on every bucket. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    client: async_nats::Client,
    logs: jetstream::stream::Stream,
    users: kv::Store,
    functions: kv::Store,
    names: kv::Store,
    /// Variables and sealed secrets: opened by API servers only (workers
    /// may not read it, and need not wait for it in a rolling upgrade).
    function_config: Option<kv::Store>,
    /// Functions' key-value state and its usage: API servers only.
    state: Option<kv_state::StateBuckets>,
    invocations: kv::Store,
    jobs: jetstream::stream::Stream,
    modules: ObjectStore,
    modules_stream: jetstream::stream::Stream,
    js: jetstream::Context,
    failover_wait: Duration,
    /// Log entries the log stream keeps per function.
    log_max_per_function: i64,
    /// The interpreter each JavaScript function's script names, by the
    /// script's digest (module GC).
    interpreters: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

impl Storage {
    /// Run `op`, retrying what a JetStream failover explains (see
    /// [`failover`]); a failure is [`StoreError::Unavailable`] naming `what`.
    async fn ride_out<T, E, F, Fut>(
        &self,
        retry: Retry,
        what: &'static str,
        op: F,
    ) -> Result<T, StoreError>
    where
        E: std::error::Error + Send + Sync + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.ride_out_raw(retry, what, op)
            .await
            .map_err(|e| unavailable(what, e))
    }

    /// [`Self::ride_out`] for callers that look at the error themselves.
    async fn ride_out_raw<T, E, F, Fut>(&self, retry: Retry, what: &str, op: F) -> Result<T, E>
    where
        E: std::error::Error + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        ride_out(self.failover_wait, retry, what, op).await
    }

    /// Write `key` only if it has never been written; its revision.
    ///
    /// A compare-and-set against "no message yet", which is what
    /// `kv::Store::create` tries first; unlike it, this does not fall back to
    /// reading the key, whose failure would hide whether the write itself
    /// was refused (safe to send again) or timed out (maybe applied). A key
    /// written before and deleted since has a tombstone as its last message:
    /// write it again with [`Self::update_at`] against that tombstone.
    async fn create(
        &self,
        bucket: &kv::Store,
        what: &'static str,
        key: &str,
        value: Bytes,
    ) -> Result<u64, StoreError> {
        self.update_at(bucket, what, key, value, 0).await
    }

    /// Write `key` only if its last message is still `revision` (0: none);
    /// its new revision, or [`StoreError::AlreadyExists`] if somebody wrote
    /// it since.
    async fn update_at(
        &self,
        bucket: &kv::Store,
        what: &'static str,
        key: &str,
        value: Bytes,
        revision: u64,
    ) -> Result<u64, StoreError> {
        match self
            .ride_out_raw(Retry::Undelivered, what, || {
                bucket.update(key, value.clone(), revision)
            })
            .await
        {
            Ok(revision) => Ok(revision),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(StoreError::AlreadyExists)
            }
            Err(e) => Err(unavailable(what, e)),
        }
    }
}
