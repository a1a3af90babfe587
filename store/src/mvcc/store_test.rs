//! Behaviour of the MVCC store on a real RocksDB, request by request.

use rocksdb::WriteBatch;
use shoal_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use shoal_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use shoal_proto::etcdserverpb::{
    request_op, response_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use shoal_proto::peerpb::{internal_request::Request, internal_response::Response, InternalRequest};

use super::*;
use crate::storage;

pub(crate) struct TestStore {
    pub store: std::sync::Arc<KvStore>,
    _dir: tempfile::TempDir,
}

impl TestStore {
    pub fn new() -> TestStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = storage::open(dir.path()).expect("open db");
        TestStore { store: KvStore::open(db).expect("open store"), _dir: dir }
    }

    pub fn apply(&self, request: Request) -> Response {
        let mut batch = WriteBatch::default();
        let applied = self
            .store
            .execute(&InternalRequest { request: Some(request), auth_revision: 0, ..Default::default() }, &mut batch)
            .expect("execute");
        storage::write_buffered(self.store.db(), batch).expect("write");
        self.store.committed(&applied);
        applied.response.response.expect("a response")
    }

    pub fn put(&self, key: &str, value: &str) -> Response {
        self.apply(Request::Put(PutRequest { key: key.into(), value: value.into(), ..Default::default() }))
    }

    pub fn get(&self, key: &str, rev: i64) -> Result<Vec<Summary>, MvccError> {
        let resp = self.store.range(&RangeRequest { key: key.into(), revision: rev, ..Default::default() })?;
        Ok(resp.kvs.into_iter().map(summary).collect())
    }
}

/// (key, value, create revision, mod revision, version)
type Summary = (String, String, i64, i64, i64);

fn summary(kv: shoal_proto::mvccpb::KeyValue) -> Summary {
    (
        String::from_utf8_lossy(&kv.key).into_owned(),
        String::from_utf8_lossy(&kv.value).into_owned(),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
    )
}

fn prefix(key: &str) -> RangeRequest {
    let mut end = key.as_bytes().to_vec();
    *end.last_mut().expect("non-empty") += 1;
    RangeRequest { key: key.into(), range_end: end, ..Default::default() }
}

#[test]
fn revisions_versions_and_tombstones_follow_etcd() {
    let t = TestStore::new();
    assert_eq!(t.store.current_revision(), 1);
    t.put("a", "1");
    t.put("a", "2");
    assert_eq!(t.get("a", 0).expect("read"), vec![("a".into(), "2".into(), 2, 3, 2)]);
    assert_eq!(t.get("a", 2).expect("read"), vec![("a".into(), "1".into(), 2, 2, 1)]);
    let Response::DeleteRange(del) =
        t.apply(Request::DeleteRange(DeleteRangeRequest { key: "a".into(), prev_kv: true, ..Default::default() }))
    else {
        panic!("delete response")
    };
    assert_eq!((del.deleted, del.prev_kvs.len(), del.header.map(|h| h.revision)), (1, 1, Some(4)));
    assert!(t.get("a", 0).expect("read").is_empty());
    // Deleting nothing does not bump the revision.
    t.apply(Request::DeleteRange(DeleteRangeRequest { key: "zz".into(), ..Default::default() }));
    assert_eq!(t.store.current_revision(), 4);
    // Re-creation starts a new life: new create revision, version 1.
    t.put("a", "3");
    assert_eq!(t.get("a", 0).expect("read"), vec![("a".into(), "3".into(), 5, 5, 1)]);
    assert!(matches!(t.get("a", 99), Err(MvccError::FutureRevision)));
}

