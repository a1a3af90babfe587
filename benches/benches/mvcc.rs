//! The MVCC apply and range paths, on a real RocksDB.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rocksdb::WriteBatch;
use shoal_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use shoal_proto::etcdserverpb::{request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use shoal_proto::peerpb::{internal_request::Request, InternalRequest};
use shoal_store::mvcc::KvStore;
use shoal_store::storage;

const KEYS: u64 = 100_000;

fn key(i: u64) -> Vec<u8> {
    format!("key/{i:08}").into_bytes()
}

fn apply(store: &KvStore, request: Request) {
    let mut batch = WriteBatch::default();
    let applied = store
        .execute(&InternalRequest { request: Some(request), auth_revision: 0, ..Default::default() }, &mut batch)
        .expect("execute");
    storage::write_buffered(store.db(), batch).expect("write");
    store.committed(&applied);
}

fn put(i: u64) -> Request {
    Request::Put(PutRequest { key: key(i), value: vec![7u8; 256], ..Default::default() })
}

fn filled() -> (tempfile::TempDir, std::sync::Arc<KvStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = KvStore::open(storage::open(dir.path()).expect("open db")).expect("open store");
    for i in 0..KEYS {
        apply(&store, put(i));
    }
    (dir, store)
}

fn benches(c: &mut Criterion) {
    let (_dir, store) = filled();
    let mut i = 0u64;
    c.bench_function("apply/put (100k keys)", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            apply(&store, put(i));
        })
    });
    c.bench_function("apply/txn cas+2 puts", |b| {
        b.iter_batched(
            || {
                i = (i + 7919) % KEYS;
                let op = |k: u64| RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key(k),
                        value: vec![1; 64],
                        ..Default::default()
                    })),
                };
                Request::Txn(TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Greater as i32,
                        target: CompareTarget::Mod as i32,
                        key: key(i),
                        target_union: Some(TargetUnion::ModRevision(0)),
                        range_end: vec![],
                    }],
                    success: vec![op(i), op((i + 1) % KEYS)],
                    failure: vec![],
                })
            },
            |txn| apply(&store, txn),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("range/one key (100k keys)", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            store.range(&RangeRequest { key: key(i), ..Default::default() }).expect("range")
        })
    });
    c.bench_function("range/100 keys", |b| {
        b.iter(|| {
            i = (i + 7919) % (KEYS - 100);
            store.range(&RangeRequest { key: key(i), range_end: key(i + 100), ..Default::default() }).expect("range")
        })
    });
    c.bench_function("range/count-only 100k keys", |b| {
        b.iter(|| {
            store
                .range(&RangeRequest {
                    key: b"key/".to_vec(),
                    range_end: b"key0".to_vec(),
                    count_only: true,
                    ..Default::default()
                })
                .expect("range")
        })
    });
}

criterion_group! {
    name = mvcc;
    config = Criterion::default().sample_size(20);
    targets = benches
}
criterion_main!(mvcc);
