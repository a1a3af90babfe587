//! The Raft log and vote in RocksDB. Every append and every vote is fsynced
//! before openraft is told it is durable.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use rocksdb::{ReadOptions, WriteBatch, DB};

use super::{io_error, Entry, LogId, RaftStorageError, TypeConfig, Vote};
use crate::storage::{self, columns, StorageError};

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> LogStore {
        LogStore { db }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
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

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
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
        blocking(&self.db, move |db| read_range(db, start, end)).await.map_err(io_error(StorageIOError::read_logs))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        blocking(&self.db, |db| {
            let last_purged: Option<LogId> = storage::get_bincode(db, columns::RAFT_STATE, columns::LAST_PURGED)?;
            let last = last_entry_log_id(db)?.or(last_purged);
            Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
        })
        .await
        .map_err(io_error(StorageIOError::read_logs))
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), RaftStorageError> {
        let bytes = storage::encode_bincode(vote);
        blocking(&self.db, move |db| {
            let mut batch = WriteBatch::default();
            batch.put_cf(storage::cf(db, columns::RAFT_STATE), columns::VOTE, bytes);
            storage::write_synced(db, batch)
        })
        .await
        .map_err(io_error(StorageIOError::write_vote))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, RaftStorageError> {
        blocking(&self.db, |db| storage::get_bincode(db, columns::RAFT_STATE, columns::VOTE))
            .await
            .map_err(io_error(StorageIOError::read_vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        let bytes = storage::encode_bincode(&committed);
        // Not fsynced: the committed index is a hint that speeds up restart; Raft
        // re-learns it from the leader when it is lost.
        blocking(&self.db, move |db| {
            let mut batch = WriteBatch::default();
            batch.put_cf(storage::cf(db, columns::RAFT_STATE), columns::COMMITTED, bytes);
            storage::write_buffered(db, batch)
        })
        .await
        .map_err(io_error(StorageIOError::write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        blocking(&self.db, |db| {
            Ok(storage::get_bincode::<Option<LogId>>(db, columns::RAFT_STATE, columns::COMMITTED)?.flatten())
        })
        .await
        .map_err(io_error(StorageIOError::read))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Vec<(u64, Vec<u8>)> =
            entries.into_iter().map(|entry| (entry.log_id.index, storage::encode_bincode(&entry))).collect();
        let result = blocking(&self.db, move |db| {
            let cf = storage::cf(db, columns::RAFT_LOG);
            let mut batch = WriteBatch::default();
            for (index, bytes) in encoded {
                batch.put_cf(cf, index_key(index), bytes);
            }
            // Durability first: the entries are fsynced before Raft may count them.
            storage::write_synced(db, batch)
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_error(StorageIOError::write_logs)(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        blocking(&self.db, move |db| {
            let cf = storage::cf(db, columns::RAFT_LOG);
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(cf, index_key(log_id.index), index_key(u64::MAX));
            batch.delete_cf(cf, index_key(u64::MAX));
            storage::write_synced(db, batch)
        })
        .await
        .map_err(io_error(StorageIOError::write_logs))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        let marker = storage::encode_bincode(&log_id);
        blocking(&self.db, move |db| {
            let mut batch = WriteBatch::default();
            // The marker is written first in the same batch: a crash never leaves
            // a purged prefix without it.
            batch.put_cf(storage::cf(db, columns::RAFT_STATE), columns::LAST_PURGED, marker);
            batch.delete_range_cf(storage::cf(db, columns::RAFT_LOG), index_key(0), index_key(log_id.index + 1));
            storage::write_synced(db, batch)
        })
        .await
        .map_err(io_error(StorageIOError::write_logs))
    }
}
