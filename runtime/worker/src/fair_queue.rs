//! The queue in front of a worker's slots, shared fairly between tenants.
//!
//! A tenant is whoever a call is charged to (its `caller`: the function's
//! owner for an anonymous call on a public URL). Two rules:
//! - no tenant runs more than `per_tenant` calls at once on this worker
//!   (`WorkerConfig::tenant_concurrency`, half the slots by default), so
//!   one tenant's burst of slow calls (64 sleepers) leaves slots free for
//!   everybody else;
//! - waiting calls are taken one tenant at a time in turn
//!   (`nimbus_core::round_robin`), first come first served within a tenant.
//!
//! The whole queue holds at most `capacity` calls, as before, and one
//! tenant at most a quarter of them: past either a new call is refused at
//! once (the caller answers it `Overloaded`), so one tenant's flood cannot
//! fill the queue against everybody else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nimbus_core::round_robin::RoundRobin;
use tokio::sync::Notify;

pub(crate) struct FairQueue<T> {
    state: Mutex<State<T>>,
    changed: Notify,
    capacity: usize,
    per_tenant: usize,
    /// How many calls wait, for the metrics (`metrics.rs`).
    depth: Arc<AtomicUsize>,
}

struct State<T> {
    waiting: RoundRobin<String, T>,
    running: HashMap<String, usize>,
    closed: bool,
}

impl<T> FairQueue<T> {
    /// A queue that keeps `depth` at the number of calls waiting in it.
    pub(crate) fn new(capacity: usize, per_tenant: usize, depth: Arc<AtomicUsize>) -> Self {
        Self {
            state: Mutex::new(State {
                waiting: RoundRobin::default(),
                running: HashMap::new(),
                closed: false,
            }),
            changed: Notify::new(),
            capacity: capacity.max(1),
            per_tenant: per_tenant.max(1),
            depth,
        }
    }

    /// Queue `item` for `tenant`; gives it back if the queue is full.
    pub(crate) fn push(&self, tenant: String, item: T) -> Result<(), T> {
        let mut state = self.state.lock().expect("queue lock");
        if state.waiting.len() >= self.capacity
            || state.waiting.len_of(&tenant) >= (self.capacity / 4).max(1)
        {
            return Err(item);
        }
        state.waiting.push(tenant, item);
        self.depth.store(state.waiting.len(), Ordering::Relaxed);
        drop(state);
        self.changed.notify_one();
        Ok(())
    }

    /// The next call to run: the oldest of the first tenant in turn that
    /// runs fewer than its share. Counts it as running for that tenant
    /// until [`FairQueue::done`]. `None` once closed and empty.
    pub(crate) async fn next(&self) -> Option<(String, T)> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change in between wakes us.
            changed.as_mut().enable();
            {
                let mut state = self.state.lock().expect("queue lock");
                let State {
                    waiting, running, ..
                } = &mut *state;
                let per_tenant = self.per_tenant;
                let next = waiting
                    .pop_eligible(|tenant| running.get(tenant).copied().unwrap_or(0) < per_tenant);
                if let Some((tenant, item)) = next {
                    self.depth.store(waiting.len(), Ordering::Relaxed);
                    *running.entry(tenant.clone()).or_default() += 1;
                    return Some((tenant, item));
                }
                if state.closed && state.waiting.is_empty() {
                    return None;
                }
            }
            changed.await;
        }
    }

    /// A call of `tenant` finished.
    pub(crate) fn done(&self, tenant: &str) {
        let mut state = self.state.lock().expect("queue lock");
        let Some(count) = state.running.get_mut(tenant) else {
            return;
        };
        // Only a tenant that was at its share had calls held back: wake
        // the executor for those, not after every call.
        let held_back = *count >= self.per_tenant;
        *count -= 1;
        if *count == 0 {
            state.running.remove(tenant);
        }
        drop(state);
        if held_back {
            self.changed.notify_one();
        }
    }

    /// No more calls will be pushed: [`FairQueue::next`] ends once the
    /// queue is empty.
    pub(crate) fn close(&self) {
        self.state.lock().expect("queue lock").closed = true;
        self.changed.notify_waiters();
        self.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn queue(capacity: usize, per_tenant: usize) -> FairQueue<u32> {
        FairQueue::new(capacity, per_tenant, Arc::default())
    }

    #[tokio::test]
    async fn tenants_take_turns_within_their_share() {
        let queue = queue(16, 2);
        for n in 0..3 {
            queue.push("hog".into(), n).unwrap();
        }
        queue.push("victim".into(), 10).unwrap();
        let mut order = Vec::new();
        for _ in 0..3 {
            order.push(queue.next().await.unwrap());
        }
        assert_eq!(
            order,
            [("hog".into(), 0), ("victim".into(), 10), ("hog".into(), 1)]
        );
        // The hog is at its share: its third call waits for one to finish.
        let held = tokio::time::timeout(Duration::from_millis(50), queue.next()).await;
        assert!(held.is_err(), "a call past the share ran: {held:?}");
        queue.done("victim");
        let held = tokio::time::timeout(Duration::from_millis(50), queue.next()).await;
        assert!(held.is_err(), "another tenant's call freed the hog's share");
        queue.done("hog");
        let next = tokio::time::timeout(Duration::from_secs(10), queue.next()).await;
        assert_eq!(next.unwrap(), Some(("hog".into(), 2)));
    }

    #[tokio::test]
    async fn a_waiting_executor_wakes_when_a_share_frees() {
        let queue = Arc::new(queue(16, 1));
        queue.push("hog".into(), 0).unwrap();
        queue.push("hog".into(), 1).unwrap();
        assert_eq!(queue.next().await, Some(("hog".into(), 0)));
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        queue.done("hog");
        let next = tokio::time::timeout(Duration::from_secs(10), waiting).await;
        assert_eq!(next.unwrap().unwrap(), Some(("hog".into(), 1)));
    }

    #[test]
    fn a_full_queue_or_a_tenant_past_a_quarter_is_refused() {
        let queue = queue(8, 4);
        assert!(queue.push("hog".into(), 0).is_ok());
        assert!(queue.push("hog".into(), 1).is_ok());
        assert_eq!(queue.push("hog".into(), 2), Err(2));
        for n in 0..6 {
            assert!(queue.push(format!("t{n}"), n).is_ok());
        }
        assert_eq!(queue.push("late".into(), 9), Err(9));
    }
}
