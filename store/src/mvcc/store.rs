//! [`KvStore`]: the revision counters and the entry points used by the
//! applier (writes) and by the API (reads).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockWriteGuard};

use rocksdb::{WriteBatch, DB};
use shoal_proto::etcdserverpb::{
    CompactionResponse, LeaseGrantResponse, LeaseRevokeResponse, RangeRequest, RangeResponse, ResponseHeader,
    TxnRequest, TxnResponse,
};
use shoal_proto::peerpb::{internal_request, internal_response, InternalRequest, InternalResponse};

use super::compactor::Compactor;
use super::key_codec;
use super::key_index::{KeyIndex, KeyMeta};
use super::range::{range, ReadView};
use super::reader::{KeyRange, KvReader};
use super::txn::{Change, WriteTxn};
use super::MvccError;
use crate::alarm::{self, Alarms};
use crate::auth::AuthStore;
use crate::storage::{self, columns, StorageError};

/// etcd's initial compaction revision: nothing has been compacted.
const NEVER_COMPACTED: i64 = -1;

pub struct KvStore {
    db: Arc<DB>,
    /// Newest committed revision. Updated after the batch holding it is written.
    current: AtomicI64,
    /// Revision of the latest applied compaction; reads below it are refused.
    compacted: AtomicI64,
    /// Held shared by every read and by the compactor, exclusively while a
    /// snapshot replaces the whole state.
    gate: Arc<RwLock<()>>,
    compactor: Compactor,
    /// Replicated alarms; NOSPACE caps what the applier accepts.
    alarms: Alarms,
    /// Users and roles, replicated beside the keys (applied by the state machine).
    auth: Arc<AuthStore>,
    /// The newest live version of every key, for the applier's writes.
    /// Only the applier locks it (and `reload`, which runs while it waits).
    index: Mutex<KeyIndex>,
}

/// The outcome of executing one command, before its batch is committed.
#[derive(Debug, Default)]
pub struct Applied {
    pub response: InternalResponse,
    /// Revision after the command.
    pub revision: i64,
    pub changes: Vec<Change>,
    /// Set when the command was an accepted compaction.
    pub compacted: Option<i64>,
    /// A lease this command granted: (id, TTL in seconds).
    pub lease_granted: Option<(i64, i64)>,
    /// A lease this command revoked.
    pub lease_revoked: Option<i64>,
}

impl KvStore {
    pub fn open(db: Arc<DB>) -> Result<Arc<KvStore>, StorageError> {
        let gate = Arc::new(RwLock::new(()));
        let compactor = Compactor::start(db.clone(), gate.clone())?;
        let store = Arc::new(KvStore {
            db: db.clone(),
            current: AtomicI64::new(1),
            compacted: AtomicI64::new(NEVER_COMPACTED),
            gate,
            compactor,
            alarms: Alarms::default(),
            auth: Arc::new(AuthStore::open(&db)?),
            index: Mutex::new(KeyIndex::new()),
        });
        store.reload()?;
        Ok(store)
    }

    /// Re-reads the counters from disk (at open, and after a snapshot install).
    pub fn reload(&self) -> Result<(), StorageError> {
        // Before the compactor is given work: it deletes what this indexes.
        index_every_version(&self.db)?;
        let current = storage::get_i64(&self.db, columns::META, columns::CURRENT_REVISION)?.unwrap_or(1);
        let compacted =
            storage::get_i64(&self.db, columns::META, columns::COMPACT_REVISION)?.unwrap_or(NEVER_COMPACTED);
        let done = storage::get_i64(&self.db, columns::META, columns::COMPACT_DONE)?.unwrap_or(0);
        self.current.store(current, Ordering::Release);
        self.compacted.store(compacted, Ordering::Release);
        self.compactor.set_done(done);
        self.compactor.schedule(compacted);
        self.auth.reload(&self.db)?;
        self.alarms.reload(&self.db)?;
        let index = build_index(&self.db)?;
        *self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = index;
        Ok(())
    }

    pub fn auth(&self) -> &Arc<AuthStore> {
        &self.auth
    }

    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    pub fn current_revision(&self) -> i64 {
        self.current.load(Ordering::Acquire)
    }

    pub fn compact_revision(&self) -> i64 {
        self.compacted.load(Ordering::Acquire)
    }

    /// Runs `f` on a consistent point-in-time view of the store.
    pub fn read<T>(&self, f: impl FnOnce(&ReadView<'_>) -> T) -> T {
        let _shared = self.gate.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Order matters: the revision is read before the snapshot is taken, so
        // the snapshot holds everything up to it.
        let current = self.current_revision();
        let snapshot = self.db.snapshot();
        let compacted = self.compact_revision();
        let reader = KvReader::new(&self.db, Some(&snapshot));
        f(&ReadView { reader: &reader, overlay: None, current, compacted })
    }

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        self.read(|view| range(view, req))
    }

