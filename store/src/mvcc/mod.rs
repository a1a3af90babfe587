//! The multi-version key-value store: etcd's data model on RocksDB.
//!
//! # On-disk layout
//! Every version of every key is a row of the `kv` column family, keyed by
//! `(user key, revision)` with an order-preserving encoding (see
//! [`key_codec`]): all versions of a key are adjacent, newest first, and keys
//! sort as etcd sorts them. A read at revision `r` seeks to `(key, r)` and
//! lands on the newest version at or below `r`, so reads at old revisions cost
//! the same as reads at the newest one. Deletes write a tombstone version.
//! Reads need nothing in memory: their index *is* the RocksDB key order.
//! Writes look their key up in [`key_index`], the newest live version of
//! every key packed into an arena (about 75 bytes per 16-byte key), rebuilt
//! by one scan when the store opens.
//!
//! The `revs` column family is the event log, `revision → key`, in revision
//! order. Compaction walks it to find the keys that changed, and watches
//! replay history from it.
//!
//! `meta` holds the current revision, the compaction target and how far
//! physical compaction has got, next to Raft's `last_applied`; every applied
//! command writes its rows and these markers in one `WriteBatch`.
//!
//! # Revisions
//! As in etcd: a fresh store is at revision 1; each write command that
//! changes something adds 1; the changes inside one transaction share the
//! main revision and are ordered by `sub`.

pub mod compactor;
pub mod compare;
pub mod hash;
pub mod key_codec;
pub mod key_index;
pub mod lease_keys;
pub mod range;
pub mod reader;
pub mod record;
pub mod revision;
pub mod store;
pub mod txn;

pub use record::Record;
pub use revision::Revision;
pub use store::{Applied, KvStore};

use shoal_proto::peerpb::ApplyErrorCode;

use crate::storage::StorageError;

/// Why the store refused a request. Everything but `Storage` is a verdict on
/// the request, deterministic on every member; `Storage` is a local failure.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("key not found")]
    KeyNotFound,
    #[error("requested lease not found")]
    LeaseNotFound,
    #[error("lease already exists")]
    LeaseExists,
    #[error("mvcc: database space exceeded")]
    NoSpace,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl MvccError {
    pub fn code(&self) -> Option<ApplyErrorCode> {
        match self {
            MvccError::Compacted => Some(ApplyErrorCode::Compacted),
            MvccError::FutureRevision => Some(ApplyErrorCode::FutureRevision),
            MvccError::KeyNotFound => Some(ApplyErrorCode::KeyNotFound),
            MvccError::LeaseNotFound => Some(ApplyErrorCode::LeaseNotFound),
            MvccError::LeaseExists => Some(ApplyErrorCode::LeaseExists),
            MvccError::NoSpace => Some(ApplyErrorCode::NoSpace),
            MvccError::Storage(_) => None,
        }
    }

    pub fn from_code(code: ApplyErrorCode) -> MvccError {
        match code {
            ApplyErrorCode::Compacted => MvccError::Compacted,
            ApplyErrorCode::FutureRevision => MvccError::FutureRevision,
            ApplyErrorCode::KeyNotFound | ApplyErrorCode::ApplyErrorUnspecified => MvccError::KeyNotFound,
            ApplyErrorCode::LeaseNotFound => MvccError::LeaseNotFound,
            ApplyErrorCode::LeaseExists => MvccError::LeaseExists,
            ApplyErrorCode::NoSpace => MvccError::NoSpace,
            // Auth verdicts are mapped by `auth::apply_error` first.
            _ => MvccError::KeyNotFound,
        }
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub mod model;
#[cfg(test)]
mod model_test;
#[cfg(test)]
pub(crate) mod store_test;
