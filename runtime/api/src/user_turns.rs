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
        let semaphore = self
            .users
            .lock()
            .expect("turns lock")
            .entry(user.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_user)))
            .clone();
        let permit = semaphore
            .acquire_owned()
            .await
            .expect("turn semaphores are never closed");
        Turn {
            permit: Some(permit),
            user: user.to_owned(),
            turns: self.clone(),
        }
    }

    /// Users with a semaphore right now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.users.lock().expect("turns lock").len()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_waits_for_their_own_turn_only() {
        let turns = UserTurns::new(1);
        let first = turns.take("ada").await;
        let other_user = tokio::time::timeout(std::time::Duration::from_secs(5), turns.take("bob"))
            .await
            .expect("another user's turn is free");
        let waiting = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take("ada").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "ada's second waits for her first");
        drop(first);
        let second = waiting.await.unwrap();
        drop((second, other_user));
        assert_eq!(turns.tracked(), 0, "idle users are forgotten");
    }
}
