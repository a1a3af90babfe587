//! Running clients against a shared budget of operations or of time.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::report::histogram;

/// One client's operation; `index` counts operations across all clients.
pub trait Op: Send + 'static {
    fn run(&mut self, index: u64) -> impl Future<Output = Result<(), tonic::Status>> + Send;
}

/// How much work is left: a number of operations or a deadline.
pub struct Budget {
    total: Option<u64>,
    deadline: Option<Instant>,
    issued: AtomicU64,
}

impl Budget {
    pub fn new(total: Option<u64>, duration: Option<Duration>) -> Budget {
        let total = if total.is_none() && duration.is_none() { Some(10_000) } else { total };
        Budget { total, deadline: duration.map(|d| Instant::now() + d), issued: AtomicU64::new(0) }
    }

    /// The index of the next operation, or `None` when the budget is spent.
    pub fn take(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let i = self.issued.fetch_add(1, Ordering::Relaxed);
        match self.total {
            Some(total) if i >= total => None,
            _ => Some(i),
        }
    }

    fn progress_bar(&self, quiet: bool) -> ProgressBar {
        if quiet {
            return ProgressBar::hidden();
        }
        let (len, template) = match (self.total, self.deadline) {
            (Some(total), _) => (total, "{bar:40} {pos}/{len} ops {per_sec} {eta}"),
            (None, Some(_)) => (0, "{spinner} {pos} ops {per_sec} {elapsed}"),
            (None, None) => (0, "{spinner} {pos} ops"),
        };
        let bar = ProgressBar::new(len);
        bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        bar
    }
}

/// Runs every client until the budget is spent; returns the merged latency
/// histogram (microseconds), the error count and the elapsed time.
pub async fn drive<O: Op>(clients: Vec<O>, budget: Arc<Budget>, quiet: bool) -> (Histogram<u64>, u64, Duration) {
    let bar = budget.progress_bar(quiet);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients.len());
    for mut op in clients {
        let (budget, bar) = (budget.clone(), bar.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut errors = 0u64;
            while let Some(i) = budget.take() {
                let t = Instant::now();
                match op.run(i).await {
                    Ok(()) => {
                        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                    }
                    Err(_) => errors += 1,
                }
                bar.inc(1);
            }
            (hist, errors)
        }));
    }
    let mut merged = histogram();
    let mut errors = 0;
    for task in tasks {
        if let Ok((hist, e)) = task.await {
            let _ = merged.add(&hist);
            errors += e;
        }
    }
    bar.finish_and_clear();
    (merged, errors, started.elapsed())
}
