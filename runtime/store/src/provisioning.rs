//! Start-up. API servers provision: create the buckets and streams if
//! missing, or update them to the configuration, and take handles on them
//! ([`Storage::open`]; idempotent, so whichever starts first creates them
//! and the others find them). Workers only attach to what exists
//! ([`Storage::attach`]): their NATS user may not create, change or delete
//! streams, so a compromised worker cannot reconfigure the users bucket.

use async_nats::jetstream::{
    self, kv, object_store,
    stream::{self, DiscardPolicy, RetentionPolicy},
};
use nimbus_core::subjects;

use crate::{Storage, StoreConfig, StoreError, unavailable};

impl Storage {
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
            .map_err(|e| unavailable("create the users bucket", e))?;
        let functions = js
            .create_or_update_key_value(kv_config(
                subjects::FUNCTIONS_BUCKET,
                "Nimbus function metadata",
                1,
            ))
            .await
            .map_err(|e| unavailable("create the functions bucket", e))?;
        let names = js
            .create_or_update_key_value(kv_config(
                subjects::FUNCTION_NAMES_BUCKET,
                "Nimbus function names: <owner>.<name> -> function id",
                1,
            ))
            .await
            .map_err(|e| unavailable("create the function names bucket", e))?;
        let function_config = js
            .create_or_update_key_value(kv_config(
                subjects::FUNCTION_CONFIG_BUCKET,
                "Nimbus function configuration: variables and sealed secrets",
                1,
            ))
            .await
            .map_err(|e| unavailable("create the function configuration bucket", e))?;
        let state = crate::kv_state::StateBuckets {
            data: js
                .create_or_update_key_value(kv::Config {
                    max_value_size: (nimbus_core::kv::MAX_VALUE_BYTES + 1024) as i32,
                    ..kv_config(
                        subjects::KV_DATA_BUCKET,
                        "Nimbus functions' key-value state: <owner>.<store>.<key>",
                        1,
                    )
                })
                .await
                .map_err(|e| unavailable("create the key-value state bucket", e))?,
            usage: js
                .create_or_update_key_value(kv_config(
                    subjects::KV_USAGE_BUCKET,
                    "Nimbus key-value usage per owner",
                    1,
                ))
                .await
                .map_err(|e| unavailable("create the key-value usage bucket", e))?,
        };
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
            .map_err(|e| unavailable("create the invocations bucket", e))?;
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
                .map_err(|e| unavailable("create the modules object store", e))?,
        };
        // Its stream, for reading objects with direct gets (see objects.rs).
        let modules_stream = js
            .get_stream(subjects::MODULES_STREAM)
            .await
            .map_err(|e| unavailable("open the modules stream", e))?;
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
        .map_err(|e| unavailable("create the logs stream", e))?;
        let logs = js
            .get_stream(subjects::LOGS_STREAM)
            .await
            .map_err(|e| unavailable("open the logs stream", e))?;
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
        .map_err(|e| unavailable("create the jobs stream", e))?;
        let jobs = js
            .get_stream(subjects::JOBS_STREAM)
            .await
            .map_err(|e| unavailable("open the jobs stream", e))?;
        Ok(Self {
            client,
            logs,
            users,
            functions,
            names,
            function_config: Some(function_config),
            state: Some(state),
            invocations,
            jobs,
            modules,
            modules_stream,
            js,
            failover_wait: config.failover_wait,
            log_max_per_function: config.log_max_per_function,
            interpreters: Default::default(),
        })
    }

    /// Take handles on the buckets and streams an API server provisioned,
    /// creating and changing nothing. A worker that starts before any API
    /// server waits for them, up to [`ATTACH_WAIT`].
    pub async fn attach(
        client: async_nats::Client,
        config: &StoreConfig,
    ) -> Result<Self, StoreError> {
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        let deadline = std::time::Instant::now() + ATTACH_WAIT;
        loop {
            match Self::bind(&client, &js, config).await {
                Ok(storage) => return Ok(storage),
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "the buckets are not provisioned yet; waiting");
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn bind(
        client: &async_nats::Client,
        js: &jetstream::Context,
        config: &StoreConfig,
    ) -> Result<Self, StoreError> {
        let kv = |bucket: &'static str| async move {
            js.get_key_value(bucket)
                .await
                .map_err(|e| unavailable("open a bucket", e))
        };
        let stream = |name: &'static str| async move {
            js.get_stream(name)
                .await
                .map_err(|e| unavailable("open a stream", e))
        };
        Ok(Self {
            client: client.clone(),
            logs: stream(subjects::LOGS_STREAM).await?,
            users: kv(subjects::USERS_BUCKET).await?,
            functions: kv(subjects::FUNCTIONS_BUCKET).await?,
            names: kv(subjects::FUNCTION_NAMES_BUCKET).await?,
            function_config: None,
            state: None,
            invocations: kv(subjects::INVOCATIONS_BUCKET).await?,
            jobs: stream(subjects::JOBS_STREAM).await?,
            modules: js
                .get_object_store(subjects::MODULES_BUCKET)
                .await
                .map_err(|e| unavailable("open the modules object store", e))?,
            modules_stream: stream(subjects::MODULES_STREAM).await?,
            js: js.clone(),
            failover_wait: config.failover_wait,
            log_max_per_function: config.log_max_per_function,
            interpreters: Default::default(),
        })
    }
}

/// How long [`Storage::attach`] waits for an API server to provision.
pub const ATTACH_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
