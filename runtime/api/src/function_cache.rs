//! Function metadata kept in memory, fed by a watch on the `functions`
//! bucket, so that a warm `execute` makes no JetStream request before it
//! dispatches (it used to make one KV read per call, about a tenth of a
//! synchronous call's round trip on loopback).
//!
//! How it stays true:
//! - Every put and delete in the bucket reaches each API server through one
//!   watch (an ordered consumer on `$KV.functions.>`, delivering new
//!   messages only). A put is cached (a `PATCH` is a put too); a delete
//!   leaves a tombstone. Function ids are never reused, so a tombstone is
//!   final: a deleted function answers 404 without JetStream.
//! - Names (function URLs) are looked up through a name -> id index built
//!   from the cached metadata. A hit counts only if the cached function
//!   still has that name; anything else (a miss, a rename, a delete) asks
//!   the `function_names` bucket, which is the truth.
//! - A miss reads the bucket and caches what it found, unless the watch has
//!   said something about that key meanwhile (then the watch is newer), or
//!   the cache was reset since the read began (its generation changed).
//! - The server that deletes a function drops it at once; other servers see
//!   the delete within the watch's latency (a message on loopback).
//! - The watch is an ordered consumer, which resumes by itself from the last
//!   message it delivered (after a missed heartbeat, a reconnection). If it
//!   ends for good, a new watch is started and only then is the cache
//!   emptied: a change made while nobody watched cannot leave a stale entry
//!   behind. While a watch is down (NATS unreachable) the cache can lag; so
//!   can the dispatch it serves, which needs NATS too.
//!
//! It holds at most `capacity` entries; when full it starts over, empty.
//! Users are not cached: only login reads them, and it must see a password
//! change at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use nimbus_core::{FunctionId, FunctionMeta, Username};
use nimbus_store::{FunctionChange, Storage};

use crate::ApiError;

/// Pause before starting a failed watch again.
const REWATCH_DELAY: Duration = Duration::from_millis(500);

/// What the cache knows about one key.
#[derive(Clone)]
enum Entry {
    Present(Arc<FunctionMeta>),
    Deleted,
}

struct Inner {
    entries: HashMap<(Username, FunctionId), Entry>,
    /// Names of the cached functions.
    names: HashMap<(Username, String), FunctionId>,
    /// Bumped at every reset; a read that began under an older generation
    /// is not cached.
    generation: u64,
}

