//! The member's RocksDB instance: opening it with every column family, and the
//! small encoding helpers shared by the Raft log and the state machine.

pub mod columns;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

/// A failure of the storage engine or of decoding what it holds.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb {op} failed")]
    Rocks {
        op: &'static str,
        #[source]
        source: rocksdb::Error,
    },
    #[error("stored value under {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("file i/o on {path} failed")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    pub fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> StorageError {
        move |source| StorageError::Rocks { op, source }
    }

    pub fn corrupt(what: &'static str, detail: impl ToString) -> StorageError {
        StorageError::Corrupt { what, detail: detail.to_string() }
    }

    pub fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.as_ref().display().to_string();
        move |source| StorageError::Io { path, source }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Memtable size of the state machine's metadata family.
const META_WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Block cache shared by every column family.
const BLOCK_CACHE_BYTES: usize = 32 << 20;

fn family_options(cache: &rocksdb::Cache) -> Options {
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    // Fresh data is read most: keep the first levels uncompressed, compress the rest.
    use rocksdb::DBCompressionType::{Lz4, None as Plain};
    opts.set_compression_per_level(&[Plain, Plain, Lz4, Lz4, Lz4, Lz4, Lz4]);
    // Bound memory: the defaults allow large memtables per family.
    opts.set_write_buffer_size(16 << 20);
    opts.set_max_write_buffer_number(3);
    opts
}

/// Opens (creating if needed) the member database at `path`.
pub fn open(path: &Path) -> Result<Arc<DB>> {
    let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
    let mut opts = family_options(&cache);
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    // Write flushed and compacted files (and the state machine's WAL) back to
    // disk a megabyte at a time, so that a 16 MiB flush never lands on the
    // disk in one burst that the Raft log's fsyncs would queue behind.
    opts.set_bytes_per_sync(1 << 20);
    opts.set_wal_bytes_per_sync(1 << 20);
    let families = columns::ALL.iter().map(|name| {
        let mut family = family_options(&cache);
        if *name == columns::META {
            // A few keys, each rewritten with every applied entry: a small
            // memtable keeps each rewrite's skip-list search short.
            family.set_write_buffer_size(META_WRITE_BUFFER_BYTES);
        }
        ColumnFamilyDescriptor::new(*name, family)
    });
    let db = DB::open_cf_descriptors(&opts, path, families).map_err(StorageError::rocks("open"))?;
    Ok(Arc::new(db))
}

/// Opens a member database (or a checkpoint of one) at `path` to read only.
/// Its write-ahead log, if any, is replayed in memory, never written back.
pub fn open_read_only(path: &Path) -> Result<DB> {
    let cache = rocksdb::Cache::new_lru_cache(READ_ONLY_CACHE_BYTES);
    let opts = family_options(&cache);
    let families = columns::ALL.iter().map(|name| ColumnFamilyDescriptor::new(*name, family_options(&cache)));
    DB::open_cf_descriptors_read_only(&opts, path, families, false).map_err(StorageError::rocks("open read-only"))
}

/// Block cache of a database opened by [`open_read_only`]: it is scanned once.
const READ_ONLY_CACHE_BYTES: usize = 4 << 20;

/// The handle of a column family opened by [`open`].
pub fn cf<'a>(db: &'a DB, name: &'static str) -> &'a ColumnFamily {
    db.cf_handle(name).expect("invariant: every column family is created by storage::open")
}

/// Writes `batch` durably: the WAL is fsynced before this returns.
pub fn write_synced(db: &DB, batch: WriteBatch) -> Result<()> {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(batch, &opts).map_err(StorageError::rocks("synced write"))
}

/// Writes `batch` to the WAL without waiting for fsync. Used by the state
/// machine, whose content can always be re-derived from the fsynced Raft log.
pub fn write_buffered(db: &DB, batch: WriteBatch) -> Result<()> {
    db.write(batch).map_err(StorageError::rocks("write"))
}

/// Makes the creation, renaming or removal of files in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(StorageError::io(dir))
}

/// Writes every column family's memtable to table files.
pub fn flush_all(db: &DB) -> Result<()> {
    for name in columns::ALL {
        db.flush_cf(cf(db, name)).map_err(StorageError::rocks("flush"))?;
    }
    Ok(())
}

pub fn get(db: &DB, cf_name: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
    db.get_cf(cf(db, cf_name), key).map_err(StorageError::rocks("get"))
}

pub fn encode_bincode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("invariant: in-memory values always serialize")
}

/// The most a decoded value may claim: far above any real entry, so that a
/// corrupt length prefix is an error rather than an allocation that aborts.
const DECODE_LIMIT: usize = 1 << 30;

pub fn decode_bincode<T: serde::de::DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard().with_limit::<DECODE_LIMIT>())
        .map(|(value, _)| value)
        .map_err(|e| StorageError::corrupt(what, e))
}

pub fn get_bincode<T: serde::de::DeserializeOwned>(
    db: &DB,
    cf_name: &'static str,
    key: &'static [u8],
) -> Result<Option<T>> {
    match get(db, cf_name, key)? {
        Some(bytes) => decode_bincode(cf_name, &bytes).map(Some),
        None => Ok(None),
    }
}

pub fn get_i64(db: &DB, cf_name: &'static str, key: &[u8]) -> Result<Option<i64>> {
    match get(db, cf_name, key)? {
        Some(bytes) => {
            let raw: [u8; 8] =
                bytes.as_slice().try_into().map_err(|_| StorageError::corrupt(cf_name, "expected 8 bytes"))?;
            Ok(Some(i64::from_be_bytes(raw)))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_length_prefix_is_an_error_not_an_abort() {
        // Found by the `requests` fuzz target: a Raft command whose byte
        // string claims an absurd length used to abort on "capacity overflow".
        let bytes = [0xfe, 0xfd, 0x91, 0xb0, 0x90, 0x00, 0x00, 0x00, 0x82, 0xf9];
        assert!(decode_bincode::<crate::raft::Command>("log", &bytes).is_err());
        let command = decode_bincode::<crate::raft::Command>("log", &encode_bincode(&crate::raft::Command::default()));
        assert!(command.is_ok());
    }
}
