//! NATS subject and resource names. Nothing else in Nimbus spells a subject
//! by hand, so renaming one is a change in exactly one place.

use crate::FunctionId;

/// Queue group every worker joins for synchronous invocations.
pub const WORKER_QUEUE_GROUP: &str = "workers";
/// Wildcard a worker subscribes to for synchronous invocations. The
/// envelope version is part of the subject (see [`crate::wire::call`]), so a
/// worker only ever receives requests in a format it reads.
pub const EXECUTE_ALL: &str = "functions.execute.v2.*";
/// Where API servers of the previous release (JSON envelope) send
/// synchronous invocations. Workers still serve them
/// ([`crate::wire::legacy`]) so that a rolling upgrade loses no call; drop
/// it once no API server of the previous release is left.
pub const EXECUTE_LEGACY_ALL: &str = "functions.execute.*";
/// Function error events (one per failed invocation).
pub const ERRORS: &str = "functions.error";
/// Stream that keeps function logs.
pub const LOGS_STREAM: &str = "FUNCTION_LOGS";
/// Wildcard covering every function's logs.
pub const LOGS_ALL: &str = "functions.logs.*";

/// Work-queue stream of asynchronous invocations (jobs).
pub const JOBS_STREAM: &str = "FUNCTION_JOBS";
/// Wildcard covering every job: `functions.jobs.<owner>.<id>`.
pub const JOBS_ALL: &str = "functions.jobs.*.*";
/// Wildcard covering every job, legacy ones ([`JOBS_LEGACY`]) included.
pub const JOBS_EVERY: &str = "functions.jobs.>";
/// Jobs as versions before the per-user quota queued them,
/// `functions.jobs.<id>`: the stream keeps taking them (workers run them
/// alike, uncounted) so that API servers of both versions work during a
/// rolling upgrade. Drop once no older API server is left.
pub const JOBS_LEGACY: &str = "functions.jobs.*";
/// The durable pull consumer all workers share to take legacy jobs
/// ([`JOBS_LEGACY`]; before per-tenant consumers it took every job).
pub const JOBS_LEGACY_CONSUMER: &str = "workers";

/// The durable pull consumer of `owner`'s jobs. Each tenant has its own so
/// that workers can take jobs one tenant at a time, whatever the order they
/// were queued in (a work-queue stream lets consumers share it as long as
/// their filters do not overlap).
pub fn jobs_consumer(owner: &str) -> String {
    format!("jobs-{owner}")
}
/// KV bucket of asynchronous invocation records (with a TTL).
pub const INVOCATIONS_BUCKET: &str = "invocations";

/// KV bucket of users.
pub const USERS_BUCKET: &str = "users";
/// KV bucket of function metadata.
pub const FUNCTIONS_BUCKET: &str = "functions";

/// KV bucket: function id -> its configuration variables and sealed
/// secrets. Only API servers may read it: a worker gets the environment of
/// the functions it runs with their calls.
pub const FUNCTION_CONFIG_BUCKET: &str = "function_config";
/// KV bucket of functions' key-value state, every owner's stores in one:
/// `<owner>.<store>.<escaped key>` -> value. API servers only.
pub const KV_DATA_BUCKET: &str = "kv_data";
/// KV bucket: owner -> keys and bytes per store (the quota's count). API
/// servers only.
pub const KV_USAGE_BUCKET: &str = "kv_usage";
/// Subject workers send their functions' key-value operations on; API
/// servers answer them, in [`KV_QUEUE_GROUP`].
pub const KV_REQUESTS: &str = "nimbus.kv.v1";
/// Queue group of the API servers serving [`KV_REQUESTS`].
pub const KV_QUEUE_GROUP: &str = "api-kv";

/// KV bucket: `<owner>.<name>` -> function id (names are unique per owner).
pub const FUNCTION_NAMES_BUCKET: &str = "function_names";
/// Object store of module bytes, by digest.
pub const MODULES_BUCKET: &str = "modules";
/// The stream behind [`MODULES_BUCKET`] (an object store `x` is stream
/// `OBJ_x`).
pub const MODULES_STREAM: &str = "OBJ_modules";

/// The inbox prefix of API servers' NATS connections: replies to their
/// requests (JetStream answers, invocation replies) arrive under it, and
/// only API servers may subscribe to it (`deploy/nats/nats.conf`).
pub const API_INBOX_PREFIX: &str = "_INBOX_api";
/// The inbox prefix of workers' NATS connections.
pub const WORKER_INBOX_PREFIX: &str = "_INBOX_worker";

/// Subject a synchronous invocation of `id` is requested on.
pub fn execute(id: FunctionId) -> String {
    format!("functions.execute.v2.{id}")
}

/// Subject `id`'s log lines are published on.
pub fn logs(id: FunctionId) -> String {
    format!("functions.logs.{id}")
}

/// Subject a job of `owner`'s function `id` is queued on. The owner is in
/// the subject so that the stream can count each user's jobs.
pub fn jobs(owner: &str, id: FunctionId) -> String {
    format!("functions.jobs.{owner}.{id}")
}

/// Wildcard covering `owner`'s jobs.
pub fn jobs_of(owner: &str) -> String {
    format!("functions.jobs.{owner}.*")
}

/// Subject the chunks of object `nuid` of object store `bucket` are kept on
/// (the object store's own layout, read with direct gets).
pub fn object_chunks(bucket: &str, nuid: &str) -> String {
    format!("$O.{bucket}.C.{nuid}")
}

/// Subjects the metadata of every object of object store `bucket` is
/// published on as the object is stored or deleted (the object store's own
/// layout; workers listen to learn of new artifacts).
pub fn object_meta_all(bucket: &str) -> String {
    format!("$O.{bucket}.M.*")
}

/// Subject the final record of asynchronous invocation `invocation` is
/// published on.
pub fn result(invocation: &str) -> String {
    format!("functions.result.{invocation}")
}
