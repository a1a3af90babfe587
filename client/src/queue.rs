//! The work queue controllers reconcile from. A key waits in the queue at
//! most once however often it is added; a key being reconciled is never
//! handed to a second worker, and if it is added meanwhile it runs once
//! more afterwards; a failing key comes back after a delay that doubles
//! with each failure.

use crate::metrics;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// What a reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the key changes again.
    Done,
    /// Look again after a while (a deadline, a grace period).
    RequeueAfter(Duration),
}

/// First retry delay and the ceiling (Kubernetes uses 5 ms and 1000 s; a
/// store round trip here is about a millisecond, and seconds matter more).
const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(30);

struct State<T> {
    queue: VecDeque<T>,
    queued: HashSet<T>,
    processing: HashSet<T>,
    /// Added while being processed: queue again when done.
    dirty: HashSet<T>,
    failures: HashMap<T, u32>,
    shut: bool,
}

pub struct WorkQueue<T> {
    state: Arc<Mutex<State<T>>>,
    ready: Arc<Notify>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue { state: self.state.clone(), ready: self.ready.clone() }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    pub fn new() -> WorkQueue<T> {
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                failures: HashMap::new(),
                shut: false,
            })),
            ready: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, item: T) {
        let mut state = self.lock();
        if state.shut {
            return;
        }
        if state.processing.contains(&item) {
            state.dirty.insert(item);
        } else if state.queued.insert(item.clone()) {
            state.queue.push_back(item);
            self.ready.notify_one();
        }
    }

    pub fn add_after(&self, item: T, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(item);
        });
    }

    /// Adds after the item's backoff delay, and doubles that delay.
    pub fn add_rate_limited(&self, item: T) {
        let failures = {
            let mut state = self.lock();
            let failures = state.failures.entry(item.clone()).or_insert(0);
            *failures += 1;
            *failures
        };
        self.add_after(item, backoff(failures));
    }

    /// Forgets the item's failures.
    pub fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// The next item to process, or None once shut down. The caller must
    /// call [`WorkQueue::done`] with it.
    pub async fn next(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.lock();
                if state.shut {
                    return None;
                }
                if let Some(item) = state.queue.pop_front() {
                    state.queued.remove(&item);
                    state.processing.insert(item.clone());
                    if !state.queue.is_empty() {
                        self.ready.notify_one();
                    }
                    return Some(item);
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, item: &T) {
        let mut state = self.lock();
        state.processing.remove(item);
        if state.dirty.remove(item) && state.queued.insert(item.clone()) {
            state.queue.push_back(item.clone());
            self.ready.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn shut_down(&self) {
        self.lock().shut = true;
        self.ready.notify_waiters();
    }

    /// Runs `workers` loops that reconcile items until shut down: errors
    /// retry with backoff, success forgets the item's failures.
    /// Each reconcile is counted and timed under `name` (see `metrics`).
    pub async fn run<F, Fut, E>(&self, name: &'static str, workers: usize, reconcile: F)
    where
        T: Display,
        F: Fn(T) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<Action, E>> + Send,
        E: Display,
    {
        let mut tasks = Vec::new();
        for _ in 0..workers.max(1) {
            let (queue, reconcile) = (self.clone(), reconcile.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(item) = queue.next().await {
                    let controller = ("controller", name);
                    metrics::set("shoal_controller_queue_depth", &[controller], queue.len() as f64);
                    let started = std::time::Instant::now();
                    let result = match reconcile(item.clone()).await {
                        Ok(action) => {
                            queue.forget(&item);
                            if let Action::RequeueAfter(delay) = action {
                                queue.add_after(item.clone(), delay);
                                "requeue"
                            } else {
                                "success"
                            }
                        }
                        Err(e) => {
                            tracing::info!(key = %item, error = %e, "reconcile failed; retrying");
                            queue.add_rate_limited(item.clone());
                            "error"
                        }
                    };
                    metrics::observe("shoal_controller_reconcile_duration_seconds", &[controller], started.elapsed());
                    metrics::inc("shoal_controller_reconcile_total", &[controller, ("result", result)]);
                    queue.done(&item);
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

fn backoff(failures: u32) -> Duration {
    BASE_DELAY.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1))).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_key_is_queued_once_however_often_it_is_added() {
        let queue = WorkQueue::new();
        for _ in 0..3 {
            queue.add("a");
        }
        queue.add("b");
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.next().await, Some("a"));
        assert_eq!(queue.next().await, Some("b"));
    }

    #[tokio::test]
    async fn a_key_added_while_processing_runs_again_after_and_never_twice_at_once() {
        let queue = WorkQueue::new();
        queue.add("a");
        let item = queue.next().await.expect("item");
        queue.add("a");
        assert!(queue.is_empty(), "held back while being processed");
        queue.done(&item);
        assert_eq!(queue.next().await, Some("a"));
    }

    #[test]
    fn backoff_doubles_up_to_a_ceiling() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(2), Duration::from_millis(10));
        assert_eq!(backoff(4), Duration::from_millis(40));
        assert_eq!(backoff(40), MAX_DELAY);
    }

    #[tokio::test]
    async fn failures_retry_with_backoff_and_shut_down_ends_the_workers() {
        let queue: WorkQueue<String> = WorkQueue::new();
        let attempts = Arc::new(AtomicUsize::new(0));
        let runner = {
            let (queue, attempts) = (queue.clone(), attempts.clone());
            tokio::spawn(async move {
                queue
                    .run("test", 2, move |_key: String| {
                        let attempts = attempts.clone();
                        async move {
                            // Fails twice, then succeeds.
                            if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                                Err("not yet")
                            } else {
                                Ok(Action::Done)
                            }
                        }
                    })
                    .await
            })
        };
        queue.add("k".to_string());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while attempts.load(Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "retries happened");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        queue.shut_down();
        tokio::time::timeout(Duration::from_secs(5), runner).await.expect("workers end").expect("no panic");
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert!(queue.lock().failures.is_empty(), "success forgets the failures");
    }
}
