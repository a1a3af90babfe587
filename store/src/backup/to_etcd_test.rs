//! The key bucket of a snapshot in etcd's format: every version, in
//! revision order, whatever order the keys were written in and however
//! many versions are looked up at once.

use prost::Message;
use shoal_proto::etcdserverpb::{DeleteRangeRequest, PutRequest};
use shoal_proto::mvccpb::KeyValue;
use shoal_proto::peerpb::internal_request::Request;
use shoal_proto::peerpb::internal_response::Response;

use super::from_etcd::revision_of;
use super::to_etcd::versions_by;
use crate::mvcc::store_test::TestStore;

/// (main, sub, tombstone, key, value, create revision, version) of every
/// entry the key bucket gets, in the order given.
type Entry = (i64, i64, bool, String, String, i64, i64);

fn key_bucket(t: &TestStore, batch: usize) -> Vec<Entry> {
    let db = t.store.db();
    let view = db.snapshot();
    let mut entries = Vec::new();
    versions_by(db, &view, batch, &mut |versions| {
        versions.each(&mut |rev_key, value| {
            let (rev, tombstone) = revision_of(rev_key).expect("a revision key");
            let kv = KeyValue::decode(value).expect("a KeyValue");
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            entries.push((
                rev.main,
                rev.sub,
                tombstone,
                text(&kv.key),
                text(&kv.value),
                kv.create_revision,
                kv.version,
            ));
            Ok(())
        })
    })
    .expect("versions");
    entries
}

#[test]
fn every_version_comes_in_revision_order_whatever_the_batch() {
    let t = TestStore::new();
    // Keys written out of their byte order, some many times, some deleted.
    let keys: Vec<String> = (0..200u32).map(|i| format!("k{:03}", (i * 7919) % 200)).collect();
    for (i, key) in keys.iter().enumerate() {
        t.put(key, &format!("v{i}"));
        if i % 3 == 0 {
            t.put(&keys[i / 2], &format!("again {i}"));
        }
        if i % 11 == 0 {
            let Response::DeleteRange(_) = t.apply(Request::DeleteRange(DeleteRangeRequest {
                key: keys[i / 3].clone().into(),
                ..Default::default()
            })) else {
                panic!("a delete response")
            };
        }
    }
    t.apply(Request::Put(PutRequest { key: "k000".into(), value: "last".into(), ..Default::default() }));

    let all = key_bucket(&t, usize::MAX);
    assert!(all.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)), "revision order");
    assert_eq!(all.last().map(|e| e.0), Some(t.store.current_revision()));
    assert!(all.iter().any(|e| e.2), "deletions are in the bucket");
    assert!(
        all.iter().filter(|e| e.2).all(|e| e.4.is_empty() && e.5 == 0 && e.6 == 0),
        "a deletion holds its key only"
    );
    assert_eq!(all.iter().rfind(|e| e.3 == "k000" && !e.2).map(|e| e.4.as_str()), Some("last"));
    for batch in [1, 2, 7, 64] {
        assert_eq!(key_bucket(&t, batch), all, "batches of {batch}");
    }
}
