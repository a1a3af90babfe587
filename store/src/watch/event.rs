//! Watch events: from the changes the applier just committed, and from the
//! revision log when a watcher catches up.

use rocksdb::{ReadOptions, DB};
use shoal_proto::mvccpb::{event::EventType, Event, KeyValue};

use crate::mvcc::reader::DbSnapshot;
use crate::mvcc::txn::Change;
use crate::mvcc::{key_codec, Record, Revision};
use crate::storage::{self, columns, StorageError};

/// An event with the revision it belongs to.
#[derive(Debug, Clone)]
pub struct RevEvent {
    pub revision: i64,
    pub event: Event,
}

pub fn event(key: Vec<u8>, revision: Revision, record: Record) -> Event {
    if record.tombstone {
        return Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue { key, mod_revision: revision.main, ..KeyValue::default() }),
            prev_kv: None,
        };
    }
    Event { r#type: EventType::Put as i32, kv: Some(record.into_key_value(key, revision.main)), prev_kv: None }
}

pub fn from_change(change: &Change) -> Event {
    event(change.key.clone(), change.revision, change.record.clone())
}

/// Every event with a revision in `[from, to]`, in revision order, read from
/// the revision log through a RocksDB snapshot.
pub fn history(db: &DB, snapshot: &DbSnapshot<'_>, from: i64, to: i64) -> Result<Vec<RevEvent>, StorageError> {
    let mut opts = ReadOptions::default();
    opts.set_snapshot(snapshot);
    opts.set_iterate_upper_bound(Revision::new(to.saturating_add(1), 0).to_bytes().to_vec());
    let mut it = db.raw_iterator_cf_opt(storage::cf(db, columns::REVS), opts);
    it.seek(Revision::new(from, 0).to_bytes());
    let mut events = Vec::new();
    while let (Some(rev), Some(key)) = (it.key(), it.value()) {
        let revision =
            Revision::from_bytes(rev).ok_or_else(|| StorageError::corrupt("revision log", "bad revision"))?;
        let stored = snapshot
            .get_cf(storage::cf(db, columns::KV), key_codec::version_key(key, revision))
            .map_err(StorageError::rocks("read version"))?;
        // A version missing from under its log entry was compacted away
        // mid-read; the caller's compaction check catches that.
        if let Some(bytes) = stored {
            let record = Record::decode(&bytes, true).ok_or_else(|| StorageError::corrupt("kv record", "too short"))?;
            events.push(RevEvent { revision: revision.main, event: event(key.to_vec(), revision, record) });
        }
        it.next();
    }
    it.status().map_err(StorageError::rocks("read revision log"))?;
    Ok(events)
}
