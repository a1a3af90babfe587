//! Group commit for the Raft log: appends are queued to one writer thread,
//! which writes everything queued so far to the [`super::wal`] with one
//! `pwrite` and one `fdatasync`, then
//! tells openraft each append is durable. openraft keeps working (replicating,
//! taking new writes) while an fsync is in flight, and one fsync covers every
//! append that arrived during the previous one.
//!
//! Entries are kept in [`Recent`] from the moment they are appended, so
//! readers see them before they reach the disk, and replication of fresh
//! entries is served from memory; written ones are evicted beyond a bound.
//! Votes, truncation and purge go through the same queue, so the disk sees
//! every operation in the order Raft issued it: a vote is never durable
//! before an append that Raft issued ahead of it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::storage::IOFlushed;

use super::wal::{Op, Wal};
use super::{Entry, LogId, TypeConfig};
use crate::metrics::stages::{self, Stamp};
use crate::storage::StorageError;

/// Entries kept in memory once written, at most.
const RECENT_ENTRIES: usize = 4096;
/// Bytes of written entries kept in memory, at most.
const RECENT_BYTES: usize = 32 << 20;

/// One entry kept in memory, and whether that very entry is on disk.
struct Kept {
    entry: Entry,
    size: usize,
    written: bool,
}

/// The newest entries by index: every one not yet on disk, and the last
/// written ones up to the bounds above.
#[derive(Default)]
pub struct Recent {
    entries: BTreeMap<u64, Kept>,
    bytes: usize,
}

impl Recent {
    pub fn insert(&mut self, entry: Entry, size: usize) {
        self.bytes += size;
        let kept = Kept { entry, size, written: false };
        if let Some(old) = self.entries.insert(kept.entry.log_id.index, kept) {
            self.bytes -= old.size;
        }
    }

    /// Keeps only the entries whose index satisfies `keep`.
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        let bytes = &mut self.bytes;
        self.entries.retain(|index, kept| {
            let keep = keep(*index);
            if !keep {
                *bytes -= kept.size;
            }
            keep
        });
    }

    /// Drops every entry at or after `index` (a truncation).
    pub fn truncated(&mut self, index: u64) {
        self.retain(|i| i < index);
    }

    pub fn last(&self) -> Option<LogId> {
        self.entries.values().next_back().map(|k| k.entry.log_id)
    }

    /// `[start, end)` when every entry of it is here.
    pub fn covering(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = *self.entries.keys().next()?;
        let last = *self.entries.keys().next_back()?;
        if start < first || end > last + 1 || end <= start {
            return None;
        }
        let found: Vec<Entry> = self.entries.range(start..end).map(|(_, k)| k.entry.clone()).collect();
        (found.len() as u64 == end - start).then_some(found)
    }

    /// The entries in `[start, end)` that are here.
    pub fn range(&self, start: u64, end: Option<u64>) -> Vec<Entry> {
        match end {
            Some(end) if end <= start => Vec::new(),
            Some(end) => self.entries.range(start..end).map(|(_, k)| k.entry.clone()).collect(),
            None => self.entries.range(start..).map(|(_, k)| k.entry.clone()).collect(),
        }
    }

    /// Marks these entries as on disk, where memory still holds the very
    /// same ones (a truncation may have replaced them since), then evicts
    /// the oldest written ones beyond the bounds. An entry not yet written
    /// is never evicted: readers would find it nowhere.
    fn written(&mut self, ids: &[LogId]) {
        for id in ids {
            if let Some(kept) = self.entries.get_mut(&id.index) {
                if kept.entry.log_id == *id {
                    kept.written = true;
                }
            }
        }
        while self.entries.len() > RECENT_ENTRIES || self.bytes > RECENT_BYTES {
            match self.entries.first_key_value() {
                Some((_, kept)) if kept.written => {
                    if let Some((_, kept)) = self.entries.pop_first() {
                        self.bytes -= kept.size;
                    }
                }
                _ => break,
            }
        }
    }
}

#[derive(Default)]
pub struct Pending(Mutex<Recent>);

