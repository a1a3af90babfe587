use std::os::unix::fs::FileExt;
use std::path::Path;

use super::*;

/// Small segments, so that a few entries span several.
const SMALL: u64 = 4096;

fn entry(index: u64, tag: u8) -> Op {
    Op::Entry { index, bytes: vec![tag; 100 + (index % 7) as usize] }
}

fn purge(index: u64) -> Op {
    Op::Purge { index, bytes: index.to_le_bytes().to_vec() }
}

/// Everything a reopened log holds: vote, purge marker, and each entry's bytes.
#[derive(Debug, PartialEq, Eq)]
struct State {
    vote: Option<Vec<u8>>,
    last_purged: Option<u64>,
    entries: Vec<(u64, Vec<u8>)>,
}

fn state_of(wal: &Wal) -> State {
    let durable = wal.shared();
    let durable = durable.lock();
    let first = durable.last().map(|last| last + 1 - durable.locate(0, u64::MAX).len() as u64);
    let entries = match (first, durable.last()) {
        (Some(first), Some(last)) => (first..=last)
            .zip(durable.locate(first, last + 1))
            .map(|(i, at)| (i, read_entry(&at, |b| Ok(b.to_vec())).expect("read")))
            .collect(),
        _ => Vec::new(),
    };
    State { vote: durable.vote.clone(), last_purged: durable.last_purged.as_ref().map(|p| p.0), entries }
}

fn reopened(dir: &Path) -> State {
    state_of(&Wal::open(dir, SMALL).expect("reopen"))
}

fn segments(dir: &Path) -> Vec<u64> {
    segment::list(dir).expect("list")
}

#[test]
fn a_reopened_log_holds_what_was_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), SMALL).expect("open");
    wal.write(&[Op::Vote(b"v1".to_vec()), entry(1, 1), entry(2, 1), entry(3, 1)]).expect("write");
    wal.write(&[Op::Truncate(3), entry(3, 2), Op::Vote(b"v2".to_vec())]).expect("write");
    let before = state_of(&wal);
    assert_eq!(before.entries.iter().map(|e| (e.0, e.1[0])).collect::<Vec<_>>(), [(1, 1), (2, 1), (3, 2)]);
    assert_eq!(before.vote.as_deref(), Some(&b"v2"[..]));
    drop(wal);
    assert_eq!(reopened(dir.path()), before);
}

#[test]
fn segments_roll_over_and_purged_ones_are_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), SMALL).expect("open");
    wal.write(&[Op::Vote(b"vote".to_vec())]).expect("vote");
    for index in 1..=200 {
        wal.write(&[entry(index, index as u8)]).expect("append");
    }
    // A group that spans several segments at once.
    let group: Vec<Op> = (201..=260).map(|i| entry(i, i as u8)).collect();
    wal.write(&group).expect("append group");
    assert!(segments(dir.path()).len() > 5, "entries of ~110 bytes fill 4 KiB segments");
    let before = state_of(&wal);
    assert_eq!(before.entries.len(), 260);
    drop(wal);
    assert_eq!(reopened(dir.path()), before);

    let mut wal = Wal::open(dir.path(), SMALL).expect("open");
    let count = segments(dir.path()).len();
    wal.write(&[purge(150)]).expect("purge");
    let after = state_of(&wal);
    assert_eq!(after.entries.first().map(|e| e.0), Some(151));
    assert_eq!(after.last_purged, Some(150));
    // The files go on a thread of their own.
    wal.wait_cleaned();
    assert!(segments(dir.path()).len() < count, "segments of purged entries are gone");
    drop(wal);
    // The vote and the marker survive the deletion of the segments that first held them.
    let reread = reopened(dir.path());
    assert_eq!(reread, after);
    assert_eq!(reread.vote.as_deref(), Some(&b"vote"[..]));
}