    /// A transaction without writes, served from a snapshot without Raft.
    pub fn read_only_txn(&self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        self.read(|view| WriteTxn::new(view.reader, view.current, view.compacted).txn(req))
    }

    /// Executes a replicated command and stages its writes into `batch`.
    /// Verdicts on the request become an error response; only storage
    /// failures are returned as errors.
    pub fn execute(&self, req: &InternalRequest, batch: &mut WriteBatch) -> Result<Applied, StorageError> {
        let applied = self.execute_at(req, batch, self.current_revision())?;
        self.stage_revision(batch, std::slice::from_ref(&applied));
        Ok(applied)
    }

    /// Stages the current revision after `applied`, commands executed in
    /// order into `batch`: that of the last one that changed anything, if
    /// any did. [`KvStore::execute_at`] leaves this to its caller, so that a
    /// write of many commands records it once: each write of this one key is
    /// a full memtable search (a newer version sorts before the older ones,
    /// never after the last insert).
    pub fn stage_revision(&self, batch: &mut WriteBatch, applied: &[Applied]) {
        if let Some(last) = applied.iter().rev().find(|a| !a.changes.is_empty()) {
            let meta = storage::cf(&self.db, columns::META);
            batch.put_cf(meta, columns::CURRENT_REVISION, last.revision.to_be_bytes());
        }
    }

    /// [`KvStore::execute`] after revision `base`: the published revision,
    /// or that of an earlier command whose writes are staged in `batch` too.
    /// Such a command's keys are in the index already, but their values are
    /// not readable until `batch` is written. The new current revision is
    /// not staged: see [`KvStore::stage_revision`].
    pub fn execute_at(
        &self,
        req: &InternalRequest,
        batch: &mut WriteBatch,
        base: i64,
    ) -> Result<Applied, StorageError> {
        let compacted = self.compact_revision();
        let reader = KvReader::new(&self.db, None);
        let mut index = self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut txn = WriteTxn::new(&reader, base, compacted).with_index(&index);
        let mut accepted_compaction = None;
        let (mut lease_granted, mut lease_revoked) = (None, None);
        let outcome = (|| -> Result<internal_response::Response, MvccError> {
            if self.alarms.no_space() && req.request.as_ref().is_some_and(alarm::grows_database) {
                return Err(MvccError::NoSpace);
            }
            Ok(match &req.request {
                Some(internal_request::Request::Alarm(alarm)) => {
                    let mut response = self.alarms.apply(&self.db, alarm, batch);
                    response.header = Some(ResponseHeader { revision: base, ..Default::default() });
                    internal_response::Response::Alarm(response)
                }
                // A plain put checks its lease first, as etcd does.
                Some(internal_request::Request::Put(put)) => {
                    if put.lease != 0 && !txn.lease_exists(put.lease)? {
                        return Err(MvccError::LeaseNotFound);
                    }
                    internal_response::Response::Put(txn.put(put)?)
                }
                Some(internal_request::Request::DeleteRange(del)) => {
                    internal_response::Response::DeleteRange(txn.delete_range(del)?)
                }
                Some(internal_request::Request::Txn(t)) => internal_response::Response::Txn(txn.txn(t)?),
                Some(internal_request::Request::Compaction(c)) => {
                    if c.revision <= compacted {
                        return Err(MvccError::Compacted);
                    }
                    if c.revision > base {
                        return Err(MvccError::FutureRevision);
                    }
                    batch.put_cf(
                        storage::cf(&self.db, columns::META),
                        columns::COMPACT_REVISION,
                        c.revision.to_be_bytes(),
                    );
                    accepted_compaction = Some(c.revision);
                    internal_response::Response::Compaction(CompactionResponse {
                        header: Some(ResponseHeader { revision: base, ..Default::default() }),
                    })
                }
                Some(internal_request::Request::LeaseGrant(grant)) => {
                    if txn.lease_exists(grant.id)? {
                        return Err(MvccError::LeaseExists);
                    }
                    batch.put_cf(
                        storage::cf(&self.db, columns::LEASES),
                        grant.id.to_be_bytes(),
                        grant.ttl.to_be_bytes(),
                    );
                    lease_granted = Some((grant.id, grant.ttl));
                    internal_response::Response::LeaseGrant(LeaseGrantResponse {
                        header: Some(ResponseHeader { revision: base, ..Default::default() }),
                        id: grant.id,
                        ttl: grant.ttl,
                        error: String::new(),
                    })
                }
                Some(internal_request::Request::LeaseRevoke(revoke)) => {
                    if !txn.lease_exists(revoke.id)? {
                        return Err(MvccError::LeaseNotFound);
                    }
                    txn.delete_lease_keys(revoke.id)?;
                    batch.delete_cf(storage::cf(&self.db, columns::LEASES), revoke.id.to_be_bytes());
                    lease_revoked = Some(revoke.id);
                    internal_response::Response::LeaseRevoke(LeaseRevokeResponse {
                        header: Some(ResponseHeader { revision: txn.current(), ..Default::default() }),
                    })
                }
                // Not a key-value command (member attributes, auth): nothing to do here.
                // Batches are taken apart by the state machine; publishing is not a KV change.
                _ => internal_response::Response::Compaction(CompactionResponse {
                    header: Some(ResponseHeader { revision: base, ..Default::default() }),
                }),
            })
        })();
        let response = match outcome {
            Ok(response) => response,
            Err(MvccError::Storage(e)) => return Err(e),
            Err(verdict) => {
                let code = verdict.code().expect("invariant: non-storage errors have a code");
                return Ok(Applied {
                    response: InternalResponse { response: Some(internal_response::Response::Error(code as i32)) },
                    revision: base,
                    ..Applied::default()
                });
            }
        };
        let revision = txn.current();
        let changes = txn.into_changes();
        self.stage(batch, &changes);
        // Ahead of the disk until `batch` is written; a failed write stops
        // the applier for good, so nothing reads the index after one.
        index_changes(&mut index, &changes);
        Ok(Applied {
            response: InternalResponse { response: Some(response) },
            revision,
            changes,
            compacted: accepted_compaction,
            lease_granted,
            lease_revoked,
        })
    }

