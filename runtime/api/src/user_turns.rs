//! Turns per user: at most N of one user's operations of a kind at once
//! (compiles: `ApiConfig::compiles_per_user`). Further ones wait for that
//! user's turn, so one user's burst queues behind itself while every other
//! user still reaches the shared pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Semaphores by user, created on first use and dropped once nobody holds
/// or waits for them: memory follows the users active right now.
pub(crate) struct UserTurns {
    per_user: usize,
    users: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One user's turn; the next of theirs may start once it is dropped.
pub(crate) struct Turn {
    permit: Option<OwnedSemaphorePermit>,
    user: String,
    turns: Arc<UserTurns>,
}

impl UserTurns {
    pub(crate) fn new(per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            per_user: per_user.max(1),
            users: Mutex::default(),
        })
    }

    /// Wait for one of `user`'s turns.
    pub(crate) async fn take(self: &Arc<Self>, user: &str) -> Turn {
        let permit = self
            .semaphore(user)
            .acquire_owned()
            .await
            .expect("turn semaphores are never closed");
        self.turn(user, permit)
    }

    /// One of `user`'s turns if one is free now. (A refusal means somebody
    /// holds one of `user`'s turns: the semaphore stays for them to drop.)
    pub(crate) fn try_take(self: &Arc<Self>, user: &str) -> Option<Turn> {
        let permit = self.semaphore(user).try_acquire_owned().ok()?;
        Some(self.turn(user, permit))
    }

    fn semaphore(&self, user: &str) -> Arc<Semaphore> {
        self.users
            .lock()
            .expect("turns lock")
            .entry(user.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_user)))
            .clone()
    }

    fn turn(self: &Arc<Self>, user: &str, permit: OwnedSemaphorePermit) -> Turn {
        Turn {
            permit: Some(permit),
            user: user.to_owned(),
            turns: self.clone(),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut users = self.turns.users.lock().expect("turns lock");
        // Only the map holds it: nobody has a turn or waits for one.
        if users
            .get(&self.user)
            .is_some_and(|semaphore| Arc::strong_count(semaphore) == 1)
        {
            users.remove(&self.user);
        }
    }
}
