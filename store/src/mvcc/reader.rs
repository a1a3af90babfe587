//! Reading versions out of the `kv` column family, at any retained revision.

use std::collections::BTreeMap;
use std::ops::Bound;

use rocksdb::{DBRawIteratorWithThreadMode, ReadOptions, SnapshotWithThreadMode, DB};

use super::key_codec;
use super::record::Record;
use super::revision::Revision;
use crate::storage::{self, columns, StorageError};

pub type DbSnapshot<'a> = SnapshotWithThreadMode<'a, DB>;

/// Changes made by a transaction that is still executing: the newest staged
/// version of each key it touched. Reads inside the transaction see them.
pub type Overlay = BTreeMap<Vec<u8>, (Revision, Record)>;

/// The keys a request addresses, in etcd's terms: an empty `range_end` means
/// the single `key`, `"\0"` means every key `>= key`, anything else `[key, range_end)`.
#[derive(Clone, Copy, Debug)]
pub enum KeyRange<'a> {
    Single(&'a [u8]),
    Span { start: &'a [u8], end: Option<&'a [u8]> },
}

impl<'a> KeyRange<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::Span { start: key, end: None },
            end => KeyRange::Span { start: key, end: Some(end) },
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match *self {
            KeyRange::Single(k) => k == key,
            KeyRange::Span { start, end } => key >= start && end.is_none_or(|end| key < end),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(*self, KeyRange::Span { start, end: Some(end) } if end <= start)
    }

    fn bounds(&self) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
        match *self {
            KeyRange::Single(k) => (Bound::Included(k), Bound::Included(k)),
            KeyRange::Span { start, end: None } => (Bound::Included(start), Bound::Unbounded),
            KeyRange::Span { start, end: Some(end) } => (Bound::Included(start), Bound::Excluded(end)),
        }
    }
}

/// A consistent view of the versions: either the live database (the applier,
/// which is the only writer) or a point-in-time RocksDB snapshot (API reads).
pub struct KvReader<'a> {
    db: &'a DB,
    snapshot: Option<&'a DbSnapshot<'a>>,
}

impl<'a> KvReader<'a> {
    pub fn new(db: &'a DB, snapshot: Option<&'a DbSnapshot<'a>>) -> KvReader<'a> {
        KvReader { db, snapshot }
    }

    pub fn db(&self) -> &'a DB {
        self.db
    }

    /// The point-in-time view this reader reads through, if any.
    pub fn snapshot(&self) -> Option<&'a DbSnapshot<'a>> {
        self.snapshot
    }