    /// Entries and bytes of the in-memory key index.
    pub fn index_size(&self) -> (usize, usize) {
        let index = self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (index.len(), index.allocated_bytes())
    }

    fn stage(&self, batch: &mut WriteBatch, changes: &[Change]) {
        let kv = storage::cf(&self.db, columns::KV);
        let revs = storage::cf(&self.db, columns::REVS);
        for change in changes {
            batch.put_cf(kv, key_codec::version_key(&change.key, change.revision), change.record.encode());
            batch.put_cf(revs, change.revision.to_bytes(), &change.key);
            super::lease_keys::stage(&self.db, batch, change);
        }
    }

    /// Publishes the effects of a command once its batch is on disk.
    pub fn committed(&self, applied: &Applied) {
        self.current.store(applied.revision, Ordering::Release);
        if let Some(rev) = applied.compacted {
            self.compacted.store(rev, Ordering::Release);
            self.compactor.schedule(rev);
        }
    }

    /// Shared access to a whole, consistent state (held while a snapshot is built).
    pub fn shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Blocks reads and compaction while a snapshot replaces the state.
    pub fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until physical compaction has reached `revision`.
    pub async fn wait_compacted(&self, revision: i64) {
        self.compactor.wait_done(revision).await
    }

    pub fn shutdown(&self) {
        self.compactor.stop();
    }
}

/// Reads the newest live version of every key into a fresh index.
/// Adds the `revs` rows that data dirs written before the log held every
/// version lack (those of versions a compaction kept), once.
fn index_every_version(db: &DB) -> Result<(), StorageError> {
    if storage::get(db, columns::META, columns::REVS_COMPLETE)?.is_some() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let revs = storage::cf(db, columns::REVS);
    let (mut batch, mut rows) = (WriteBatch::default(), 0u64);
    let mut it = db.raw_iterator_cf(storage::cf(db, columns::KV));
    it.seek_to_first();
    while let Some(version) = it.key() {
        let (key, revision) = key_codec::decode(version).ok_or_else(|| StorageError::corrupt("kv", "version key"))?;
        batch.put_cf(revs, revision.to_bytes(), key);
        rows += 1;
        if batch.size_in_bytes() >= 4 << 20 {
            storage::write_buffered(db, std::mem::take(&mut batch))?;
        }
        it.next();
    }
    it.status().map_err(StorageError::rocks("index every version"))?;
    batch.put_cf(storage::cf(db, columns::META), columns::REVS_COMPLETE, []);
    storage::write_synced(db, batch)?;
    tracing::info!(rows, millis = started.elapsed().as_millis() as u64, "revision log holds every version");
    Ok(())
}

fn build_index(db: &DB) -> Result<KeyIndex, StorageError> {
    let started = std::time::Instant::now();
    let mut index = KeyIndex::new();
    let everything = KeyRange::Span { start: b"", end: None };
    KvReader::new(db, None).scan(everything, i64::MAX, false, |key, revision, record| {
        index.insert(key, meta_of(revision, &record));
    })?;
    tracing::info!(
        keys = index.len(),
        bytes = index.allocated_bytes(),
        millis = started.elapsed().as_millis() as u64,
        "key index built"
    );
    Ok(index)
}

fn meta_of(revision: super::Revision, record: &super::Record) -> KeyMeta {
    KeyMeta { revision, create_revision: record.create_revision, version: record.version, lease: record.lease }
}

fn index_changes(index: &mut KeyIndex, changes: &[Change]) {
    for change in changes {
        if change.record.tombstone {
            index.remove(&change.key);
        } else {
            index.insert(&change.key, meta_of(change.revision, &change.record));
        }
    }
}
