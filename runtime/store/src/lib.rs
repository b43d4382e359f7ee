//! Nimbus's state in NATS JetStream: users and function metadata in KV
//! buckets, module bytes in a content-addressed object store, function logs in
//! a limits stream; asynchronous invocations as jobs in a work-queue stream
//! and their records in a KV bucket with a TTL.
//!
//! JetStream is the database on purpose: it replicates (R3 on a cluster), it
//! is already there for messaging, and API servers and workers stay stateless.
//! Buckets are created idempotently at start-up by whoever comes first.
//!
//! Key layout of the `functions` bucket: `<owner>.<id>` -> [`FunctionMeta`].
//! Putting the owner in the key means a user's listing is a server-side
//! subject filter (`<owner>.*`), and looking up somebody else's function
//! simply finds nothing. The id counter lives under [`ID_COUNTER_KEY`], a key
//! no username can produce (usernames start with a letter or digit).

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, push::OrderedConfig},
    kv,
    object_store::{self, ObjectStore},
    stream::{self, DiscardPolicy, RetentionPolicy},
};
use bytes::Bytes;
use futures::StreamExt;
use nimbus_core::wire::{InvocationRecord, Job};
use nimbus_core::{FunctionId, FunctionMeta, subjects};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

mod failover;
use failover::{NatsError, Retry, ride_out};

/// Key of the function id counter in the `functions` bucket.
pub const ID_COUNTER_KEY: &str = "_next_id";

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The validated username.
    pub username: String,
    /// bcrypt hash of the password.
    pub password_hash: String,
    /// RFC 3339 registration time.
    pub created: String,
}

/// One invocation's log output, as kept by the log stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// RFC 3339 time the worker published it.
    pub time: String,
    /// Who invoked the function.
    pub caller: String,
    /// The text the guest wrote to stderr (lossily decoded as UTF-8).
    pub text: String,
    /// Whether the guest wrote more than its log cap.
    pub truncated: bool,
}

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Replicas per bucket: 1 on a single server, 3 on a JetStream cluster.
    pub replicas: usize,
    /// How long function logs are kept.
    pub log_retention: Duration,
    /// Cap on the log stream's size, in bytes.
    pub log_max_bytes: i64,
    /// Log messages kept per function: one function's logs can neither
    /// crowd out everyone else's nor make a log read long.
    pub log_max_per_function: i64,
    /// How long asynchronous invocation records (and unstarted jobs) are kept.
    pub invocation_retention: Duration,
    /// Cap on queued jobs, in bytes; past it new asynchronous invocations
    /// are refused (503) rather than filling JetStream's disk.
    pub jobs_max_bytes: i64,
    /// Cap on invocation records, in bytes (refused past it, likewise).
    pub invocations_max_bytes: i64,
    /// How long one store operation keeps retrying while JetStream cannot
    /// take it (see [`Retry`]): enough to ride out the stream leader
    /// elections after a node of a cluster dies (measured here: reads of
    /// replicas answer again within ~1.5 s, requests that need a stream's
    /// leader within 2-8 s), short enough that an outage still answers 503
    /// in bounded time.
    pub failover_wait: Duration,
    /// How long one JetStream request (a read, a publish's ack) may take
    /// before it counts as timed out and, if safe, is sent again.
    pub request_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            log_retention: Duration::from_secs(24 * 3600),
            log_max_bytes: 256 << 20,
            log_max_per_function: 1000,
            invocation_retention: Duration::from_secs(24 * 3600),
            jobs_max_bytes: 1 << 30,
            invocations_max_bytes: 1 << 30,
            failover_wait: Duration::from_secs(15),
            request_timeout: Duration::from_secs(2),
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key already exists (a username taken, an id reused).
    #[error("already exists")]
    AlreadyExists,
    /// JetStream could not be reached or answered with an error.
    #[error("JetStream: {0}")]
    Unavailable(String),
    /// A stored value could not be decoded.
    #[error("corrupt record `{key}`: {reason}")]
    Corrupt {
        /// The key that held it.
        key: String,
        /// The decoding error.
        reason: String,
    },
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// Handles on every bucket. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    client: async_nats::Client,
    logs: jetstream::stream::Stream,
    users: kv::Store,
    functions: kv::Store,
    invocations: kv::Store,
    jobs: jetstream::stream::Stream,
    modules: ObjectStore,
    js: jetstream::Context,
    failover_wait: Duration,
}

