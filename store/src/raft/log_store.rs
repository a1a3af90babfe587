//! The Raft log and vote in RocksDB. Every append and every vote is fsynced
//! before openraft is told it is durable; appends are group-committed by
//! [`super::log_writer`].

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{ReadOptions, DB};

use super::log_writer::{self, index_key, Job, Pending};
use super::{io_error, Entry, LogId, TypeConfig, Vote};
use crate::metrics::stages;
use crate::storage::{self, columns, StorageError};

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    pending: Arc<Pending>,
    writer: Sender<Job>,
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Result<LogStore, StorageError> {
        let pending = Arc::new(Pending::default());
        let writer = log_writer::start(db.clone(), pending.clone())?;
        Ok(LogStore { db, pending, writer })
    }

    /// Queues a deletion of `[from, to)` behind every earlier append and waits for it.
    async fn delete(&self, from: u64, to: u64, marker: Option<Vec<u8>>) -> Result<(), StorageError> {
        self.queue(|done| Job::Delete { from, to, marker, done }).await
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

/// Runs blocking RocksDB work off the async reactor.
async fn blocking<T: Send + 'static>(
    db: &Arc<DB>,
    work: impl FnOnce(&DB) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || work(&db))
        .await
        .unwrap_or_else(|join| Err(StorageError::io("log store task")(std::io::Error::other(join.to_string()))))
}

fn read_range(db: &DB, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StorageError> {
    let mut opts = ReadOptions::default();
    if let Some(end) = end {
        opts.set_iterate_upper_bound(index_key(end).to_vec());
    }
    let mut it = db.raw_iterator_cf_opt(storage::cf(db, columns::RAFT_LOG), opts);
    it.seek(index_key(start));
    let mut entries = Vec::new();
    while let Some(value) = it.value() {
        entries.push(storage::decode_bincode::<Entry>("raft log entry", value)?);
        it.next();
    }
    it.status().map_err(StorageError::rocks("read log"))?;
    Ok(entries)
}

fn last_entry_log_id(db: &DB) -> Result<Option<LogId>, StorageError> {
    let mut it = db.raw_iterator_cf(storage::cf(db, columns::RAFT_LOG));
    it.seek_to_last();
    match it.value() {
        Some(value) => Ok(Some(storage::decode_bincode::<Entry>("raft log entry", value)?.log_id)),
        None => {
            it.status().map_err(StorageError::rocks("read last log"))?;
            Ok(None)
        }
    }
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
        let stored = blocking(&self.db, move |db| read_range(db, start, end)).await.map_err(io_error)?;
        Ok(merge(stored, queued))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, std::io::Error> {
        blocking(&self.db, |db| storage::get_bincode(db, columns::RAFT_STATE, columns::VOTE)).await.map_err(io_error)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, std::io::Error> {
        let queued_last = self.pending.lock().last();
        blocking(&self.db, move |db| {
            let last_purged: Option<LogId> = storage::get_bincode(db, columns::RAFT_STATE, columns::LAST_PURGED)?;
            let last = queued_last.or(last_entry_log_id(db)?).or(last_purged);
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
        self.delete(from, u64::MAX, None).await.map_err(io_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), std::io::Error> {
        // The marker goes in the same batch as the deletion: a crash never
        // leaves a purged prefix without it.
        let marker = storage::encode_bincode(&log_id);
        self.pending.lock().retain(|index| index > log_id.index);
        self.delete(0, log_id.index + 1, Some(marker)).await.map_err(io_error)
    }
}
