//! The Raft log and vote, in the member's [`super::wal`]. Every append and
//! every vote is fsynced before openraft is told it is durable; appends are
//! group-committed by [`super::log_writer`].

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::DB;

use super::log_writer::{self, Job, Pending};
use super::wal::{self, Shared};
use super::{io_error, Entry, LogId, TypeConfig, Vote};
use crate::metrics::stages;
use crate::storage::{self, StorageError};

#[derive(Clone)]
pub struct LogStore {
    /// The state machine's database: synced before a purge (see there).
    db: Arc<DB>,
    durable: Shared,
    pending: Arc<Pending>,
    writer: Sender<Job>,
}

impl LogStore {
    /// Opens the log kept in `dir` (moving it out of `db` where an older member kept it there).
    pub fn open(db: Arc<DB>, dir: &Path) -> Result<LogStore, StorageError> {
        LogStore::open_with(db, dir, wal::SEGMENT_BYTES)
    }

    pub fn open_with(db: Arc<DB>, dir: &Path, segment_bytes: u64) -> Result<LogStore, StorageError> {
        let wal = wal::from_rocksdb::open(&db, dir, segment_bytes)?;
        let durable = wal.shared();
        let pending = Arc::new(Pending::default());
        let writer = log_writer::start(wal, pending.clone())?;
        Ok(LogStore { db, durable, pending, writer })
    }

    /// Queues a job behind every earlier one and waits until it is on disk.
    async fn queue(
        &self,
        job: impl FnOnce(tokio::sync::oneshot::Sender<Result<(), StorageError>>) -> Job,
    ) -> Result<(), StorageError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.writer.send(job(done)).map_err(|_| writer_stopped())?;
        wait.await.unwrap_or_else(|_| Err(writer_stopped()))
    }
}

/// Runs blocking work off the async reactor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| Err(StorageError::io("log store task")(std::io::Error::other(join.to_string()))))
}

/// The entries in `[start, end)` that are on disk.
fn read_range(durable: &Shared, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StorageError> {
    let located = durable.lock().locate(start, end.unwrap_or(u64::MAX));
    located.iter().map(|at| wal::read_entry(at, |bytes| storage::decode_bincode("raft log entry", bytes))).collect()
}

fn last_entry_log_id(durable: &Shared) -> Result<Option<LogId>, StorageError> {
    let Some(last) = durable.lock().last() else { return Ok(None) };
    Ok(read_range(durable, last, Some(last + 1))?.pop().map(|e| e.log_id))
}

/// Stored entries overlaid with queued ones (which win for the same index).
fn merge(stored: Vec<Entry>, queued: Vec<Entry>) -> Vec<Entry> {
    if queued.is_empty() {
        return stored;
    }
    let mut all: std::collections::BTreeMap<u64, Entry> = stored.into_iter().map(|e| (e.log_id.index, e)).collect();
    all.extend(queued.into_iter().map(|e| (e.log_id.index, e)));
    all.into_values().collect()
}

/// The log writer thread is gone (the member is stopping).
fn writer_stopped() -> StorageError {
    StorageError::io("raft log writer")(std::io::Error::other("writer stopped"))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, std::io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Some(e + 1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        // Fresh entries come from memory; for the rest, memory first: an entry
        // that leaves it while we read the disk is on disk by then.
        let queued: Vec<Entry> = {
            let recent = self.pending.lock();
            if let Some(found) = end.and_then(|end| recent.covering(start, end)) {
                return Ok(found);
            }
            recent.range(start, end)
        };
        let durable = self.durable.clone();
        let stored = blocking(move || read_range(&durable, start, end)).await.map_err(io_error)?;
        Ok(merge(stored, queued))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, std::io::Error> {
        let vote = self.durable.lock().vote.clone();
        vote.map(|bytes| storage::decode_bincode("vote", &bytes)).transpose().map_err(io_error)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, std::io::Error> {
        let queued_last = self.pending.lock().last();
        let durable = self.durable.clone();
        blocking(move || {
            let marker = durable.lock().last_purged.clone();
            let last_purged: Option<LogId> =
                marker.map(|(_, bytes)| storage::decode_bincode("last purged", &bytes)).transpose()?;
            let last = queued_last.or(last_entry_log_id(&durable)?).or(last_purged);
            Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
        })
        .await
        .map_err(io_error)
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    // Through the writer's queue: openraft counts every append it issued
    // before the vote as durable once the vote is, so the vote must not
    // reach the disk ahead of them.
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), std::io::Error> {
        let vote = storage::encode_bincode(vote);
        self.queue(|done| Job::Vote { vote, done }).await.map_err(io_error)
    }

    // The commit index is not persisted (read_committed keeps openraft's
    // default): a restarted member learns it from the leader, and writing it
    // on every commit would sit in the commit path. It is only published.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), std::io::Error> {
        let index = committed.map_or(0, |c| c.index);
        crate::metrics::PROPOSALS_COMMITTED.fetch_max(index, std::sync::atomic::Ordering::Relaxed);
        stages::committed(index);
        Ok(())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), std::io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded: Vec<(LogId, Vec<u8>)> = entries.iter().map(|e| (e.log_id, storage::encode_bincode(e))).collect();
        {
            let mut recent = self.pending.lock();
            for (entry, (_, bytes)) in entries.into_iter().zip(&encoded) {
                stages::appended(entry.log_id.index);
                recent.insert(entry, bytes.len());
            }
        }
        // Returns at once; the writer calls back once the entries are fsynced.
        self.writer.send(Job::Append { entries: encoded, done: callback }).map_err(|_| io_error(writer_stopped()))
    }

    /// Keeps the log up to `last` (all of it gone for `None`).
    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), std::io::Error> {
        let from = last.map_or(0, |id| id.index + 1);
        self.pending.lock().truncated(from);
        self.queue(|done| Job::Truncate { from, done }).await.map_err(io_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), std::io::Error> {
        // The state machine's writes are not synced as they are applied
        // (the log can replay them): before the log lets entries go, every
        // write they produced is made durable.
        let db = self.db.clone();
        blocking(move || db.flush_wal(true).map_err(StorageError::rocks("sync wal"))).await.map_err(io_error)?;
        // The marker is the record that drops the entries: a crash never
        // leaves a purged prefix without it.
        let marker = storage::encode_bincode(&log_id);
        self.pending.lock().retain(|index| index > log_id.index);
        let index = log_id.index;
        self.queue(|done| Job::Purge { index, marker, done }).await.map_err(io_error)
    }
}