impl Pending {
    pub fn lock(&self) -> MutexGuard<'_, Recent> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub enum Job {
    Append {
        entries: Vec<(LogId, Vec<u8>)>,
        done: IOFlushed<TypeConfig>,
    },
    /// Saves the vote, behind every append queued before it.
    Vote {
        vote: Vec<u8>,
        done: Reply,
    },
    /// Drops the entries at `from` and after.
    Truncate {
        from: u64,
        done: Reply,
    },
    /// Drops the entries up to `index`; `marker` is the bincode `LogId` purged.
    Purge {
        index: u64,
        marker: Vec<u8>,
        done: Reply,
    },
}

type Reply = tokio::sync::oneshot::Sender<Result<(), StorageError>>;

/// Starts the writer thread; it ends when every sender is gone.
pub fn start(wal: Wal, pending: Arc<Pending>) -> Result<Sender<Job>, StorageError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("raft-log-writer".into())
        .spawn(move || run(wal, &pending, rx))
        .map_err(StorageError::io("raft log writer thread"))?;
    Ok(tx)
}

/// When the log write in progress began, in microseconds since `EPOCH`
/// (plus one), or 0 when none is. One member runs per process.
static WRITING_SINCE: AtomicU64 = AtomicU64::new(0);
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// How long the log write in progress has taken so far; None when the
/// writer is idle. A leader whose disk stalls hands leadership on.
pub fn stalled_for() -> Option<Duration> {
    match WRITING_SINCE.load(Ordering::Acquire) {
        0 => None,
        since => Some(EPOCH.elapsed().saturating_sub(Duration::from_micros(since - 1))),
    }
}

/// Most jobs folded into one write.
const MAX_GROUP: usize = 4096;

fn run(mut wal: Wal, pending: &Pending, rx: Receiver<Job>) {
    let mut ops = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        write_group(&mut wal, pending, jobs, &mut ops);
    }
}

/// After a failed write or fsync the log's state on disk is unknown (the
/// kernel may have dropped the dirty pages it could not write), so the
/// member stops at once, as etcd does, before anyone is told: nothing it
/// has not made durable is acknowledged, and its peers serve on. A restart
/// reads back what is really on disk and catches up from the leader.
fn fail_stop(error: &StorageError) -> ! {
    tracing::error!(%error, "raft log write failed; stopping this member so that nothing unsynced is acknowledged");
    std::process::exit(1);
}

fn write_group(wal: &mut Wal, pending: &Pending, jobs: Vec<Job>, ops: &mut Vec<Op>) {
    ops.clear();
    let mut written: Vec<LogId> = Vec::new();
    let mut appended = Vec::new();
    let mut waiting = Vec::new();
    for job in jobs {
        match job {
            Job::Append { entries, done } => {
                for (log_id, bytes) in entries {
                    ops.push(Op::Entry { index: log_id.index, bytes });
                    written.push(log_id);
                }
                appended.push(done);
            }
            Job::Vote { vote, done } => {
                ops.push(Op::Vote(vote));
                waiting.push(done);
            }
            Job::Truncate { from, done } => {
                ops.push(Op::Truncate(from));
                waiting.push(done);
            }
            Job::Purge { index, marker, done } => {
                ops.push(Op::Purge { index, bytes: marker });
                waiting.push(done);
            }
        }
    }
    // Durability first: the whole group is synced before anyone is told.
    WRITING_SINCE.store(EPOCH.elapsed().as_micros() as u64 + 1, Ordering::Release);
    let result = wal.write(ops);
    WRITING_SINCE.store(0, Ordering::Release);
    if let Err(e) = result {
        fail_stop(&e);
    }
    pending.lock().written(&written);
    for id in &written {
        stages::stamp(id.index, Stamp::Fsynced);
    }
    if !written.is_empty() {
        stages::FSYNC_BATCH_ENTRIES.observe_count(written.len() as u64);
    }
    for done in appended {
        done.io_completed(Ok(()));
    }
    for done in waiting {
        let _ = done.send(Ok(()));
    }
}
