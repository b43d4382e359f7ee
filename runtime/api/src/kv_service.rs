//! Functions' key-value state as workers reach it: through API servers.
//!
//! Workers hold no permission on the state's buckets (`deploy/nats/nats.conf`).
//! A call or job of a function that declared `key_value_stores` carries a
//! grant ([`nimbus_core::kv::Grant`]) an API server signed with a key only
//! API servers hold; the worker sends each operation its guest makes on
//! [`subjects::KV_REQUESTS`] with that grant, and whichever API server of
//! the [`subjects::KV_QUEUE_GROUP`] takes it checks the grant (signature,
//! expiry, store named), that the function still exists and still
//! declares the store (deleting a function or narrowing its stores revokes
//! its grants), and applies the operation to the owner's stores. So a
//! compromised worker reaches the stores of the calls it was given, while
//! their grants last, and nothing else.
//!
//! Replies go only to a worker's inbox (`subjects::WORKER_INBOX_PREFIX`):
//! the API's NATS user may write to buckets and streams, and a reply
//! subject is the requester's choice, so answering anywhere else would let
//! a worker make the API publish where it pleases.
//!
//! [`apply`] is also what the owner's HTTP routes (`routes/kv.rs`) would
//! do with an operation; they call the store directly for their own shapes.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use nimbus_core::kv::{Grant, KvError, KvOp, KvQuota, KvReply, KvRequest};
use nimbus_core::wire::headers;
use nimbus_core::{FunctionMeta, SecretsKey, Username, subjects};
use nimbus_store::{KvEntry, Storage};

use crate::background::BackgroundTask;
use crate::{ApiError, AppState};

/// How long a queued job's grant lasts: past the time a job may wait in
/// its stream (`StoreConfig::invocation_retention`, a day by default).
pub(crate) const JOB_GRANT_TTL: Duration = Duration::from_secs(25 * 3600);

/// How long a call's grant outlasts the time its caller waits: the run
/// ends by then, and the API server that checks an operation's grant may
/// be another than the one that signed it, its clock off by seconds.
pub(crate) const CALL_GRANT_MARGIN: Duration = Duration::from_secs(60);

/// Operations one API server applies at once; more wait in NATS.
const CONCURRENT_OPERATIONS: usize = 256;

/// The grant calls of `meta` carry, valid for `ttl`: `None` when the
/// function declared no store.
pub(crate) fn grant(
    key: Option<&SecretsKey>,
    meta: &FunctionMeta,
    ttl: Duration,
) -> Result<Option<String>, ApiError> {
    if meta.key_value_stores.is_empty() {
        return Ok(None);
    }
    let key = key.ok_or_else(|| {
        ApiError::unavailable(
            "the function declares key_value_stores and this API server has no secrets key \
             (NIMBUS_SECRETS_KEY), which signs the grants",
        )
    })?;
    let grant = Grant {
        owner: meta.owner.to_string(),
        function_id: meta.id,
        stores: meta.key_value_stores.clone(),
        expires_ms: now_ms() + ttl.as_millis() as u64,
    };
    Ok(Some(grant.sign(key)))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Answer workers' operations until the task is dropped; nothing without
/// NATS, a store or a secrets key.
pub(crate) async fn start(state: &Arc<AppState>) -> Result<BackgroundTask, ApiError> {
    let (Some(nats), Ok(_), Some(_)) = (
        state.nats.clone(),
        state.storage(),
        state.config.secrets_key.as_ref(),
    ) else {
        return Ok(BackgroundTask(None));
    };
    let state = state.clone();
    let mut requests = nats
        .queue_subscribe(subjects::KV_REQUESTS, subjects::KV_QUEUE_GROUP.into())
        .await
        .map_err(|e| ApiError::unavailable(format!("subscribe to key-value requests: {e}")))?;
    // The server knows the subscription once it answers a ping: workers'
    // first operations find a responder.
    nats.flush()
        .await
        .map_err(|e| ApiError::unavailable(format!("subscribe to key-value requests: {e}")))?;
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_OPERATIONS));
    Ok(BackgroundTask(Some(tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let Some(reply_to) = message.reply.clone().filter(|r| is_worker_inbox(r)) else {
                tracing::warn!(
                    reply = ?message.reply,
                    "a key-value operation whose reply subject is not a worker's inbox; ignored"
                );
                continue;
            };
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let (nats, state) = (nats.clone(), state.clone());
            tokio::spawn(async move {
                let grant = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(headers::KV_GRANT))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                let reply = match serve(&state, &grant, &message.payload).await {
                    Ok(reply) => reply,
                    Err(error) => KvReply::failed(error),
                };
                if let Err(e) = nats.publish(reply_to, reply.frame().into()).await {
                    tracing::warn!(error = %e, "could not answer a key-value operation");
                }
                drop(slot);
            });
        }
    }))))
}