impl Store {
    /// Create the buckets and streams if missing (or update them to `config`)
    /// and return handles on them.
    pub async fn open(
        client: async_nats::Client,
        config: &StoreConfig,
    ) -> Result<Self, StoreError> {
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        let kv_config = |bucket: &str, description: &str, history: i64| kv::Config {
            bucket: bucket.to_owned(),
            description: description.to_owned(),
            history,
            num_replicas: config.replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let users = js
            .create_or_update_key_value(kv_config(subjects::USERS_BUCKET, "Nimbus users", 1))
            .await
            .map_err(unavailable)?;
        let functions = js
            .create_or_update_key_value(kv_config(
                subjects::FUNCTIONS_BUCKET,
                "Nimbus function metadata",
                1,
            ))
            .await
            .map_err(unavailable)?;
        let invocations = js
            .create_or_update_key_value(kv::Config {
                max_age: config.invocation_retention,
                max_bytes: config.invocations_max_bytes,
                ..kv_config(
                    subjects::INVOCATIONS_BUCKET,
                    "Nimbus asynchronous invocations",
                    1,
                )
            })
            .await
            .map_err(unavailable)?;
        let modules = match js.get_object_store(subjects::MODULES_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: subjects::MODULES_BUCKET.to_owned(),
                    description: Some("Nimbus modules by sha256 digest".to_owned()),
                    num_replicas: config.replicas,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?,
        };
        js.create_or_update_stream(stream::Config {
            name: subjects::LOGS_STREAM.to_owned(),
            description: Some("Nimbus function logs".to_owned()),
            subjects: vec![subjects::LOGS_ALL.to_owned()],
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            max_age: config.log_retention,
            max_bytes: config.log_max_bytes,
            max_messages_per_subject: config.log_max_per_function,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
        let logs = js
            .get_stream(subjects::LOGS_STREAM)
            .await
            .map_err(unavailable)?;
        // Each job is taken by exactly one worker and removed once acked.
        js.create_or_update_stream(stream::Config {
            name: subjects::JOBS_STREAM.to_owned(),
            description: Some("Nimbus asynchronous invocations".to_owned()),
            subjects: vec![
                subjects::JOBS_ALL.to_owned(),
                subjects::JOBS_LEGACY.to_owned(),
            ],
            retention: RetentionPolicy::WorkQueue,
            max_age: config.invocation_retention,
            max_bytes: config.jobs_max_bytes,
            discard: DiscardPolicy::New,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
        let jobs = js
            .get_stream(subjects::JOBS_STREAM)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            client,
            logs,
            users,
            functions,
            invocations,
            jobs,
            modules,
            js,
            failover_wait: config.failover_wait,
        })
    }

    /// Run `op`, retrying what a JetStream failover explains (see [`failover`]).
    async fn ride_out<T, E, F, Fut>(&self, retry: Retry, what: &str, op: F) -> Result<T, E>
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
    /// was refused (safe to send again) or timed out (maybe applied). None of
    /// Nimbus's keys is written again once deleted.
    async fn create(
        &self,
        bucket: &kv::Store,
        what: &str,
        key: &str,
        value: Bytes,
    ) -> Result<u64, StoreError> {
        match self
            .ride_out(Retry::Undelivered, what, || {
                bucket.update(key, value.clone(), 0)
            })
            .await
        {
            Ok(revision) => Ok(revision),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(StoreError::AlreadyExists)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Store a new user; [`StoreError::AlreadyExists`] if the name is taken.
    pub async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let value = serde_json::to_vec(user).expect("user serialises");
        self.create(&self.users, "create user", &user.username, value.into())
            .await
            .map(|_| ())
    }

    /// The user called `username`, if any.
    pub async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let value = self
            .ride_out(Retry::Idempotent, "read user", || self.users.get(username))
            .await
            .map_err(unavailable)?;
        value.map(|v| decode(username, &v)).transpose()
    }

    /// Allocate the next function id: compare-and-set on a counter, so ids are
    /// unique across any number of API servers.
    pub async fn next_function_id(&self) -> Result<FunctionId, StoreError> {
        loop {
            let entry = self
                .ride_out(Retry::Idempotent, "read id counter", || {
                    self.functions.entry(ID_COUNTER_KEY)
                })
                .await
                .map_err(unavailable)?;
            let (next, attempt) = match entry {
                Some(entry) if entry.operation == kv::Operation::Put => {
                    let current: FunctionId = decode(ID_COUNTER_KEY, &entry.value)?;
                    let next = current + 1;
                    let attempt = self
                        .ride_out(Retry::Undelivered, "update id counter", || {
                            self.functions
                                .update(ID_COUNTER_KEY, encode(&next), entry.revision)
                        })
                        .await
                        .map(|_| ())
                        .map_err(|e| e.kind() == kv::UpdateErrorKind::WrongLastRevision);
                    (next, attempt)
                }
                _ => {
                    let attempt = match self
                        .create(
                            &self.functions,
                            "create id counter",
                            ID_COUNTER_KEY,
                            encode(&1u64),
                        )
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(StoreError::AlreadyExists) => Err(true),
                        Err(_) => Err(false),
                    };
                    (1, attempt)
                }
            };
            match attempt {
                Ok(()) => return Ok(next),
                // Another API server won the race: read the counter again.
                Err(true) => continue,
                Err(false) => {
                    return Err(StoreError::Unavailable(
                        "could not update the function id counter".into(),
                    ));
                }
            }
        }
    }

    /// Store new function metadata; never overwrites.
    pub async fn create_function(&self, meta: &FunctionMeta) -> Result<(), StoreError> {
        let key = owner_key(&meta.owner, meta.id);
        self.create(&self.functions, "create function", &key, encode(meta))
            .await
            .map(|_| ())
    }

    /// `owner`'s function `id`; `None` if it does not exist or is someone else's.
    pub async fn function(
        &self,
        owner: &str,
        id: FunctionId,
    ) -> Result<Option<FunctionMeta>, StoreError> {
        let key = owner_key(owner, id);
        let value = self
            .ride_out(Retry::Idempotent, "read function", || {
                self.functions.get(&key)
            })
            .await
            .map_err(unavailable)?;
        value.map(|v| decode(&key, &v)).transpose()
    }

    /// Every function `owner` has, by id.
    pub async fn functions_of(&self, owner: &str) -> Result<Vec<FunctionMeta>, StoreError> {
        let filter = format!("{}{owner}.*", self.functions.prefix);
        // The whole read is retried: its consumer can fail mid-way too.
        let stored = self
            .ride_out(Retry::Idempotent, "list functions", || {
                self.last_per_subject(&filter)
            })
            .await
            .map_err(unavailable)?;
        let mut functions = stored
            .iter()
            .map(|(subject, value)| decode(subject, value))
            .collect::<Result<Vec<FunctionMeta>, _>>()?;
        functions.sort_by_key(|f| f.id);
        Ok(functions)
    }

    /// The latest value of every key of the `functions` bucket matching
    /// `filter`, deleted ones left out: `(subject, value)` pairs.
    async fn last_per_subject(&self, filter: &str) -> Result<Vec<(String, Bytes)>, NatsError> {
        let consumer = self
            .functions
            .stream
            .create_consumer(OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: filter.to_owned(),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(NatsError::new)?;
        let mut stored = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(stored);
        }
        let mut messages = consumer.messages().await.map_err(NatsError::new)?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(NatsError::new)?;
            let pending = message.info().map_err(NatsError::boxed)?.pending;
            let deleted = message
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
            if !deleted {
                stored.push((message.subject.to_string(), message.payload.clone()));
            }
            if pending == 0 {
                break;
            }
        }
        Ok(stored)
    }

    /// Delete `owner`'s function `id`; `false` if there was none.
    ///
    /// The module stays in the object store: modules are content addressed
    /// and may be shared by other functions.
    pub async fn delete_function(&self, owner: &str, id: FunctionId) -> Result<bool, StoreError> {
        if self.function(owner, id).await?.is_none() {
            return Ok(false);
        }
        let key = owner_key(owner, id);
        self.ride_out(Retry::Idempotent, "delete function", || {
            self.functions.delete(&key)
        })
        .await
        .map_err(unavailable)?;
        Ok(true)
    }

    /// The newest log entries of function `id`, oldest first: at most
    /// `limit` of them and `max_bytes` of text.
    ///
    /// Reads the function's subject of the log stream from the start of its
    /// retention, which the stream bounds to `log_max_per_function` messages.
    pub async fn logs(
        &self,
        id: FunctionId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.ride_out(Retry::Idempotent, "read logs", || {
            self.read_logs(id, limit, max_bytes)
        })
        .await
        .map_err(unavailable)
    }

    async fn read_logs(
        &self,
        id: FunctionId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, NatsError> {
        let consumer = self
            .logs
            .create_consumer(OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: subjects::logs(id),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(NatsError::new)?;
        let mut entries: std::collections::VecDeque<LogEntry> =
            std::collections::VecDeque::with_capacity(limit.min(1024));
        let mut entry_bytes = 0usize;
        if consumer.cached_info().num_pending == 0 {
            return Ok(Vec::new());
        }
        let mut messages = consumer.messages().await.map_err(NatsError::new)?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(NatsError::new)?;
            let info = message.info().map_err(NatsError::boxed)?;
            let pending = info.pending;
            let header = |name: &str| {
                message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
            };
            if entries.len() == limit
                && let Some(oldest) = entries.pop_front()
            {
                entry_bytes -= oldest.text.len();
            }
            let text = String::from_utf8_lossy(&message.payload).into_owned();
            entry_bytes += text.len();
            entries.push_back(LogEntry {
                time: rfc3339(info.published),
                caller: header("Nimbus-Caller").unwrap_or_default(),
                text,
                truncated: header("Nimbus-Logs-Truncated").is_some(),
            });
            while entry_bytes > max_bytes
                && let Some(oldest) = entries.pop_front()
            {
                entry_bytes -= oldest.text.len();
            }
            if pending == 0 {
                break;
            }
        }
        Ok(entries.into())
    }

    /// Record a new asynchronous invocation; returns the record's revision.
    pub async fn create_invocation(&self, record: &InvocationRecord) -> Result<u64, StoreError> {
        let key = owner_key(&record.owner, &record.id);
        self.create(&self.invocations, "create invocation", &key, encode(record))
            .await
    }

    /// Replace an invocation record only if it is still at `revision`, i.e.
    /// nobody else wrote it since; the new revision, or `None` if somebody did.
    pub async fn update_invocation(
        &self,
        record: &InvocationRecord,
        revision: u64,
    ) -> Result<Option<u64>, StoreError> {
        let (key, value) = (owner_key(&record.owner, &record.id), encode(record));
        match self
            .ride_out(Retry::Undelivered, "update invocation", || {
                self.invocations.update(&key, value.clone(), revision)
            })
            .await
        {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Record an asynchronous invocation's state, whatever was there.
    pub async fn put_invocation(&self, record: &InvocationRecord) -> Result<(), StoreError> {
        let (key, value) = (owner_key(&record.owner, &record.id), encode(record));
        self.ride_out(Retry::Idempotent, "write invocation", || {
            self.invocations.put(&key, value.clone())
        })
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    /// `owner`'s invocation `id` and its revision (for [`Store::update_invocation`]).
    pub async fn invocation_with_revision(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<Option<(InvocationRecord, u64)>, StoreError> {
        let key = owner_key(owner, id);
        let entry = self
            .ride_out(Retry::Idempotent, "read invocation", || {
                self.invocations.entry(&key)
            })
            .await
            .map_err(unavailable)?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                Ok(Some((decode(&key, &entry.value)?, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// `owner`'s invocation `id`; `None` if unknown, expired or someone else's.
    pub async fn invocation(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<Option<InvocationRecord>, StoreError> {
        Ok(self
            .invocation_with_revision(owner, id)
            .await?
            .map(|(record, _)| record))
    }

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
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    /// How many of `owner`'s jobs are queued or running: a job stays in the
    /// work-queue stream until a worker acks it, which it does once the
    /// invocation's outcome is recorded.
    pub async fn jobs_of(&self, owner: &str) -> Result<u64, StoreError> {
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
        .map_err(unavailable)
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
        .map_err(unavailable)
    }

    /// Store module bytes under `digest` unless an object of that name exists
    /// already (same digest, same bytes).
    pub async fn put_module(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if self.modules.info(digest).await.is_ok() {
            return Ok(());
        }
        self.put_object(digest, bytes).await
    }

    /// The module stored under `digest`, if any.
    pub async fn module(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_object(digest).await
    }

    /// A precompiled artifact of module `digest` for engines with `engine_key`.
    pub async fn artifact(
        &self,
        digest: &str,
        engine_key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_object(&artifact_name(digest, engine_key)).await
    }

    /// Keep a precompiled artifact of module `digest` for engines with `engine_key`.
    pub async fn put_artifact(
        &self,
        digest: &str,
        engine_key: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.put_object(&artifact_name(digest, engine_key), bytes)
            .await
    }

    async fn put_object(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        // Not retried: async-nats reports a failed chunk only as text, so
        // whether JetStream received it is unknown. The upload answers 503.
        let mut reader = bytes;
        self.modules
            .put(name, &mut reader)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_object(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.ride_out(Retry::Idempotent, "read object", || async {
            let mut object = match self.modules.get(name).await {
                Ok(object) => object,
                Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(NatsError::new(e)),
            };
            let mut bytes = Vec::with_capacity(object.info.size);
            object
                .read_to_end(&mut bytes)
                .await
                .map_err(NatsError::new)?;
            Ok(Some(bytes))
        })
        .await
        .map_err(unavailable)
    }
}

/// Keys of owned records (functions, invocations): `<owner>.<id>`, so a
/// user's records are a subject filter and nobody else's can be named.
fn owner_key(owner: &str, id: impl std::fmt::Display) -> String {
    format!("{owner}.{id}")
}

/// The current time in RFC 3339, as every record's timestamps are written.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

fn rfc3339(time: time::OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn artifact_name(digest: &str, engine_key: &str) -> String {
    format!("{digest}.cwasm-{engine_key}")
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    serde_json::to_vec(value).expect("records serialise").into()
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}
