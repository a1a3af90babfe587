//! HashKV and Hash: checksums that let operators check that members hold
//! the same data.
//!
//! HashKV(rev) covers every version with a revision in `(compact, rev]`,
//! in revision order: the revision, the key and the stored record. Versions
//! at or below the compaction revision are left out, so members agree even
//! while their physical compaction has progressed differently.

use rocksdb::ReadOptions;

use super::key_codec;
use super::revision::Revision;
use super::store::KvStore;
use super::MvccError;
use crate::storage::{self, columns};

/// The answer to HashKV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    pub hash: u32,
    /// The revision hashed up to.
    pub revision: i64,
    pub compact_revision: i64,
    pub current_revision: i64,
}

impl KvStore {
    /// HashKV at `rev` (0: the current revision), with etcd's checks.
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash, MvccError> {
        self.read(|view| {
            let (current, compacted) = (view.current, view.compacted);
            if rev > 0 && rev <= compacted {
                return Err(MvccError::Compacted);
            }
            if rev > current {
                return Err(MvccError::FutureRevision);
            }
            let upto = if rev <= 0 { current } else { rev };
            let db = view.reader.db();
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(columns::KV.as_bytes());
            let mut opts = ReadOptions::default();
            if let Some(snapshot) = view.reader.snapshot() {
                opts.set_snapshot(snapshot);
            }
            opts.set_iterate_upper_bound(Revision::new(upto + 1, 0).to_bytes().to_vec());
            let mut it = db.raw_iterator_cf_opt(storage::cf(db, columns::REVS), opts);
            it.seek(Revision::new(compacted.max(0) + 1, 0).to_bytes());
            while let (Some(rev_bytes), Some(key)) = (it.key(), it.value()) {
                let revision = Revision::from_bytes(rev_bytes)
                    .ok_or_else(|| storage::StorageError::corrupt("revs", "revision key of the wrong length"))?;
                let record = view.reader.get(columns::KV, &key_codec::version_key(key, revision))?;
                hasher.update(rev_bytes);
                hasher.update(key);
                hasher.update(record.as_deref().unwrap_or_default());
                it.next();
            }
            it.status().map_err(storage::StorageError::rocks("hash scan"))?;
            Ok(KvHash {
                hash: hasher.finalize(),
                revision: upto,
                compact_revision: compacted,
                current_revision: current,
            })
        })
    }

    /// A checksum of everything the state machine holds except its own
    /// bookkeeping. Unlike HashKV it depends on how far physical compaction
    /// has got, so members may differ; etcd offers it for testing.
    pub fn hash_all(&self) -> Result<(u32, i64), MvccError> {
        self.read(|view| {
            let db = view.reader.db();
            let mut hasher = crc32fast::Hasher::new();
            for name in [columns::KV, columns::REVS, columns::LEASES, columns::LEASE_KEYS] {
                hasher.update(name.as_bytes());
                let mut opts = ReadOptions::default();
                if let Some(snapshot) = view.reader.snapshot() {
                    opts.set_snapshot(snapshot);
                }
                let mut it = db.raw_iterator_cf_opt(storage::cf(db, name), opts);
                it.seek_to_first();
                while let (Some(key), Some(value)) = (it.key(), it.value()) {
                    hasher.update(key);
                    hasher.update(value);
                    it.next();
                }
                it.status().map_err(storage::StorageError::rocks("hash scan"))?;
            }
            Ok((hasher.finalize(), view.current))
        })
    }
}