/// Whether `subject` is a reply subject in a worker's inbox: the prefix,
/// then tokens without wildcards.
fn is_worker_inbox(subject: &str) -> bool {
    subject
        .strip_prefix(subjects::WORKER_INBOX_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| {
            rest.split('.')
                .all(|token| !token.is_empty() && token != "*" && token != ">")
                && !rest.contains([' ', '\t', '\r', '\n'])
        })
}

/// Check `grant` and apply the operation framed in `payload`.
async fn serve(state: &AppState, grant: &str, payload: &Bytes) -> Result<KvReply, KvError> {
    let key = state
        .config
        .secrets_key
        .as_ref()
        .ok_or_else(|| KvError::unavailable("this API server has no secrets key"))?;
    let grant = Grant::verify(grant, key, now_ms())?;
    let request = KvRequest::parse(payload)?;
    if !grant.allows(&request.store) {
        return Err(KvError::access_denied(&request.store));
    }
    // The grant's function as it is now: deleted, or its stores narrowed
    // since the grant was signed, the grant no longer holds.
    let owner =
        Username::parse(&grant.owner).map_err(|_| KvError::access_denied(&request.store))?;
    let meta = state
        .functions
        .get(state.storage(), &owner, grant.function_id)
        .await
        .map_err(|e| KvError::unavailable(e.to_string()))?;
    if !meta.is_some_and(|meta| meta.key_value_stores.contains(&request.store)) {
        return Err(KvError::access_denied(&request.store));
    }
    let storage = state
        .storage()
        .map_err(|e| KvError::unavailable(e.to_string()))?;
    apply(storage, &grant.owner, request, &state.config.kv_quota).await
}

/// Apply `request` to `owner`'s stores.
pub(crate) async fn apply(
    storage: &Storage,
    owner: &str,
    request: KvRequest,
    quota: &KvQuota,
) -> Result<KvReply, KvError> {
    let store = request.store.as_str();
    let found = |entry: KvEntry, with_revision: bool| KvReply {
        found: Some(entry.value.is_some()),
        revision: with_revision.then_some(entry.revision),
        value: entry.value.unwrap_or_default(),
        ..KvReply::default()
    };
    Ok(match request.op {
        KvOp::Get { key } => found(storage.kv_read(owner, store, &key).await?, false),
        KvOp::Read { key } => found(storage.kv_read(owner, store, &key).await?, true),
        KvOp::Exists { key } => KvReply {
            value: Bytes::new(),
            ..found(storage.kv_read(owner, store, &key).await?, false)
        },
        KvOp::Set { key } => KvReply {
            revision: Some(
                storage
                    .kv_set(owner, store, &key, Some(request.value), quota)
                    .await?,
            ),
            ..KvReply::default()
        },
        KvOp::Delete { key } => {
            storage.kv_set(owner, store, &key, None, quota).await?;
            KvReply::default()
        }
        KvOp::List { prefix, cursor } => {
            let (keys, cursor) = storage
                .kv_list(owner, store, &prefix, cursor.as_deref())
                .await?;
            KvReply {
                keys: Some(keys),
                cursor,
                ..KvReply::default()
            }
        }
        KvOp::Increment { key, delta } => {
            let (counter, revision) = storage
                .kv_increment(owner, store, &key, delta, quota)
                .await?;
            KvReply {
                counter: Some(counter),
                revision: Some(revision),
                ..KvReply::default()
            }
        }
        KvOp::Swap { key, revision } => {
            let seen = storage.kv_read(owner, store, &key).await?;
            let written = if seen.revision == revision {
                storage
                    .kv_swap(owner, store, &key, &seen, Some(request.value), quota)
                    .await?
            } else {
                None
            };
            KvReply {
                swapped: Some(written.is_some()),
                revision: written,
                ..KvReply::default()
            }
        }
    })
}