#[test]
fn range_limit_count_sort_and_filters() {
    let t = TestStore::new();
    for (k, v) in [("p/c", "1"), ("p/a", "3"), ("p/b", "2"), ("q", "0")] {
        t.put(k, v);
    }
    let resp = t.store.range(&RangeRequest { limit: 2, ..prefix("p/") }).expect("range");
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (2, true, 3));
    assert_eq!(resp.kvs[0].key, b"p/a");
    let by_value_descending = |keys_only: bool| {
        let sorted = RangeRequest {
            keys_only,
            sort_target: SortTarget::Value as i32,
            sort_order: SortOrder::Descend as i32,
            ..prefix("p/")
        };
        t.store.range(&sorted).expect("range")
    };
    let resp = by_value_descending(false);
    let values: Vec<_> = resp.kvs.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(values, vec![b"3".to_vec(), b"2".to_vec(), b"1".to_vec()]);
    let resp = t.store.range(&RangeRequest { min_mod_revision: 3, ..prefix("p/") }).expect("range");
    assert_eq!((resp.kvs.len(), resp.count), (2, 3));
    let resp = t.store.range(&RangeRequest { count_only: true, ..prefix("p/") }).expect("range");
    assert_eq!((resp.kvs.len(), resp.count), (0, 3));
    let resp =
        t.store.range(&RangeRequest { key: b"p/b".to_vec(), range_end: vec![0], ..Default::default() }).expect("range");
    assert_eq!(resp.count, 3, "from-key covers p/b, p/c and q");
    let resp = t.store.range(&RangeRequest { keys_only: true, ..prefix("p/") }).expect("range");
    assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()));
    // Keys only, sorted by the values they are not answered with (as etcd
    // sorts before it drops the values).
    let resp = by_value_descending(true);
    let keys: Vec<_> = resp.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b"p/a".to_vec(), b"p/b".to_vec(), b"p/c".to_vec()]);
    assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()));
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })),
    }
}

fn get_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest { key: key.into(), ..Default::default() })),
    }
}

#[test]
fn txn_compares_branches_and_sees_its_own_writes() {
    let t = TestStore::new();
    t.put("k", "v1");
    let compare = Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Value as i32,
        key: b"k".to_vec(),
        target_union: Some(TargetUnion::Value(b"v1".to_vec())),
        range_end: vec![],
    };
    let txn = TxnRequest {
        compare: vec![compare],
        success: vec![put_op("k", "v2"), put_op("other", "x"), get_op("k")],
        failure: vec![get_op("k")],
    };
    let Response::Txn(resp) = t.apply(Request::Txn(txn.clone())) else { panic!("txn response") };
    assert!(resp.succeeded);
    assert_eq!(resp.header.map(|h| h.revision), Some(3));
    let Some(response_op::Response::ResponseRange(read)) = &resp.responses[2].response else { panic!("range") };
    assert_eq!(read.kvs[0].value, b"v2", "a txn reads its own writes");
    assert_eq!(read.header.as_ref().map(|h| h.revision), Some(3));
    assert_eq!(t.get("other", 0).expect("read")[0].3, 3, "one revision for the whole txn");
    // Second time the compare fails: the failure branch runs and nothing changes.
    let Response::Txn(resp) = t.apply(Request::Txn(txn)) else { panic!("txn response") };
    assert!(!resp.succeeded);
    assert_eq!(t.store.current_revision(), 3);
}

#[test]
fn txn_errors_change_nothing() {
    let t = TestStore::new();
    let txn = TxnRequest {
        compare: vec![],
        success: vec![
            put_op("a", "1"),
            RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"b".to_vec(),
                    lease: 42,
                    ..Default::default()
                })),
            },
        ],
        failure: vec![],
    };
    let resp = t.apply(Request::Txn(txn));
    assert!(matches!(resp, Response::Error(code) if code == shoal_proto::peerpb::ApplyErrorCode::LeaseNotFound as i32));
    assert_eq!(t.store.current_revision(), 1);
    assert!(t.get("a", 0).expect("read").is_empty());
}

