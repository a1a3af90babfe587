//! The index of keys attached to each lease (`lease_keys` column family),
//! kept in step with the versions by every applied change.

use rocksdb::{ReadOptions, WriteBatch, DB};

use super::reader::KvReader;
use super::txn::Change;
use crate::storage::{self, columns, StorageError};

/// The row of `key` attached to `lease`.
pub fn entry(lease: i64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&lease.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Stages the index updates for `change`: detach from the old lease, attach to the new one.
pub fn stage(db: &DB, batch: &mut WriteBatch, change: &Change) {
    let cf = storage::cf(db, columns::LEASE_KEYS);
    let new_lease = if change.record.tombstone { 0 } else { change.record.lease };
    if change.prev_lease != 0 && change.prev_lease != new_lease {
        batch.delete_cf(cf, entry(change.prev_lease, &change.key));
    }
    if new_lease != 0 && new_lease != change.prev_lease {
        batch.put_cf(cf, entry(new_lease, &change.key), []);
    }
}

/// The keys attached to `lease`, in key order.
pub fn attached(reader: &KvReader<'_>, lease: i64) -> Result<Vec<Vec<u8>>, StorageError> {
    let db = reader.db();
    let prefix = lease.to_be_bytes();
    let mut it = db.raw_iterator_cf_opt(storage::cf(db, columns::LEASE_KEYS), ReadOptions::default());
    it.seek(prefix);
    let mut keys = Vec::new();
    while let Some(k) = it.key() {
        if !k.starts_with(&prefix) {
            break;
        }
        keys.push(k[8..].to_vec());
        it.next();
    }
    it.status().map_err(StorageError::rocks("read lease keys"))?;
    Ok(keys)
}