/// Function metadata by owner and id.
pub struct FunctionCache {
    inner: Mutex<Inner>,
    capacity: usize,
    /// The task following the bucket, stopped with the cache.
    watch: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for FunctionCache {
    fn drop(&mut self) {
        if let Some(watch) = self.watch.get_mut().ok().and_then(Option::take) {
            watch.abort();
        }
    }
}

impl FunctionCache {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                names: HashMap::new(),
                generation: 0,
            }),
            capacity: capacity.max(1),
            watch: Mutex::new(None),
        }
    }

    /// `owner`'s function `id`: from memory, else from `storage` (and then
    /// remembered). `None` if it does not exist or is someone else's.
    pub(crate) async fn get(
        &self,
        storage: Result<&Storage, ApiError>,
        owner: &Username,
        id: FunctionId,
    ) -> Result<Option<Arc<FunctionMeta>>, ApiError> {
        let key = (owner.clone(), id);
        let generation = {
            let inner = self.lock();
            match inner.entries.get(&key) {
                Some(Entry::Present(meta)) => return Ok(Some(meta.clone())),
                Some(Entry::Deleted) => return Ok(None),
                None => inner.generation,
            }
        };
        let Some(meta) = storage?.function(owner, id).await? else {
            return Ok(None);
        };
        let meta = Arc::new(meta);
        let mut inner = self.lock();
        if inner.generation == generation && !inner.entries.contains_key(&key) {
            self.make_room(&mut inner);
            index_name(&mut inner, &meta);
            inner.entries.insert(key, Entry::Present(meta.clone()));
        }
        Ok(Some(meta))
    }

    /// `owner`'s function called `name`: from memory when the cached
    /// function still has that name, else through the `function_names`
    /// bucket.
    pub(crate) async fn by_name(
        &self,
        storage: Result<&Storage, ApiError>,
        owner: &Username,
        name: &str,
    ) -> Result<Option<Arc<FunctionMeta>>, ApiError> {
        {
            let inner = self.lock();
            let cached = inner
                .names
                .get(&(owner.clone(), name.to_owned()))
                .and_then(|id| inner.entries.get(&(owner.clone(), *id)));
            if let Some(Entry::Present(meta)) = cached
                && meta.name.as_deref() == Some(name)
            {
                return Ok(Some(meta.clone()));
            }
        }
        let storage = storage?;
        let Some(id) = storage.function_id_by_name(owner, name).await? else {
            return Ok(None);
        };
        let meta = self.get(Ok(storage), owner, id).await?;
        Ok(meta.filter(|meta| meta.name.as_deref() == Some(name)))
    }

    /// Remember `meta` (a function just created, or a test's seed), unless
    /// it has been deleted already.
    pub fn insert(&self, meta: FunctionMeta) {
        let mut inner = self.lock();
        let key = (meta.owner.clone(), meta.id);
        if matches!(inner.entries.get(&key), Some(Entry::Deleted)) {
            return;
        }
        self.make_room(&mut inner);
        let meta = Arc::new(meta);
        index_name(&mut inner, &meta);
        inner.entries.insert(key, Entry::Present(meta));
    }

    /// Forget `owner`'s function `id` for good: it was deleted.
    pub fn remove(&self, owner: &Username, id: FunctionId) {
        let mut inner = self.lock();
        self.make_room(&mut inner);
        inner.entries.insert((owner.clone(), id), Entry::Deleted);
    }

    /// Start following the bucket: returns once the watch is in place, and
    /// keeps it in place for as long as the cache lives.
    pub(crate) async fn follow(self: &Arc<Self>, storage: Storage) -> anyhow::Result<()> {
        let mut changes = storage.watch_functions().await?;
        let cache = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                while let Some(change) = changes.next().await {
                    let Some(cache) = cache.upgrade() else { return };
                    match change {
                        Ok(FunctionChange::Put(meta)) => cache.insert(meta),
                        Ok(FunctionChange::Deleted { owner, id }) => cache.remove(&owner, id),
                        // The watch is an ordered consumer: after a missed
                        // heartbeat or a lost message it starts again from
                        // the last message it delivered, so nothing is
                        // skipped. Keep reading.
                        Err(e) => tracing::warn!(error = %e, "function watch interrupted"),
                    }
                }
                // The watch ended for good: watch again. The cache is emptied
                // only once the new watch is in place, so a read after that
                // sees every delete made before it, and the new watch
                // delivers every delete made after.
                changes = loop {
                    tokio::time::sleep(REWATCH_DELAY).await;
                    if cache.strong_count() == 0 {
                        return;
                    }
                    match storage.watch_functions().await {
                        Ok(changes) => break changes,
                        Err(e) => tracing::warn!(error = %e, "cannot watch functions; retrying"),
                    }
                };
                let Some(cache) = cache.upgrade() else { return };
                cache.reset();
            }
        });
        *self.watch.lock().expect("watch lock") = Some(task.abort_handle());
        Ok(())
    }

    /// Forget everything.
    fn reset(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.names.clear();
        inner.generation += 1;
    }

    fn make_room(&self, inner: &mut Inner) {
        if inner.entries.len() >= self.capacity {
            inner.entries.clear();
            inner.names.clear();
            inner.generation += 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("function cache lock")
    }
}

fn index_name(inner: &mut Inner, meta: &FunctionMeta) {
    if let Some(name) = &meta.name {
        inner
            .names
            .insert((meta.owner.clone(), name.clone()), meta.id);
    }
}
