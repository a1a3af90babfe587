//! Physical compaction, in the background and in small batches, so that a
//! `Compact` request never stalls apply.
//!
//! The applier only records the target revision (with its `last_applied`);
//! this thread then walks the `revs` log below the target, and for each key
//! that changed keeps its newest version at or below the target (unless that
//! is a tombstone) and deletes the older ones, with their `revs` rows: the
//! log keeps one row per stored version, kept ones included, so that it
//! lists the whole store in revision order (what a snapshot in etcd's
//! format is written in). Progress is written with every
//! batch, so a restart (or a member that installed a snapshot mid-way)
//! resumes where it stopped. Reads are unaffected: they run on RocksDB
//! snapshots and refuse revisions below the target anyway.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use rocksdb::{ReadOptions, WriteBatch, DB};

use super::key_codec;
use super::record::Record;
use super::revision::Revision;
use crate::storage::{self, columns, StorageError};

/// Revisions handled per batch.
const BATCH: usize = 1000;
/// Pause between batches, leaving the disk to foreground writes.
const PAUSE: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Wanted {
    target: i64,
    stop: bool,
}

pub struct Compactor {
    wanted: Arc<(Mutex<Wanted>, Condvar)>,
    done: tokio::sync::watch::Sender<i64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Compactor {
    pub fn start(db: Arc<DB>, gate: Arc<RwLock<()>>) -> Result<Compactor, StorageError> {
        let done_now = storage::get_i64(&db, columns::META, columns::COMPACT_DONE)?.unwrap_or(0);
        let (done, _) = tokio::sync::watch::channel(done_now);
        let wanted = Arc::new((Mutex::new(Wanted::default()), Condvar::new()));
        let thread = std::thread::Builder::new()
            .name("compactor".into())
            .spawn({
                let wanted = wanted.clone();
                let done = done.clone();
                move || run(&db, &gate, &wanted, &done)
            })
            .map_err(StorageError::io("compactor thread"))?;
        Ok(Compactor { wanted, done, thread: Mutex::new(Some(thread)) })
    }

    /// Progress read back from disk (after a snapshot replaced the state).
    pub fn set_done(&self, done: i64) {
        self.done.send_replace(done);
        let (_, cvar) = &*self.wanted;
        cvar.notify_all();
    }

    pub fn schedule(&self, target: i64) {
        let (lock, cvar) = &*self.wanted;
        let mut wanted = lock.lock().unwrap_or_else(|p| p.into_inner());
        wanted.target = target;
        cvar.notify_all();
    }

    pub async fn wait_done(&self, revision: i64) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|done| *done >= revision).await;
    }

    pub fn stop(&self) {
        {
            let (lock, cvar) = &*self.wanted;
            lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
            cvar.notify_all();
        }
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(db: &DB, gate: &RwLock<()>, wanted: &(Mutex<Wanted>, Condvar), done: &tokio::sync::watch::Sender<i64>) {
    let (lock, cvar) = wanted;
    loop {
        let target = {
            let mut w = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !w.stop && w.target <= *done.borrow() {
                w = cvar.wait(w).unwrap_or_else(|p| p.into_inner());
            }
            if w.stop {
                return;
            }
            w.target
        };
        match compact_batch(db, gate, target) {
            Ok(reached) => {
                done.send_replace(reached);
                std::thread::sleep(PAUSE);
            }
            Err(e) => {
                tracing::error!(error = %e, target, "compaction batch failed; retrying");
                let w = lock.lock().unwrap_or_else(|p| p.into_inner());
                let _ = cvar.wait_timeout(w, Duration::from_secs(1));
            }
        }
    }
}

/// Compacts up to [`BATCH`] revisions below `target`; returns the revision
/// below which everything is now compacted.
fn compact_batch(db: &DB, gate: &RwLock<()>, target: i64) -> Result<i64, StorageError> {
    let _shared = gate.read().unwrap_or_else(|p| p.into_inner());
    let from = storage::get_i64(db, columns::META, columns::COMPACT_DONE)?.unwrap_or(0);
    if from >= target {
        return Ok(from);
    }
    let revs_cf = storage::cf(db, columns::REVS);
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(Revision::new(target, 0).to_bytes().to_vec());
    let mut it = db.raw_iterator_cf_opt(revs_cf, opts);
    it.seek(Revision::new(from, 0).to_bytes());
    let mut keys = BTreeSet::new();
    let mut batch = WriteBatch::default();
    let mut last = None;
    while let (Some(rev), Some(key)) = (it.key(), it.value()) {
        if keys.len() >= BATCH {
            break;
        }
        last = Revision::from_bytes(rev);
        keys.insert(key.to_vec());
        it.next();
    }
    it.status().map_err(StorageError::rocks("compaction scan"))?;
    let finished = !it.valid();
    for key in &keys {
        delete_superseded(db, &mut batch, key, target)?;
    }
    let reached = match last {
        Some(last) if !finished => last.main,
        _ => target,
    };
    batch.put_cf(storage::cf(db, columns::META), columns::COMPACT_DONE, reached.to_be_bytes());
    storage::write_buffered(db, batch)?;
    Ok(reached)
}

/// Deletes every version of `key` older than its newest one at or below
/// `target`, and that one too when it is a tombstone, each with its `revs` row.
fn delete_superseded(db: &DB, batch: &mut WriteBatch, key: &[u8], target: i64) -> Result<(), StorageError> {
    let kv_cf = storage::cf(db, columns::KV);
    let revs_cf = storage::cf(db, columns::REVS);
    let delete = |batch: &mut WriteBatch, version: &[u8]| {
        batch.delete_cf(kv_cf, version);
        if let Some((_, revision)) = key_codec::decode(version) {
            batch.delete_cf(revs_cf, revision.to_bytes());
        }
    };
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(key_codec::after_versions(key));
    let mut it = db.raw_iterator_cf_opt(kv_cf, opts);
    it.seek(key_codec::version_key(key, Revision::new(target, i64::MAX)));
    if let (Some(kept), Some(value)) = (it.key(), it.value()) {
        if Record::is_tombstone(value) {
            delete(batch, kept);
        }
        it.next();
    }
    while let Some(older) = it.key() {
        delete(batch, older);
        it.next();
    }
    it.status().map_err(StorageError::rocks("compaction key scan"))
}
