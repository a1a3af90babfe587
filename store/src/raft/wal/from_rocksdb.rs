//! Opening a member's log, moving it out of RocksDB first where it is still
//! there: members written by earlier versions kept the log and the vote in
//! the `raft_log` and `raft_state` families, and a restore seeds the purge
//! marker there. The move builds the new log under a temporary name and
//! renames it into place, so a crash part way leaves the old log in charge;
//! the old rows are deleted only once the new log is in place.

use std::path::Path;

use rocksdb::{WriteBatch, DB};

use super::{segment, Op, Wal};
use crate::raft::LogId;
use crate::storage::{self, columns, StorageError};

/// Entries moved per write.
const CHUNK: usize = 1024;

pub fn open(db: &DB, dir: &Path, segment_bytes: u64) -> Result<Wal, StorageError> {
    if !dir.exists() {
        let tmp = dir.with_extension("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(StorageError::io(&tmp))?;
        }
        let mut wal = Wal::open(&tmp, segment_bytes)?;
        let moved = copy(db, &mut wal)?;
        drop(wal);
        std::fs::rename(&tmp, dir).map_err(StorageError::io(dir))?;
        if let Some(parent) = dir.parent() {
            segment::sync_dir(parent)?;
        }
        if moved > 0 {
            tracing::info!(entries = moved, "moved the raft log out of rocksdb");
        }
    }
    clear(db)?;
    Wal::open(dir, segment_bytes)
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Writes the purge marker, the vote and every entry RocksDB holds into `wal`.
fn copy(db: &DB, wal: &mut Wal) -> Result<u64, StorageError> {
    let mut ops = Vec::new();
    if let Some(bytes) = storage::get(db, columns::RAFT_STATE, columns::LAST_PURGED)? {
        let purged: LogId = storage::decode_bincode("last purged", &bytes)?;
        ops.push(Op::Purge { index: purged.index, bytes });
    }
    if let Some(vote) = storage::get(db, columns::RAFT_STATE, columns::VOTE)? {
        ops.push(Op::Vote(vote));
    }
    let mut moved = 0;
    let mut it = db.raw_iterator_cf(storage::cf(db, columns::RAFT_LOG));
    it.seek_to_first();
    while let (Some(key), Some(value)) = (it.key(), it.value()) {
        let index =
            key.try_into().map(u64::from_be_bytes).map_err(|_| StorageError::corrupt("raft log key", "not 8 bytes"))?;
        ops.push(Op::Entry { index, bytes: value.to_vec() });
        moved += 1;
        if ops.len() >= CHUNK {
            wal.write(&std::mem::take(&mut ops))?;
        }
        it.next();
    }
    it.status().map_err(StorageError::rocks("read log"))?;
    wal.write(&ops)?;
    Ok(moved)
}

/// Deletes the log's old rows from RocksDB, where there are any.
fn clear(db: &DB) -> Result<(), StorageError> {
    let log = storage::cf(db, columns::RAFT_LOG);
    let mut it = db.raw_iterator_cf(log);
    it.seek_to_first();
    let has_entries = it.valid();
    drop(it);
    let has_state = storage::get(db, columns::RAFT_STATE, columns::VOTE)?.is_some()
        || storage::get(db, columns::RAFT_STATE, columns::LAST_PURGED)?.is_some();
    if !has_entries && !has_state {
        return Ok(());
    }
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(log, index_key(0), index_key(u64::MAX));
    batch.delete_cf(log, index_key(u64::MAX));
    let state = storage::cf(db, columns::RAFT_STATE);
    batch.delete_cf(state, columns::VOTE);
    batch.delete_cf(state, columns::LAST_PURGED);
    storage::write_synced(db, batch)
}