    fn iterator(&self, upper_bound: Option<Vec<u8>>) -> DBRawIteratorWithThreadMode<'a, DB> {
        let mut opts = ReadOptions::default();
        if let Some(snapshot) = self.snapshot {
            opts.set_snapshot(snapshot);
        }
        if let Some(upper) = upper_bound {
            opts.set_iterate_upper_bound(upper);
        }
        self.db.raw_iterator_cf_opt(storage::cf(self.db, columns::KV), opts)
    }

    /// Reads a fixed key of another column family through the same view.
    pub fn get(&self, cf_name: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let cf = storage::cf(self.db, cf_name);
        let got = match self.snapshot {
            Some(snapshot) => snapshot.get_cf(cf, key),
            None => self.db.get_cf(cf, key),
        };
        got.map_err(StorageError::rocks("get"))
    }

    /// The newest version of `key` at or below main revision `rev`, tombstones included.
    pub fn version_at(
        &self,
        key: &[u8],
        rev: i64,
        with_value: bool,
    ) -> Result<Option<(Revision, Record)>, StorageError> {
        let target = key_codec::version_key(key, Revision::new(rev, i64::MAX));
        let prefix = &target[..target.len() - key_codec::REVISION_BYTES];
        let mut it = self.iterator(Some(key_codec::after_prefix(prefix)));
        it.seek(&target);
        let (Some(found), Some(value)) = (it.key(), it.value()) else {
            it.status().map_err(StorageError::rocks("seek"))?;
            return Ok(None);
        };
        let revision = key_codec::revision_after_prefix(found, prefix.len())
            .ok_or_else(|| StorageError::corrupt("kv key", "bad revision"))?;
        let record =
            Record::decode(value, with_value).ok_or_else(|| StorageError::corrupt("kv record", "too short"))?;
        Ok(Some((revision, record)))
    }

    /// The value of `key`'s version at exactly `revision`, which must exist.
    pub fn value_at(&self, key: &[u8], revision: Revision) -> Result<Vec<u8>, StorageError> {
        let stored = self
            .get(columns::KV, &key_codec::version_key(key, revision))?
            .ok_or_else(|| StorageError::corrupt("kv record", "indexed version missing"))?;
        let record = Record::decode(&stored, true).ok_or_else(|| StorageError::corrupt("kv record", "too short"))?;
        Ok(record.value)
    }

    /// The newest live version of `key` at or below `rev`.
    pub fn live_at(&self, key: &[u8], rev: i64, with_value: bool) -> Result<Option<(Revision, Record)>, StorageError> {
        Ok(self.version_at(key, rev, with_value)?.filter(|(_, record)| !record.tombstone))
    }

    /// Visits, in key order, the newest live version at or below `rev` of every
    /// key in `range`.
    pub fn scan(
        &self,
        range: KeyRange<'_>,
        rev: i64,
        with_value: bool,
        mut visit: impl FnMut(&[u8], Revision, Record),
    ) -> Result<(), StorageError> {
        let (start, end) = match range {
            KeyRange::Single(key) => {
                if let Some((revision, record)) = self.live_at(key, rev, with_value)? {
                    visit(key, revision, record);
                }
                return Ok(());
            }
            _ if range.is_empty() => return Ok(()),
            KeyRange::Span { start, end } => (start, end),
        };
        let mut it = self.iterator(end.map(key_codec::bound));
        it.seek(key_codec::bound(start));
        while let (Some(encoded), Some(value)) = (it.key(), it.value()) {
            let (key, revision) =
                key_codec::decode(encoded).ok_or_else(|| StorageError::corrupt("kv key", "undecodable"))?;
            if revision.main > rev {
                // Too new: jump to this key's newest version at or below `rev`
                // (or to the next key when it has none).
                it.seek(key_codec::version_key(&key, Revision::new(rev, i64::MAX)));
                continue;
            }
            if !Record::is_tombstone(value) {
                let record =
                    Record::decode(value, with_value).ok_or_else(|| StorageError::corrupt("kv record", "too short"))?;
                visit(&key, revision, record);
            }
            skip_older_versions(&mut it, &key);
        }
        it.status().map_err(StorageError::rocks("scan"))
    }
}

/// Moves past the remaining (older) versions of `key`: a few steps forward,
/// since most keys have one or two versions, then a seek.
fn skip_older_versions(it: &mut DBRawIteratorWithThreadMode<'_, DB>, key: &[u8]) {
    let prefix = key_codec::versions_prefix(key);
    for _ in 0..3 {
        it.next();
        match it.key() {
            Some(next) if next.starts_with(&prefix) => continue,
            _ => return,
        }
    }
    it.seek(key_codec::after_prefix(&prefix));
}

/// [`KvReader::scan`] with a transaction's staged changes laid over it: a
/// staged version replaces the stored one, a staged tombstone hides it.
pub fn scan_with_overlay(
    reader: &KvReader<'_>,
    overlay: Option<&Overlay>,
    range: KeyRange<'_>,
    rev: i64,
    with_value: bool,
    mut visit: impl FnMut(&[u8], Revision, Record),
) -> Result<(), StorageError> {
    let Some(overlay) = overlay.filter(|o| !o.is_empty() && !range.is_empty()) else {
        return reader.scan(range, rev, with_value, visit);
    };
    let mut staged = overlay.range::<[u8], _>(range.bounds()).peekable();
    fn emit(key: &[u8], revision: Revision, record: &Record, visit: &mut dyn FnMut(&[u8], Revision, Record)) {
        if !record.tombstone {
            visit(key, revision, record.clone());
        }
    }
    reader.scan(range, rev, with_value, |key, revision, record| {
        while let Some((staged_key, (staged_rev, staged_record))) = staged.next_if(|(k, _)| k.as_slice() < key) {
            emit(staged_key, *staged_rev, staged_record, &mut visit);
        }
        match staged.next_if(|(k, _)| k.as_slice() == key) {
            Some((_, (staged_rev, staged_record))) => emit(key, *staged_rev, staged_record, &mut visit),
            None => visit(key, revision, record),
        }
    })?;
    for (staged_key, (staged_rev, staged_record)) in staged {
        emit(staged_key, *staged_rev, staged_record, &mut visit);
    }
    Ok(())
}
