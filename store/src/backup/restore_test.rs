use std::io::Write;

use rocksdb::WriteBatch;
use shoal_proto::etcdserverpb::PutRequest;
use shoal_proto::peerpb::{internal_request, InternalRequest};

use super::{restore, stream, BackupError, RestoreOptions};
use crate::mvcc::KvStore;
use crate::storage::{self, columns};

fn put(kv: &KvStore, key: &str, value: &str) {
    let request = InternalRequest {
        request: Some(internal_request::Request::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })),
        auth_revision: 0,
        ..Default::default()
    };
    let mut batch = WriteBatch::default();
    let applied = kv.execute(&request, &mut batch).expect("execute");
    storage::write_buffered(kv.db(), batch).expect("write");
    kv.committed(&applied);
}

fn options(data_dir: std::path::PathBuf) -> RestoreOptions {
    RestoreOptions {
        name: "r".into(),
        initial_cluster: "r=http://127.0.0.1:1,s=http://127.0.0.1:2".into(),
        initial_advertise_peer_urls: "http://127.0.0.1:1".into(),
        initial_cluster_token: "t".into(),
        data_dir,
    }
}

#[test]
fn restore_keeps_the_data_and_drops_the_old_clusters_raft_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = storage::open(&dir.path().join("old")).expect("open");
    let kv = KvStore::open(db.clone()).expect("kv");
    put(&kv, "a", "1");
    put(&kv, "a", "2");
    put(&kv, "b", "3");
    let mut old_raft = WriteBatch::default();
    let meta = storage::cf(&db, columns::META);
    old_raft.put_cf(meta, columns::REMOVED_MEMBERS, storage::encode_bincode(&std::collections::BTreeSet::from([7u64])));
    old_raft.put_cf(meta, columns::ALARMS, storage::encode_bincode(&vec![(7u64, 1i32)]));
    storage::write_buffered(&db, old_raft).expect("write");

    let file = dir.path().join("backup.db");
    let mut out = std::fs::File::create(&file).expect("create");
    let mut chunks = stream(kv.clone());
    while let Some(chunk) = chunks.blocking_recv() {
        out.write_all(&chunk.expect("chunk").0).expect("write");
    }
    drop(out);
    kv.shutdown();
    assert_eq!(std::fs::metadata(&file).expect("size").len() % 512, 32, "pages plus the checksum, as etcdctl expects");

    // A database in etcd's format: what etcd's tools read.
    assert_eq!(super::format_of(&file).expect("format"), super::Format::Etcd);
    let status = super::etcd_status(&file).expect("status");
    assert_eq!(status.revision, 4);
    // 3 versions, auth's 2 rows, the cluster version, 1 member, and meta's
    // consistent index and term, removed members' 1, alarms' 1.
    assert_eq!(status.total_keys, 10);

    let data_dir = dir.path().join("new.etcd");
    let restored = restore(&file, &options(data_dir.clone()), |_, _, _| {}).expect("restore");
    let db = storage::open(&data_dir.join("member").join("db")).expect("open restored");
    let meta_key = |key: &'static [u8]| storage::get(&db, columns::META, key).expect("get");
    assert!(meta_key(columns::REMOVED_MEMBERS).is_none());
    assert!(meta_key(columns::ALARMS).is_none());
    // Raft starts from one applied, purged entry that every restored member agrees on.
    let applied: crate::raft::LogId =
        storage::get_bincode(&db, columns::META, columns::LAST_APPLIED).expect("get").expect("seeded");
    let purged: crate::raft::LogId =
        storage::get_bincode(&db, columns::RAFT_STATE, columns::LAST_PURGED).expect("get").expect("seeded");
    assert_eq!((applied, applied.index), (purged, 1));
    let membership: crate::raft::StoredMembership =
        storage::get_bincode(&db, columns::META, columns::LAST_MEMBERSHIP).expect("get").expect("seeded");
    assert_eq!(membership.membership().voter_ids().count(), 2);
    let snap = crate::raft::snapshot::latest(&data_dir.join("member").join("snap")).expect("read").expect("built");
    assert_eq!(snap.0.last_log_id, Some(applied));
    assert_eq!(storage::get_i64(&db, columns::META, columns::CURRENT_REVISION).expect("get"), Some(4));
    let member = storage::get_i64(&db, columns::RAFT_STATE, columns::MEMBER_ID).expect("get");
    assert_eq!(member, Some(restored.member_id as i64));
    let kv = KvStore::open(db.clone()).expect("kv");
    let range = kv.range(&shoal_proto::etcdserverpb::RangeRequest { key: "a".into(), ..Default::default() });
    let range = range.expect("range");
    assert_eq!((range.kvs[0].value.as_slice(), range.kvs[0].mod_revision, range.kvs[0].version), (&b"2"[..], 3, 2));
    kv.shutdown();

    let again = restore(&file, &options(data_dir), |_, _, _| {});
    assert!(matches!(again, Err(BackupError::DataDirExists { .. })));
    let wrong_name = RestoreOptions { name: "x".into(), ..options(dir.path().join("x.etcd")) };
    assert!(matches!(restore(&file, &wrong_name, |_, _, _| {}), Err(BackupError::Options(_))));
}

/// Files saved before snapshots were in etcd's format (a Raft snapshot file
/// and the SHA-256 trailer) still report their status and restore.
#[test]
fn a_snapshot_in_shoals_older_format_still_restores() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().expect("temp dir");
    let db = storage::open(&dir.path().join("old")).expect("open");
    let kv = KvStore::open(db.clone()).expect("kv");
    put(&kv, "a", "1");
    put(&kv, "b", "2");
    let view = db.snapshot();
    let meta = crate::raft::snapshot::meta_of(&db, &view).expect("meta");
    let mut bytes = crate::raft::snapshot::dump(&db, &view, &meta, Vec::new(), "old format").expect("dump");
    drop(view);
    kv.shutdown();
    let digest = Sha256::digest(&bytes);
    bytes.extend_from_slice(&digest);
    let file = dir.path().join("old-format.db");
    std::fs::write(&file, &bytes).expect("write");

    assert_eq!(super::format_of(&file).expect("format"), super::Format::Shoal);
    let status = super::status(&file).expect("status");
    assert_eq!((status.revision, status.live_keys), (3, 2));
    let data_dir = dir.path().join("restored.etcd");
    restore(&file, &options(data_dir.clone()), |_, _, _| {}).expect("restore");
    let db = storage::open(&data_dir.join("member").join("db")).expect("open restored");
    let kv = KvStore::open(db).expect("kv");
    let range = kv.range(&shoal_proto::etcdserverpb::RangeRequest { key: "b".into(), ..Default::default() });
    assert_eq!(range.expect("range").kvs[0].mod_revision, 3);
    kv.shutdown();
}
