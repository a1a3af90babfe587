//! openraft's storage conformance suite, run against the RocksDB log store
//! and state machine.

use openraft::testing::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::{RaftStorageError, TypeConfig};
use crate::storage;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), RaftStorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = storage::open(&dir.path().join("db")).expect("open db");
        let (sm, _kv) = StateMachine::open(db.clone(), dir.path().join("snap")).expect("open state machine");
        Ok((dir, LogStore::new(db).expect("log writer"), sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(RocksBuilder).expect("the storage suite passes");
}
