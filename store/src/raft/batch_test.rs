//! Batched entries: every command at its own revision, and an entry cut
//! short resumes after its last applied command.

use futures::stream;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, LogId};
use rocksdb::WriteBatch;
use shoal_proto::etcdserverpb::{PutRequest, RangeRequest};
use shoal_proto::peerpb::{internal_request::Request, InternalRequest, RequestBatch};

use super::state_machine::StateMachine;
use super::{Command, Entry, LeaderId};
use crate::storage::{self, columns};

fn put(key: &str) -> InternalRequest {
    InternalRequest {
        request: Some(Request::Put(PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() })),
        auth_revision: 0,
    }
}

fn batch_entry(index: u64, keys: &[&str]) -> Entry {
    let requests = keys.iter().map(|k| put(k)).collect();
    Entry {
        log_id: LogId::new(LeaderId { term: 1, node_id: 0 }, index),
        payload: EntryPayload::Normal(Command(InternalRequest {
            request: Some(Request::Batch(RequestBatch { requests })),
            auth_revision: 0,
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_commands_get_their_own_revisions_and_resume_after_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = storage::open(&dir.path().join("db")).expect("db");
    let (mut sm, kv) = StateMachine::open(db.clone(), dir.path().join("snap")).expect("open");
    sm.apply(stream::iter(vec![Ok((batch_entry(1, &["a", "b", "c"]), None))])).await.expect("apply");
    assert_eq!(kv.current_revision(), 4, "three commands, three revisions");

    // Entry 2 was cut short after its first command: only the rest is applied.
    let mut progress = WriteBatch::default();
    progress.put_cf(storage::cf(&db, columns::META), columns::APPLY_PROGRESS, storage::encode_bincode(&(2u64, 1u64)));
    storage::write_buffered(&db, progress).expect("write");
    sm.apply(stream::iter(vec![Ok((batch_entry(2, &["x", "y"]), None))])).await.expect("apply");
    assert_eq!(kv.current_revision(), 5, "only y was applied");
    let x = kv.range(&RangeRequest { key: b"x".to_vec(), ..Default::default() }).expect("range");
    assert!(x.kvs.is_empty(), "x counted as applied before the crash");
    let (applied, _) = sm.applied_state().await.expect("state");
    assert_eq!(applied.map(|l| l.index), Some(2));
}
