//! Snapshots built as checkpoints: they hold the state of the moment they
//! were taken, replace the older one, travel in the file format, and a
//! member installs what they hold.

use std::path::Path;

use futures::stream;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, LogId};
use shoal_proto::etcdserverpb::{PutRequest, RangeRequest};
use shoal_proto::peerpb::{internal_request::Request, InternalRequest};

use super::state_machine::StateMachine;
use super::{checkpoint, snapshot, Command, Entry, LeaderId, SnapshotFile};
use crate::storage;

fn put_entry(index: u64, key: &str) -> Entry {
    let put = PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() };
    Entry {
        log_id: LogId::new(LeaderId { term: 1, node_id: 0 }, index),
        payload: EntryPayload::Normal(Command(InternalRequest {
            request: Some(Request::Put(put)),
            auth_revision: 0,
            ..Default::default()
        })),
    }
}

/// Every state-machine row of a snapshot, a file or a checkpoint.
fn rows(path: &Path) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let mut rows = Vec::new();
    let collect = |family, key, value| {
        rows.push((family, key, value));
        Ok(())
    };
    snapshot::records(path, collect).expect("read snapshot");
    rows
}

fn snap_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("snap dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_keeps_its_moment_replaces_the_older_and_installs_elsewhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = storage::open(&dir.path().join("db")).expect("db");
    let snap_dir = dir.path().join("snap");
    let (mut sm, _kv) = StateMachine::open(db.clone(), snap_dir.clone()).expect("open");
    let entries = (1..=3).map(|i| Ok((put_entry(i, &format!("k{i}")), None)));
    sm.apply(stream::iter(entries.collect::<Vec<_>>())).await.expect("apply");

    let first = sm.get_snapshot_builder().await.build_snapshot().await.expect("build");
    assert!(checkpoint::is_checkpoint(&first.snapshot.path), "{}", first.snapshot.path.display());
    assert_eq!(first.meta.last_log_id.map(|l| l.index), Some(3));
    assert_eq!(snapshot::read_meta(&first.snapshot.path).expect("meta"), first.meta);
    let at_first = rows(&first.snapshot.path);

    // Writes after it leave it as it was.
    sm.apply(stream::iter(vec![Ok((put_entry(4, "later"), None))])).await.expect("apply");
    assert_eq!(rows(&first.snapshot.path), at_first, "a checkpoint is a point in time");
    let current = sm.get_current_snapshot().await.expect("current").expect("one exists");
    assert_eq!(current.meta, first.meta);

    // A newer one replaces it, and nothing partial is left behind.
    let second = sm.get_snapshot_builder().await.build_snapshot().await.expect("build");
    assert_eq!(second.meta.last_log_id.map(|l| l.index), Some(4));
    let names = snap_entries(&snap_dir);
    assert_eq!(names.len(), 1, "only the newest snapshot stays: {names:?}");
    // Listed just before the newer one replaced it, the older one is gone
    // when read: skipped, and the newer one found, not an error.
    let listed = [first.snapshot.path.clone(), second.snapshot.path.clone()];
    let (found, vanished) = snapshot::newest(listed.into_iter()).expect("a vanished snapshot is no error");
    assert_eq!((found.map(|(meta, _)| meta), vanished), (Some(second.meta.clone()), true));
    assert!(names[0].ends_with(".ckpt"), "{names:?}");

    // Sent to another member in the file format, it reads back row for row.
    let sent = dir.path().join("sent.snap");
    let file = std::fs::File::create(&sent).expect("create");
    checkpoint::dump(&second.snapshot.path, std::io::BufWriter::new(file))
        .and_then(|mut out| std::io::Write::flush(&mut out).map_err(storage::StorageError::io(&sent)))
        .expect("dump");
    assert_eq!(snapshot::verify(&sent).expect("verify"), second.meta);
    assert_eq!(rows(&sent), rows(&second.snapshot.path));

    // That member installs it and holds the same keys.
    let other = tempfile::tempdir().expect("temp dir");
    let other_db = storage::open(&other.path().join("db")).expect("db");
    let (mut other_sm, other_kv) = StateMachine::open(other_db, other.path().join("snap")).expect("open");
    other_sm.install_snapshot(&second.meta, SnapshotFile { path: sent }).await.expect("install");
    let got = other_kv.range(&RangeRequest { key: b"\0".to_vec(), range_end: b"\0".to_vec(), ..Default::default() });
    let keys: Vec<Vec<u8>> = got.expect("range").kvs.into_iter().map(|kv| kv.key).collect();
    assert_eq!(keys, [b"k1".to_vec(), b"k2".to_vec(), b"k3".to_vec(), b"later".to_vec()]);
    let (applied, _) = other_sm.applied_state().await.expect("state");
    assert_eq!(applied.map(|l| l.index), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_cut_short_is_removed_at_startup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = storage::open(&dir.path().join("db")).expect("db");
    let snap_dir = dir.path().join("snap");
    let building = snap_dir.join("building-1.tmp");
    std::fs::create_dir_all(&building).expect("mkdir");
    std::fs::write(building.join("000001.sst"), b"half").expect("write");
    let (mut sm, _kv) = StateMachine::open(db, snap_dir.clone()).expect("open");
    assert!(snap_entries(&snap_dir).is_empty(), "{:?}", snap_entries(&snap_dir));
    assert!(sm.get_current_snapshot().await.expect("current").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_snapshot_reads_whole_while_newer_ones_replace_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = storage::open(&dir.path().join("db")).expect("db");
    let snap_dir = dir.path().join("snap");
    let (mut sm, _kv) = StateMachine::open(db, snap_dir.clone()).expect("open");
    sm.apply(stream::iter(vec![Ok((put_entry(1, "k1"), None))])).await.expect("apply");
    sm.get_snapshot_builder().await.build_snapshot().await.expect("build");

    // A reader lists and reads the directory while each newer snapshot
    // removes the one before it: it finds one whole every time.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (done, snap_dir) = (done.clone(), snap_dir.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                match snapshot::latest(&snap_dir) {
                    Ok(Some(_)) => reads += 1,
                    Ok(None) => return Err("no snapshot found".to_string()),
                    Err(e) => return Err(format!("after {reads} reads: {e}")),
                }
            }
            Ok(reads)
        })
    };
    for i in 2..=40 {
        sm.apply(stream::iter(vec![Ok((put_entry(i, &format!("k{i}")), None))])).await.expect("apply");
        sm.get_snapshot_builder().await.build_snapshot().await.expect("build");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().expect("reader thread").expect("every read finds a whole snapshot");
    assert!(reads > 0);
}
