//! The compiled modules an engine keeps, by digest, bounded by count and by
//! bytes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::CompiledModule;

/// Least-recently-used cache of compiled modules by digest. Small (hundreds
/// of entries), so eviction scans instead of keeping a linked list.
pub(crate) struct ModuleCache {
    capacity: usize,
    max_bytes: u64,
    bytes: u64,
    clock: u64,
    entries: HashMap<String, CacheEntry>,
}

struct CacheEntry {
    module: Arc<CompiledModule>,
    bytes: u64,
    used: u64,
}

impl ModuleCache {
    pub(crate) fn new(capacity: usize, max_bytes: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
            clock: 0,
            entries: HashMap::new(),
        }
    }

    /// Number of modules held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of the modules held (their loaded images).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn get(&mut self, digest: &str) -> Option<Arc<CompiledModule>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(digest).map(|entry| {
            entry.used = clock;
            entry.module.clone()
        })
    }

    /// Keep `module` (evicting the least recently used as needed); false
    /// when it alone is larger than the cache.
    pub(crate) fn insert(&mut self, digest: String, module: Arc<CompiledModule>) -> bool {
        let bytes = module.image_bytes();
        if bytes > self.max_bytes {
            return false;
        }
        if let Some(old) = self.entries.remove(&digest) {
            self.bytes -= old.bytes;
        }
        while !self.entries.is_empty()
            && (self.entries.len() >= self.capacity || self.bytes + bytes > self.max_bytes)
        {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(digest, _)| digest.clone())
                .expect("not empty");
            let evicted = self.entries.remove(&oldest).expect("present");
            self.bytes -= evicted.bytes;
        }
        self.clock += 1;
        self.bytes += bytes;
        self.entries.insert(
            digest,
            CacheEntry {
                module,
                bytes,
                used: self.clock,
            },
        );
        true
    }
}
