//! Delivering one applied change to many watchers of the same key.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shoal_proto::etcdserverpb::WatchCreateRequest;
use shoal_store::mvcc::txn::Change;
use shoal_store::mvcc::{Applied, KvStore, Record, Revision};
use shoal_store::storage;
use shoal_store::watch::WatchHub;

fn fanout(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = KvStore::open(storage::open(dir.path()).expect("open db")).expect("open store");
    let mut group = c.benchmark_group("watch/notify one event");
    for watchers in [1usize, 100, 1000] {
        let hub = WatchHub::new(store.clone());
        let (stream, mut queue) = hub.open_stream();
        for _ in 0..watchers {
            hub.create(&stream, &WatchCreateRequest { key: b"hot".to_vec(), ..Default::default() });
        }
        while queue.try_recv().is_some() {}
        let mut revision = store.current_revision();
        group.bench_with_input(BenchmarkId::from_parameter(watchers), &watchers, |b, _| {
            b.iter(|| {
                revision += 1;
                let record = Record { create_revision: 2, version: 1, value: vec![1; 64], ..Record::default() };
                let change =
                    Change { key: b"hot".to_vec(), revision: Revision::new(revision, 0), record, prev_lease: 0 };
                hub.notify(&Applied { revision, changes: vec![change], ..Applied::default() });
                while queue.try_recv().is_some() {}
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = watch;
    config = Criterion::default().sample_size(20);
    targets = fanout
}
criterion_main!(watch);
