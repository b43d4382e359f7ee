//! Cranelift's incremental compilation cache, kept in memory and bounded.
//!
//! Every JavaScript function is the same QuickJS shim with a different memory
//! snapshot: its ~1 MB of code is identical from one function to the next,
//! and compiling it is what makes a JS upload (and a worker's first call of a
//! new JS function) slow. Cranelift can key each compiled function by a hash
//! of its IR and reuse the machine code of an identical function compiled
//! before, so only the first JS function pays for the whole shim. The keys
//! are content hashes computed by Cranelift itself, so a module can only ever
//! hit code compiled from an identical function body.
//!
//! The store keeps two generations: entries go into the current one; when it
//! holds half the byte budget, it becomes the previous one and the old
//! previous one is dropped. A hit in the previous generation moves the entry
//! back into the current one, so what is in use survives and memory stays
//! within the budget.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Hits and misses of the code cache since the engine started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeCacheStats {
    /// Functions whose machine code was reused.
    pub hits: u64,
    /// Functions that were compiled.
    pub misses: u64,
}

#[derive(Debug)]
pub(crate) struct CodeCache {
    generation_bytes: usize,
    generations: Mutex<Generations>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<Vec<u8>, Vec<u8>>,
    current_bytes: usize,
    previous: HashMap<Vec<u8>, Vec<u8>>,
}

impl CodeCache {
    /// A cache that holds at most about `max_bytes` of keys and code.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            generation_bytes: max_bytes / 2,
            generations: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> CodeCacheStats {
        CodeCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

impl Generations {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>, generation_bytes: usize) {
        let key_len = key.len();
        self.current_bytes += key_len + value.len();
        if let Some(old) = self.current.insert(key, value) {
            // The key was counted already, with its old value.
            self.current_bytes -= key_len + old.len();
        }
        if self.current_bytes >= generation_bytes {
            self.previous = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
    }
}

impl wasmtime::CacheStore for CodeCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let mut generations = self.generations.lock().expect("code cache lock");
        let found = match generations.current.get(key) {
            Some(value) => Some(value.clone()),
            None => generations.previous.remove(key).inspect(|value| {
                generations.insert(key.to_vec(), value.clone(), self.generation_bytes);
            }),
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found.map(Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        if key.len() + value.len() > self.generation_bytes {
            return false;
        }
        self.generations.lock().expect("code cache lock").insert(
            key.to_vec(),
            value,
            self.generation_bytes,
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;

    #[test]
    fn stays_within_budget_and_keeps_what_is_used() {
        let cache = CodeCache::new(4000);
        // 100-byte entries: a generation (2000 bytes) turns over every ~19.
        let key = |i: u32| i.to_le_bytes().to_vec();
        assert!(cache.insert(&key(0), vec![0; 96]));
        for i in 1..200 {
            assert!(cache.insert(&key(i), vec![0; 96]));
            // Entry 0 is used all the time, so it is never dropped.
            assert!(cache.get(&key(0)).is_some(), "lost the hot entry at {i}");
            let g = cache.generations.lock().unwrap();
            let held: usize = g
                .current
                .iter()
                .chain(g.previous.iter())
                .map(|(k, v)| k.len() + v.len())
                .sum();
            assert!(held <= 4000, "holds {held} bytes");
        }
        // Old, unused entries were dropped.
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.get(&key(199)).is_some());
        // Larger than a generation: refused, not stored.
        assert!(!cache.insert(b"big", vec![0; 2000]));
        assert!(cache.get(b"big").is_none());
        let stats = cache.stats();
        assert_eq!(stats.hits, 200);
        assert_eq!(stats.misses, 2);
    }
}
