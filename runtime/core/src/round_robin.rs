//! Waiting work grouped by who asked for it, served one group at a time in
//! turn: the scheduling policy of the API's fair CPU slots (bcrypt, script
//! evaluation). A client with a thousand requests waiting gets the next
//! turn only after every other waiting client had one.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Values queued by key, popped round-robin across keys (first come first
/// served within a key).
#[derive(Debug)]
pub struct RoundRobin<K, V> {
    /// Keys with something waiting, in the order they get their turns.
    order: VecDeque<K>,
    queues: HashMap<K, VecDeque<V>>,
    /// Values waiting, all keys together.
    len: usize,
}

impl<K, V> Default for RoundRobin<K, V> {
    fn default() -> Self {
        Self {
            order: VecDeque::new(),
            queues: HashMap::new(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V> RoundRobin<K, V> {
    /// Queue `value` for `key`; a key new to the queue takes its turn after
    /// every key already waiting.
    pub fn push(&mut self, key: K, value: V) {
        self.len += 1;
        match self.queues.get_mut(&key) {
            Some(queue) => queue.push_back(value),
            None => {
                self.order.push_back(key.clone());
                self.queues.insert(key, VecDeque::from([value]));
            }
        }
    }

    /// The oldest value of the key whose turn it is; that key then waits
    /// behind every other.
    pub fn pop(&mut self) -> Option<V> {
        self.pop_eligible(|_| true).map(|(_, value)| value)
    }

    /// [`RoundRobin::pop`], skipping keys for which `eligible` is false
    /// (they keep their place in line): the oldest value of the first
    /// eligible key in turn, with its key.
    pub fn pop_eligible(&mut self, mut eligible: impl FnMut(&K) -> bool) -> Option<(K, V)> {
        let position = self.order.iter().position(&mut eligible)?;
        let key = self.order.remove(position).expect("found above");
        let queue = self
            .queues
            .get_mut(&key)
            .expect("every ordered key has a queue");
        let value = queue.pop_front().expect("queues are never left empty");
        self.len -= 1;
        if queue.is_empty() {
            self.queues.remove(&key);
        } else {
            self.order.push_back(key.clone());
        }
        Some((key, value))
    }

    /// Values waiting for `key`.
    pub fn len_of(&self, key: &K) -> usize {
        self.queues.get(key).map_or(0, VecDeque::len)
    }

    /// Values waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_key_waits_behind_every_other() {
        let mut queue = RoundRobin::default();
        for n in 0..100 {
            queue.push("flood", n);
        }
        queue.push("alice", 1000);
        queue.push("bob", 2000);
        queue.push("alice", 1001);
        assert_eq!(queue.len(), 103);
        let first: Vec<_> = (0..6).map(|_| queue.pop().unwrap()).collect();
        assert_eq!(first, [0, 1000, 2000, 1, 1001, 2]);
        let rest: Vec<_> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(rest, (3..100).collect::<Vec<_>>());
        assert!(queue.is_empty());
    }

    #[test]
    fn ineligible_keys_keep_their_place() {
        let mut queue = RoundRobin::default();
        queue.push("busy", 1);
        queue.push("busy", 2);
        queue.push("idle", 10);
        assert_eq!(queue.pop_eligible(|key| *key != "busy"), Some(("idle", 10)));
        assert_eq!(queue.pop_eligible(|key| *key != "busy"), None);
        assert_eq!(queue.pop(), Some(1));
        assert_eq!(queue.len(), 1);
        assert_eq!((queue.len_of(&"busy"), queue.len_of(&"idle")), (1, 0));
    }
}
