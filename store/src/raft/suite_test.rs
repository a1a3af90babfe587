//! openraft's storage conformance suite, run against the RocksDB log store
//! and state machine.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use openraft::testing::log::{StoreBuilder, Suite};
use rocksdb::DB;

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::{RaftStorageError, TypeConfig};
use crate::storage;

/// Every database the suite opened, to wait for their closing at the end.
#[derive(Default)]
struct RocksBuilder {
    opened: Arc<Mutex<Vec<Weak<DB>>>>,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), RaftStorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = storage::open(&dir.path().join("db")).expect("open db");
        self.opened.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::downgrade(&db));
        let (sm, _kv) = StateMachine::open(db.clone(), dir.path().join("snap")).expect("open state machine");
        let log = LogStore::open(db, &dir.path().join("wal")).expect("log store");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    let builder = RocksBuilder::default();
    let opened = builder.opened.clone();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    runtime.block_on(Suite::test_all(builder)).expect("the storage suite passes");
    drop(runtime);
    // Log writer threads let go of their database a moment after their
    // store is dropped, and the last one to let go closes it. Exiting while
    // a close is under way makes RocksDB abort on its torn-down static
    // locks: wait until no database is held and every writer thread is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    let opened = opened.lock().unwrap_or_else(|p| p.into_inner());
    while opened.iter().any(|db| db.strong_count() > 0) || writer_threads() > 0 {
        assert!(Instant::now() < deadline, "a database of the suite is still open");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Threads of this process named as the Raft log writer.
fn writer_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "raft-log-writer")
        .count()
}
