//! Raft snapshots built as RocksDB checkpoints.
//!
//! Building one flushes the memtables and hard-links the database's files
//! into `member/snap/<term>-<index>-<millis>.ckpt/`: no copy of the state,
//! and the write path goes on while it is made. The checkpoint is a whole
//! database at one point in time; the meta of the state it holds (last
//! applied log id and membership) is read back from it and kept beside its
//! files. A follower that needs the snapshot is sent its state-machine rows
//! in the snapshot file format (see `snapshot`), read from the checkpoint.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::DB;

use super::snapshot;
use super::SnapshotMeta;
use crate::storage::{self, columns, StorageError};

/// The extension of a checkpoint directory in `member/snap/`.
pub const SUFFIX: &str = "ckpt";
/// The file in a checkpoint directory that holds its bincode `SnapshotMeta`.
const META_FILE: &str = "SHOAL_SNAPSHOT_META";

/// Whether `path` is a finished checkpoint.
pub fn is_checkpoint(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some(SUFFIX) && path.is_dir()
}

/// Makes a checkpoint of `db` in `dir` and returns the meta of the state it
/// holds and its path. Until it is renamed into place it is a `.tmp`
/// directory, which startup removes.
pub fn build(db: &DB, dir: &Path) -> Result<(SnapshotMeta, PathBuf), StorageError> {
    fs::create_dir_all(dir).map_err(StorageError::io(dir))?;
    let started = Instant::now();
    // Everything applied so far becomes durable before a snapshot can let
    // Raft purge the log entries that produced it.
    db.flush_wal(true).map_err(StorageError::rocks("flush wal"))?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let building = dir.join(format!("building-{nanos}.tmp"));
    Checkpoint::new(db)
        .and_then(|checkpoint| checkpoint.create_checkpoint(&building))
        .map_err(StorageError::rocks("create checkpoint"))?;
    let linked = Instant::now();
    let meta = {
        let copy = storage::open_read_only(&building)?;
        let view = copy.snapshot();
        snapshot::meta_of(&copy, &view)?
    };
    let meta_path = building.join(META_FILE);
    fs::File::create(&meta_path)
        .and_then(|mut file| {
            file.write_all(&storage::encode_bincode(&meta))?;
            file.sync_all()
        })
        .map_err(StorageError::io(&meta_path))?;
    storage::sync_dir(&building)?;
    let path = dir.join(format!("{}.{SUFFIX}", snapshot::file_name(&meta)));
    let changing = snapshot::changing_dir();
    fs::rename(&building, &path).map_err(StorageError::io(&path))?;
    drop(changing);
    storage::sync_dir(dir)?;
    tracing::info!(
        checkpoint_ms = (linked - started).as_millis() as u64,
        meta_ms = linked.elapsed().as_millis() as u64,
        "checkpoint taken"
    );
    Ok((meta, path))
}

/// The meta of the checkpoint at `path`.
pub fn read_meta(path: &Path) -> Result<SnapshotMeta, StorageError> {
    let meta_path = path.join(META_FILE);
    let bytes = fs::read(&meta_path).map_err(StorageError::io(&meta_path))?;
    storage::decode_bincode("checkpoint meta", &bytes)
}

/// Calls `record` for every state-machine row of the checkpoint at `path`,
/// family by family; returns its meta.
pub fn for_each_record(
    path: &Path,
    mut record: impl FnMut(&'static str, Vec<u8>, Vec<u8>) -> Result<(), StorageError>,
) -> Result<SnapshotMeta, StorageError> {
    let meta = read_meta(path)?;
    let db = storage::open_read_only(path)?;
    let view = db.snapshot();
    snapshot::for_each_row(&db, &view, |tag, key, value| {
        record(columns::STATE_MACHINE[tag], key.to_vec(), value.to_vec())
    })?;
    Ok(meta)
}

/// Writes the checkpoint at `path` to `out` in the snapshot file format.
pub fn dump<W: Write>(path: &Path, out: W) -> Result<W, StorageError> {
    let meta = read_meta(path)?;
    let db = storage::open_read_only(path)?;
    let view = db.snapshot();
    snapshot::dump(&db, &view, &meta, out, &path.display().to_string())
}
