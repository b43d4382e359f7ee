//! CPU slots for the heavy work requests do on the async runtime (bcrypt,
//! evaluating JavaScript at upload), one per core, handed out fairly.
//!
//! A plain semaphore serves waiters first come, first served: 60 bogus
//! logins sent at once made a real login wait 11.7 s behind them. Here each
//! waiter names who it works for (the client's address, or the user), and a
//! freed slot goes to the next *client* in turn (`RoundRobin`), so a flood
//! delays another client by at most the work already running.

use std::sync::{Arc, Mutex};

use nimbus_core::round_robin::RoundRobin;
use tokio::sync::oneshot;

pub(crate) struct FairSlots {
    state: Mutex<State>,
}

struct State {
    free: usize,
    waiting: RoundRobin<String, oneshot::Sender<()>>,
}

/// A slot held; freed on drop (to the next client in turn). Owned, so the
/// blocking work it pays for can hold it (a cancelled request must not
/// free the slot while its hash still runs).
pub(crate) struct Slot {
    slots: Arc<FairSlots>,
}

/// A waiter that went away (its request was cancelled) after a slot was
/// handed to it passes that slot on.
struct Waiting<'a> {
    handed: Option<oneshot::Receiver<()>>,
    slots: &'a FairSlots,
}

impl FairSlots {
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            state: Mutex::new(State {
                free: slots.max(1),
                waiting: RoundRobin::default(),
            }),
        }
    }

    /// Wait for a slot, in `client`'s turn.
    pub(crate) async fn take(self: &Arc<Self>, client: &str) -> Slot {
        let handed = {
            let mut state = self.state.lock().expect("slots lock");
            if state.free > 0 {
                state.free -= 1;
                return Slot {
                    slots: self.clone(),
                };
            }
            let (hand, handed) = oneshot::channel();
            state.waiting.push(client.to_owned(), hand);
            handed
        };
        let mut waiting = Waiting {
            handed: Some(handed),
            slots: self,
        };
        let handed = waiting.handed.as_mut().expect("set above");
        // The sender is only dropped once it has handed the slot.
        let _ = handed.await;
        waiting.handed = None;
        Slot {
            slots: self.clone(),
        }
    }

    fn release(&self) {
        let mut state = self.state.lock().expect("slots lock");
        while let Some(hand) = state.waiting.pop() {
            if hand.send(()).is_ok() {
                return;
            }
        }
        state.free += 1;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release();
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut handed) = self.handed.take() {
            handed.close();
            if handed.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}
