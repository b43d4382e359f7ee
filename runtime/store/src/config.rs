//! Store settings: replication, retention and size caps of the buckets and
//! streams, and how long an operation rides out a JetStream failover.

use std::time::Duration;

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Replicas per bucket: 1 on a single server, 3 on a JetStream cluster.
    pub replicas: usize,
    /// How long function logs are kept.
    pub log_retention: Duration,
    /// Cap on the log stream's size, in bytes (-1: none): the disk's safety
    /// net, not a quota. Each tenant's logs are bounded by its log quota
    /// (the API's `Quotas::log_bytes`, reserved per function as
    /// `log_max_per_function` x its `max_log_bytes`), so one tenant cannot
    /// evict another's entries; only if all tenants together outgrow this
    /// cap do the oldest entries of any function make way. Size it to the
    /// tenants you host (the default holds 4 at their full quota). JetStream
    /// reserves it on disk (`nimbus up`'s server has 8 GB for everything).
    pub log_max_bytes: i64,
    /// Log entries (one per invocation that wrote any) kept per function:
    /// a function's new entries push out only its own oldest, and a read of
    /// the newest ones reads at most this many.
    pub log_max_per_function: i64,
    /// How long asynchronous invocation records (and unstarted jobs) are kept.
    pub invocation_retention: Duration,
    /// Cap on queued jobs, in bytes; past it new asynchronous invocations
    /// are refused (503) rather than filling JetStream's disk.
    pub jobs_max_bytes: i64,
    /// Cap on invocation records, in bytes (refused past it, likewise).
    pub invocations_max_bytes: i64,
    /// How long one store operation keeps retrying while JetStream cannot
    /// take it (see [`Retry`](crate::failover::Retry)): enough to ride out
    /// the stream leader elections after a node of a cluster dies (measured
    /// here: reads of replicas answer again within ~1.5 s, requests that need
    /// a stream's leader within 2-8 s), short enough that an outage still
    /// answers 503 in bounded time.
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
            log_max_bytes: 2 << 30,
            log_max_per_function: 50,
            invocation_retention: Duration::from_secs(24 * 3600),
            jobs_max_bytes: 1 << 30,
            invocations_max_bytes: 1 << 30,
            failover_wait: Duration::from_secs(15),
            request_timeout: Duration::from_secs(2),
        }
    }
}
