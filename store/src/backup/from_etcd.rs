//! The rows of Shoal's state machine that a snapshot etcd saved holds: its
//! backend's buckets read with [`bbolt`], mapped onto Shoal's families.
//!
//! ```text
//! key        main ‖ '_' ‖ sub (BE) [‖ 't']  → mvccpb.KeyValue   kv, revs (one row each)
//! meta       finishedCompactRev, scheduledCompactRev           meta (compaction, current revision)
//! lease      id (BE)                        → leasepb.Lease     leases
//! auth       authEnabled, authRevision                          auth
//! authUsers  name                           → authpb.User       auth user/<name>
//! authRoles  name                           → authpb.Role       auth role/<name>
//! ```
//!
//! Members, alarms and the cluster version belong to the old cluster, and a
//! restore starts a new one, as etcd's restore does. The keys attached to
//! each lease (`lease_keys`) are not stored by etcd: they are learned from
//! the versions as they go by, in revision order, so that memory grows with
//! the keys whose newest version holds a lease, not with the store.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use shoal_proto::authpb::{Role, User};
use shoal_proto::mvccpb::KeyValue;

use super::bbolt::{BboltError, Bucket, Db, Item, Source};
use super::hex;
use crate::auth::state::{ENABLED, REVISION, ROLE_PREFIX, USER_PREFIX};
use crate::mvcc::{key_codec, lease_keys, Record, Revision};
use crate::storage::{columns, StorageError};

/// etcd's revision key: main (8 bytes BE), `_`, sub (8 bytes BE).
const REVISION_KEY: usize = 17;
const TOMBSTONE_MARK: u8 = b't';

/// leasepb.Lease, as etcd's lease bucket holds it.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Lease {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// Why an etcd database could not be read into rows.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The file is a bbolt database but not etcd's backend.
    #[error("it is a bbolt database without etcd's {0:?} bucket")]
    NotEtcd(&'static str),
    /// The file is damaged, or holds what etcd never writes.
    #[error("{0}")]
    Damaged(String),
    /// Writing a row failed on this side.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<BboltError> for ConvertError {
    fn from(e: BboltError) -> ConvertError {
        ConvertError::Damaged(e.to_string())
    }
}

/// Receives one row: its family, key and value.
pub type Row<'f> = &'f mut dyn FnMut(&'static str, &[u8], &[u8]) -> Result<(), StorageError>;

fn find<'a>(all: &'a [(Vec<u8>, Bucket)], name: &str) -> Option<&'a Bucket> {
    all.iter().find(|(n, _)| n == name.as_bytes()).map(|(_, b)| b)
}

/// Receives one plain entry of a bucket: its key and value.
type Entry<'f> = &'f mut dyn FnMut(&[u8], &[u8]) -> Result<(), ConvertError>;

/// Calls `each` with every plain entry of `bucket`, handing back an error
/// of `each` unchanged.
fn entries<S: Source + ?Sized>(db: &Db<S>, bucket: &Bucket, each: Entry<'_>) -> Result<(), ConvertError> {
    let mut failed = None;
    let walked = db.for_each(bucket, &mut |key, item| {
        let Item::Value(value) = item else { return Ok(()) };
        each(key, value).map_err(|e| {
            failed = Some(e);
            BboltError::Io(std::io::Error::other("stopped"))
        })
    });
    match (failed, walked) {
        (Some(e), _) => Err(e),
        (None, walked) => Ok(walked?),
    }
}

fn damaged(what: String) -> ConvertError {
    ConvertError::Damaged(what)
}

/// etcd's key for a version: main ‖ '_' ‖ sub, and 't' for a tombstone.
pub(super) fn revision_key(revision: Revision, tombstone: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(REVISION_KEY + 1);
    key.extend_from_slice(&revision.main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&revision.sub.to_be_bytes());
    if tombstone {
        key.push(TOMBSTONE_MARK);
    }
    key
}

/// The revision and tombstone flag of a key of etcd's `key` bucket.
pub(super) fn revision_of(key: &[u8]) -> Result<(Revision, bool), ConvertError> {
    let tombstone = match key.len() {
        REVISION_KEY => false,
        n if n == REVISION_KEY + 1 && key[REVISION_KEY] == TOMBSTONE_MARK => true,
        _ => return Err(damaged(format!("key bucket entry {} is not a revision", hex(key)))),
    };
    if key[8] != b'_' {
        return Err(damaged(format!("key bucket entry {} is not a revision", hex(key))));
    }
    let int = |at: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&key[at..at + 8]);
        i64::from_be_bytes(raw)
    };
    let (main, sub) = (int(0), int(9));
    if main < 0 || sub < 0 {
        return Err(damaged(format!("key bucket entry {} is not a revision", hex(key))));
    }
    Ok((Revision::new(main, sub), tombstone))
}

/// The main revision a compaction key of `meta` holds, if it is there.
fn compaction<S: Source + ?Sized>(db: &Db<S>, meta: &Bucket, name: &[u8]) -> Result<i64, ConvertError> {
    let mut found = 0;
    entries(db, meta, &mut |key, value| {
        if key == name {
            let (rev, _) = revision_of(value.get(..REVISION_KEY).unwrap_or(value))
                .map_err(|_| damaged(format!("meta {} is not a revision", String::from_utf8_lossy(name))))?;
            found = rev.main;
        }
        Ok(())
    })?;
    Ok(found)
}