#[test]
fn compaction_keeps_the_newest_version_and_refuses_older_reads() {
    let t = TestStore::new();
    t.put("a", "1"); // 2
    t.put("a", "2"); // 3
    t.put("b", "1"); // 4
    t.apply(Request::DeleteRange(DeleteRangeRequest { key: "b".into(), ..Default::default() })); // 5
    t.put("c", "1"); // 6
    let Response::Compaction(_) = t.apply(Request::Compaction(CompactionRequest { revision: 5, physical: true }))
    else {
        panic!("compaction accepted")
    };
    assert!(matches!(t.get("a", 4), Err(MvccError::Compacted)));
    assert_eq!(t.get("a", 5).expect("read at the compaction revision"), vec![("a".into(), "2".into(), 2, 3, 2)]);
    let again = t.apply(Request::Compaction(CompactionRequest { revision: 5, physical: false }));
    assert!(matches!(again, Response::Error(code) if code == shoal_proto::peerpb::ApplyErrorCode::Compacted as i32));
    let future = t.apply(Request::Compaction(CompactionRequest { revision: 60, physical: false }));
    assert!(
        matches!(future, Response::Error(code) if code == shoal_proto::peerpb::ApplyErrorCode::FutureRevision as i32)
    );

    // Physically: wait for the compactor, then count what is left.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(t.store.wait_compacted(5));
    let db = t.store.db();
    let mut it = db.raw_iterator_cf(storage::cf(db, storage::columns::KV));
    it.seek_to_first();
    let mut versions = Vec::new();
    while let Some(k) = it.key() {
        versions.push(key_codec::decode(k).expect("decodes"));
        it.next();
    }
    let kept: Vec<(Vec<u8>, i64)> = versions.into_iter().map(|(k, r)| (k, r.main)).collect();
    assert_eq!(kept, vec![(b"a".to_vec(), 3), (b"c".to_vec(), 6)], "old versions and the tombstone are gone");
    assert_eq!(revision_log(db), kept, "the revision log lists exactly the versions kept, in revision order");

    // A data dir from before the log listed kept versions gets them back
    // when the store is opened (reloaded).
    let mut older = WriteBatch::default();
    older.delete_cf(storage::cf(db, storage::columns::REVS), super::Revision::new(3, 0).to_bytes());
    older.delete_cf(storage::cf(db, storage::columns::META), storage::columns::REVS_COMPLETE);
    storage::write_buffered(db, older).expect("write");
    assert_eq!(revision_log(db), vec![(b"c".to_vec(), 6)]);
    t.store.reload().expect("reload");
    assert_eq!(revision_log(db), kept);
}

/// (key, main revision) of every row of the revision log, in order.
fn revision_log(db: &rocksdb::DB) -> Vec<(Vec<u8>, i64)> {
    let mut it = db.raw_iterator_cf(storage::cf(db, storage::columns::REVS));
    it.seek_to_first();
    let mut log = Vec::new();
    while let (Some(rev), Some(key)) = (it.key(), it.value()) {
        log.push((key.to_vec(), super::Revision::from_bytes(rev).expect("revision").main));
        it.next();
    }
    log
}

#[test]
fn the_key_index_rebuilt_from_disk_answers_as_the_live_one() {
    let t = TestStore::new();
    t.put("a", "1"); // 2
    t.put("a", "2"); // 3
    t.put("b", "1"); // 4
    t.apply(Request::DeleteRange(DeleteRangeRequest { key: "b".into(), ..Default::default() })); // 5
    t.put("c\0x", "1"); // 6
    assert_eq!(t.store.index_size().0, 2);
    t.store.reload().expect("reload, as at open and after a snapshot install");
    assert_eq!(t.store.index_size().0, 2, "the deleted key is not indexed");

    let prev = |key: &str, value: &str| {
        let put = PutRequest { key: key.into(), value: value.into(), prev_kv: true, ..Default::default() };
        match t.apply(Request::Put(put)) {
            Response::Put(put) => put.prev_kv.map(summary),
            other => panic!("put response: {other:?}"),
        }
    };
    assert_eq!(prev("a", "3"), Some(("a".into(), "2".into(), 2, 3, 2)));
    assert_eq!(prev("b", "2"), None, "a deleted key starts a new life");
    assert_eq!(prev("c\0x", "2"), Some(("c\0x".into(), "1".into(), 6, 6, 1)));
    assert_eq!(t.get("a", 0).expect("read"), vec![("a".into(), "3".into(), 2, 7, 3)]);
    assert_eq!(t.get("b", 0).expect("read"), vec![("b".into(), "2".into(), 8, 8, 1)]);
    // ignore_value keeps the stored value, read through the index's revision.
    let keep = PutRequest { key: "a".into(), ignore_value: true, ..Default::default() };
    t.apply(Request::Put(keep));
    assert_eq!(t.get("a", 0).expect("read"), vec![("a".into(), "3".into(), 2, 10, 4)]);
}