#[test]
fn a_torn_tail_is_dropped_and_nothing_stale_returns_after_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), SEGMENT_BYTES).expect("open");
    wal.write(&[entry(1, 1), entry(2, 1)]).expect("write");
    let kept = state_of(&wal);
    let end = wal.len;
    wal.write(&[entry(3, 1), entry(4, 1), entry(5, 1)]).expect("write");
    let (seq, record_3) = (wal.seq, wal.shared().lock().locate(3, 4).pop().expect("entry 3").size as u64);
    drop(wal);
    // A crash lost the block holding entry 3's header; 4 and 5 reached the disk.
    let file = segment::open(dir.path(), seq).expect("segment");
    file.write_all_at(&vec![0; record_3 as usize], end).expect("zero entry 3");
    assert_eq!(reopened(dir.path()), kept);
    // Entry 3 written again, of the same size: old entry 4 must not reappear after it.
    let mut wal = Wal::open(dir.path(), SEGMENT_BYTES).expect("open");
    wal.write(&[entry(3, 9)]).expect("write");
    drop(wal);
    let reread = reopened(dir.path());
    assert_eq!(reread.entries.iter().map(|e| (e.0, e.1[0])).collect::<Vec<_>>(), [(1, 1), (2, 1), (3, 9)]);

    // A record cut short at the very end is dropped the same way.
    let mut wal = Wal::open(dir.path(), SEGMENT_BYTES).expect("open");
    let end = wal.len;
    wal.write(&[entry(4, 4)]).expect("write");
    drop(wal);
    file.write_all_at(&[0; 16], end + 20).expect("tear entry 4");
    assert_eq!(reopened(dir.path()), reread);
}

#[test]
fn damage_before_the_last_segment_refuses_to_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut wal = Wal::open(dir.path(), SMALL).expect("open");
    for index in 1..=100 {
        wal.write(&[entry(index, 1)]).expect("append");
    }
    drop(wal);
    let first = segments(dir.path())[0];
    let file = segment::open(dir.path(), first).expect("segment");
    file.write_all_at(&[0xFF], 20).expect("damage");
    let Err(e) = Wal::open(dir.path(), SMALL) else { panic!("a damaged segment must not open") };
    assert!(e.to_string().contains("corrupt"), "{e}");
}

#[test]
fn a_log_kept_in_rocksdb_moves_into_the_wal_once() {
    use crate::storage::{self, columns};
    let dir = tempfile::tempdir().expect("temp dir");
    let db = storage::open(&dir.path().join("db")).expect("db");
    let purged: crate::raft::LogId = openraft::LogId::new(crate::raft::LeaderId { term: 1, node_id: 1 }, 4);
    let mut batch = rocksdb::WriteBatch::default();
    let state = storage::cf(&db, columns::RAFT_STATE);
    batch.put_cf(state, columns::VOTE, b"old vote");
    batch.put_cf(state, columns::LAST_PURGED, storage::encode_bincode(&purged));
    for index in 5..=9u64 {
        batch.put_cf(storage::cf(&db, columns::RAFT_LOG), index.to_be_bytes(), [index as u8; 10]);
    }
    storage::write_synced(&db, batch).expect("seed");

    let wal_dir = dir.path().join("wal");
    let wal = from_rocksdb::open(&db, &wal_dir, SMALL).expect("open");
    let moved = state_of(&wal);
    assert_eq!(moved.vote.as_deref(), Some(&b"old vote"[..]));
    assert_eq!(moved.last_purged, Some(4));
    assert_eq!(moved.entries.iter().map(|e| e.0).collect::<Vec<_>>(), [5, 6, 7, 8, 9]);
    assert_eq!(moved.entries[0].1, vec![5u8; 10]);
    drop(wal);
    assert!(storage::get(&db, columns::RAFT_STATE, columns::VOTE).expect("get").is_none());
    let mut it = db.raw_iterator_cf(storage::cf(&db, columns::RAFT_LOG));
    it.seek_to_first();
    assert!(!it.valid(), "the old rows are gone");
    drop(it);
    assert_eq!(state_of(&from_rocksdb::open(&db, &wal_dir, SMALL).expect("reopen")), moved);
}

#[test]
fn records_larger_than_the_read_window_and_across_it_read_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let segment_bytes = 256 << 10;
    let mut wal = Wal::open(dir.path(), segment_bytes).expect("open");
    let sizes = [50usize, 5_000, 9_000, 120, 4_090];
    let ops: Vec<Op> = (1..=40u64)
        .map(|index| Op::Entry { index, bytes: vec![index as u8; sizes[index as usize % sizes.len()]] })
        .collect();
    wal.write(&ops).expect("write");
    let before = state_of(&wal);
    assert_eq!(before.entries.len(), 40);
    drop(wal);
    assert_eq!(state_of(&Wal::open(dir.path(), segment_bytes).expect("reopen")), before);
}
