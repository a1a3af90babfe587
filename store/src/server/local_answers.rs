//! Forwarded writes answered from this member's own apply, as etcd's
//! followers answer: a follower tags each write it forwards with its member
//! id and a request id, and when its state machine applies the write, the
//! answer goes straight to the waiting request. The leader's answer still
//! comes, and is used when it arrives first or when this member skipped the
//! entry (it installed a snapshot past it instead).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use shoal_proto::peerpb::InternalResponse;
use tokio::sync::oneshot;

/// A write's answer from the state machine, and the log index it was applied at.
pub type Answer = (InternalResponse, u64);

pub struct LocalAnswers {
    member: u64,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
}

impl LocalAnswers {
    pub fn new(member: u64) -> LocalAnswers {
        // Ids start at the clock, in nanoseconds: entries from before a
        // restart, applied again after it, carry ids this run never issues.
        let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
        LocalAnswers { member, next_id: AtomicU64::new(start as u64), waiting: Mutex::default() }
    }

    /// A new request id, whose answer `Waiter::answer` yields once this
    /// member applies a command tagged with it.
    pub fn register(self: &Arc<Self>) -> Waiter {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        Waiter { id, answer: rx, answers: self.clone() }
    }

    /// Called by the state machine for every applied command that a member
    /// forwarded; answers the waiter if that member is this one.
    pub fn applied(&self, origin_member: u64, origin_id: u64, response: &InternalResponse, index: u64) {
        if origin_member != self.member {
            return;
        }
        if let Some(waiter) = self.lock().remove(&origin_id) {
            let _ = waiter.send((response.clone(), index));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Answer>>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One forwarded request's wait for its local answer; dropping it stops
/// the wait.
pub struct Waiter {
    pub id: u64,
    pub answer: oneshot::Receiver<Answer>,
    answers: Arc<LocalAnswers>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.answers.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_this_members_waiting_requests_are_answered_and_dropped_waits_are_forgotten() {
        let answers = Arc::new(LocalAnswers::new(7));
        let mut waiter = answers.register();
        let other = answers.register();
        assert_ne!(waiter.id, other.id);
        let response = InternalResponse::default();
        answers.applied(8, waiter.id, &response, 3);
        assert!(waiter.answer.try_recv().is_err(), "another member's command with the same id");
        answers.applied(7, waiter.id, &response, 5);
        assert_eq!(waiter.answer.try_recv().map(|(_, index)| index), Ok(5));
        drop(other);
        drop(waiter);
        assert!(answers.lock().is_empty(), "dropped waits are forgotten");
        answers.applied(7, 12345, &response, 6);
    }
}