/// Reads every row Shoal's state machine needs from etcd's database `db`
/// and hands each to `row`. `progress` is told the
/// bytes of entries read so far.
pub fn rows<S: Source + ?Sized>(db: &Db<S>, row: Row<'_>, progress: &mut dyn FnMut(u64)) -> Result<(), ConvertError> {
    let all = db.buckets()?;
    let key = find(&all, "key").ok_or(ConvertError::NotEtcd("key"))?;
    let meta = find(&all, "meta").ok_or(ConvertError::NotEtcd("meta"))?;
    let finished = compaction(db, meta, b"finishedCompactRev")?;
    let scheduled = compaction(db, meta, b"scheduledCompactRev")?;
    let mut current_revision = 1;
    let mut read = 0u64;
    // Key → lease, for the keys whose newest version so far holds one.
    let mut leased: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    entries(db, key, &mut |rev_key, value| {
        let (rev, tombstone) = revision_of(rev_key)?;
        let kv = KeyValue::decode(value)
            .map_err(|e| damaged(format!("revision {}_{} holds no mvccpb.KeyValue: {e}", rev.main, rev.sub)))?;
        if kv.key.is_empty() {
            return Err(damaged(format!("revision {}_{} has an empty key", rev.main, rev.sub)));
        }
        if !tombstone && kv.lease != 0 {
            leased.insert(kv.key.clone(), kv.lease);
        } else if !leased.is_empty() {
            leased.remove(&kv.key);
        }
        let record = if tombstone {
            Record::tombstone()
        } else {
            Record {
                tombstone: false,
                create_revision: kv.create_revision,
                version: kv.version,
                lease: kv.lease,
                value: kv.value,
            }
        };
        row(columns::KV, &key_codec::version_key(&kv.key, rev), &record.encode())?;
        row(columns::REVS, &rev.to_bytes(), &kv.key)?;
        current_revision = current_revision.max(rev.main);
        read += (rev_key.len() + value.len()) as u64;
        progress(read);
        Ok(())
    })?;
    // etcd's store never stands below a compaction it finished or began.
    let compacted = finished.max(scheduled);
    current_revision = current_revision.max(compacted);
    row(columns::META, columns::CURRENT_REVISION, &current_revision.to_be_bytes())?;
    row(columns::META, columns::REVS_COMPLETE, &[])?;
    if compacted > 0 {
        row(columns::META, columns::COMPACT_REVISION, &compacted.to_be_bytes())?;
        row(columns::META, columns::COMPACT_DONE, &finished.to_be_bytes())?;
    }
    if let Some(leases) = find(&all, "lease") {
        entries(db, leases, &mut |id, value| {
            let lease =
                Lease::decode(value).map_err(|e| damaged(format!("lease {} holds no leasepb.Lease: {e}", hex(id))))?;
            row(columns::LEASES, &lease.id.to_be_bytes(), &lease.ttl.to_be_bytes())?;
            Ok(())
        })?;
    }
    let attached: BTreeSet<Vec<u8>> = leased.iter().map(|(key, lease)| lease_keys::entry(*lease, key)).collect();
    for entry in attached {
        row(columns::LEASE_KEYS, &entry, &[])?;
    }
    auth_rows(db, &all, row)?;
    Ok(())
}

/// The auth switch, its revision, users and roles.
fn auth_rows<S: Source + ?Sized>(db: &Db<S>, all: &[(Vec<u8>, Bucket)], row: Row<'_>) -> Result<(), ConvertError> {
    if let Some(auth) = find(all, "auth") {
        entries(db, auth, &mut |key, value| {
            match key {
                b"authEnabled" => row(columns::AUTH, ENABLED, &[u8::from(value == [1])])?,
                b"authRevision" => {
                    let raw: [u8; 8] = value.try_into().map_err(|_| damaged("authRevision is not 8 bytes".into()))?;
                    row(columns::AUTH, REVISION, &raw)?;
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    for (bucket, prefix) in [("authUsers", USER_PREFIX), ("authRoles", ROLE_PREFIX)] {
        let Some(found) = find(all, bucket) else { continue };
        entries(db, found, &mut |name, value| {
            let valid = if prefix == USER_PREFIX {
                User::decode(value).map(|_| ()).map_err(|e| e.to_string())
            } else {
                Role::decode(value).map(|_| ()).map_err(|e| e.to_string())
            };
            valid.map_err(|e| {
                damaged(format!("{bucket} entry {:?} is not valid: {e}", String::from_utf8_lossy(name)))
            })?;
            let mut key = prefix.to_vec();
            key.extend_from_slice(name);
            row(columns::AUTH, &key, value)?;
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev_key(main: i64, sub: i64) -> Vec<u8> {
        revision_key(Revision::new(main, sub), false)
    }

    #[test]
    fn revision_keys_are_read_as_etcd_writes_them() {
        assert_eq!(revision_of(&rev_key(7, 2)).ok(), Some((Revision::new(7, 2), false)));
        let tombstone = revision_key(Revision::new(9, 0), true);
        assert_eq!(revision_of(&tombstone).ok(), Some((Revision::new(9, 0), true)));
    }

    #[test]
    fn anything_else_in_the_key_bucket_is_damage() {
        let mut wrong_mark = rev_key(9, 0);
        wrong_mark.push(b'x');
        let mut no_separator = rev_key(1, 1);
        no_separator[8] = b'-';
        for bad in [vec![], b"short".to_vec(), wrong_mark, no_separator, rev_key(-1, 0)] {
            assert!(matches!(revision_of(&bad), Err(ConvertError::Damaged(_))), "{bad:?}");
        }
    }
}
