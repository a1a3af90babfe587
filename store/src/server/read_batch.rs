//! Sharing one read-index round among every read that arrives while
//! another round is in flight, as etcd does: under load, reads cost one
//! quorum heartbeat per round instead of one per read.
//!
//! A read that arrives during a round waits for the next one: a round's
//! index may only serve reads that began before the round did. One of the
//! waiting callers runs each round ("leads"); when it is done it hands the
//! lead to a caller still waiting, so no task is spawned and a cancelled
//! caller never strands the others.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::error::EtcdError;

/// A read index, or `None` when the member asked turned out not to lead.
pub type ReadIndex = Result<Option<u64>, EtcdError>;

enum Turn {
    Done(ReadIndex),
    Lead,
}

#[derive(Default)]
struct State {
    leading: bool,
    waiting: Vec<oneshot::Sender<Turn>>,
}

#[derive(Default)]
pub struct ReadBatch {
    state: Mutex<State>,
}

/// Passes the lead on when the leading caller finishes or is cancelled.
struct LeadGuard<'a>(&'a ReadBatch);

impl Drop for LeadGuard<'_> {
    fn drop(&mut self) {
        self.0.hand_off();
    }
}

impl ReadBatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hand_off(&self) {
        let mut state = self.lock();
        while let Some(next) = state.waiting.pop() {
            if next.send(Turn::Lead).is_ok() {
                return;
            }
        }
        state.leading = false;
    }

    /// Joins the next round of `fetch`, and returns its result.
    pub async fn read_index<F, Fut>(&self, fetch: F) -> ReadIndex
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ReadIndex>,
    {
        loop {
            let (tx, mut rx) = oneshot::channel();
            let lead = {
                let mut state = self.lock();
                state.waiting.push(tx);
                !std::mem::replace(&mut state.leading, true)
            };
            if !lead {
                match (&mut rx).await {
                    Ok(Turn::Done(result)) => return result,
                    Ok(Turn::Lead) => {}
                    // The leader went away mid-round without answering: join again.
                    Err(_) => continue,
                }
            }
            let _guard = LeadGuard(self);
            // Everyone waiting now (this caller included) shares this round.
            let batch = std::mem::take(&mut self.lock().waiting);
            let result = fetch().await;
            let mut own = None;
            for waiter in batch {
                let _ = waiter.send(Turn::Done(result.clone()));
            }
            if let Ok(Turn::Done(r)) = rx.try_recv() {
                own = Some(r);
            }
            return own.unwrap_or(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_share_rounds() {
        let batch = Arc::new(ReadBatch::default());
        let rounds = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (batch, rounds) = (batch.clone(), rounds.clone());
            tasks.push(tokio::spawn(async move {
                batch
                    .read_index(|| {
                        let rounds = rounds.clone();
                        async move {
                            let n = rounds.fetch_add(1, Ordering::SeqCst) + 1;
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                            Ok(Some(n))
                        }
                    })
                    .await
            }));
        }
        for task in tasks {
            assert!(matches!(task.await.expect("task"), Ok(Some(_))));
        }
        let rounds = rounds.load(Ordering::SeqCst);
        assert!(rounds < 200, "200 reads took {rounds} rounds");
        assert!(!batch.lock().leading, "the lead is released at the end");
    }
}
