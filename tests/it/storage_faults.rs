//! Storage faults, injected through the failpoints of the suite's `shoal`
//! build (`PUT /debug/failpoints/<point>` on a member's client port): a
//! failed fsync, a full disk, and a torn last log record.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, GetOptions};
use shoal_tests::{wait, Cluster};

async fn serializable_keys(cluster: &Cluster, i: usize, prefix: &str) -> Option<i64> {
    let mut client = cluster.member_client(i).await;
    let options = GetOptions::new().with_prefix().with_serializable().with_count_only();
    client.get(prefix, Some(options)).await.ok().map(|r| r.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_fsync_fails_exits_and_the_others_serve_on() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let failing = cluster.other_than(&[leader]);
    let mut client = cluster.member_client(leader).await;
    client.put("before", "1", None).await.expect("put");
    cluster.failpoint(failing, "wal-fsync", "eio").await;

    // Writes go on through the other two; the failing member's next append
    // stops it before it acknowledges anything.
    for i in 0..20 {
        client.put(format!("during/{i}"), "x", None).await.expect("a write with one member failing");
    }
    assert!(!cluster.wait_exit(failing).await, "the member exits with an error status");
    let logs = cluster.log_tails(usize::MAX);
    assert!(logs.contains("raft log write failed; stopping this member"), "a clear last line:\n{logs}");

    // Restarted without the fault, it catches up from the others.
    cluster.restart(failing);
    wait::until(Duration::from_secs(30), "the restarted member to catch up", || async {
        (serializable_keys(&cluster, failing, "during/").await? == 20).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_raises_nospace_and_the_cluster_recovers_once_it_is_freed() {
    let cluster = Cluster::start(3).await;
    let full = cluster.other_than(&[cluster.leader().await]);
    let full_id = cluster.member_id(full).await.expect("member id");
    let mut client = cluster.client().await;
    client.put("kept", "1", None).await.expect("put");
    cluster.failpoint(full, "disk-free", "return(0)").await;

    wait::until(Duration::from_secs(20), "the NOSPACE alarm", || async {
        let alarms = cluster.client().await.alarm(AlarmAction::Get, AlarmType::None, None).await.ok()?;
        let raised = alarms.alarms().iter().any(|a| a.member_id() == full_id && a.alarm() == AlarmType::Nospace);
        raised.then_some(())
    })
    .await;
    let refused = client.put("more", "1", None).await.expect_err("a write while the disk is full");
    assert!(refused.to_string().contains("etcdserver: mvcc: database space exceeded"), "{refused}");
    for i in 0..3 {
        let mut member = cluster.member_client(i).await;
        let got = member.get("kept", None).await.expect("reads go on");
        assert_eq!(got.kvs()[0].value(), b"1");
    }
    client.delete("kept", None).await.expect("deletes go on");

    // Space freed and the alarm disarmed: writes work again.
    cluster.failpoint(full, "disk-free", "off").await;
    let mut disarm = AlarmOptions::new();
    disarm.with_member(full_id);
    client.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(disarm)).await.expect("disarm");
    client.put("more", "1", None).await.expect("a write after the disk was freed");
}

/// The offset of the last record in a WAL segment (records are `length
/// (u32 LE) ‖ crc (u32 LE) ‖ kind ‖ body`, and a zero length ends the data)
/// and its length on disk.
fn last_record(segment: &Path) -> Option<(u64, u64)> {
    let bytes = std::fs::read(segment).ok()?;
    let (mut at, mut last) = (0usize, None);
    while at + 8 <= bytes.len() {
        let length = u32::from_le_bytes(bytes[at..at + 4].try_into().ok()?) as usize;
        if length == 0 || at + 8 + length > bytes.len() {
            break;
        }
        last = Some((at as u64, (8 + length) as u64));
        at += 8 + length;
    }
    last
}

fn newest_segment(data_dir: &Path) -> PathBuf {
    let wal = data_dir.join("member/wal");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&wal).expect("wal dir").flatten().map(|e| e.path()).collect();
    segments.retain(|p| !p.to_string_lossy().ends_with(".tmp"));
    segments.sort();
    segments.pop().expect("a segment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_log_record_is_dropped_and_the_member_catches_up() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let torn = cluster.other_than(&[leader]);
    let mut client = cluster.member_client(leader).await;
    for i in 0..30 {
        client.put(format!("k/{i:02}"), "v", None).await.expect("put");
    }
    wait::until(Duration::from_secs(20), "the follower to have every write", || async {
        (serializable_keys(&cluster, torn, "k/").await? == 30).then_some(())
    })
    .await;
    cluster.kill(torn);

    // Half of the last record is lost, as in a crash in the middle of a write.
    let segment = newest_segment(&cluster.members[torn].data_dir);
    let (offset, length) = last_record(&segment).expect("a record to tear");
    let file = OpenOptions::new().write(true).open(&segment).expect("open the segment");
    let half = length / 2;
    file.write_all_at(&vec![0u8; (length - half) as usize], offset + half).expect("tear");
    file.sync_all().expect("sync");

    for i in 30..40 {
        client.put(format!("k/{i:02}"), "v", None).await.expect("put while the member is down");
    }
    cluster.restart(torn);
    wait::until(Duration::from_secs(30), "the member to recover from its peers", || async {
        (serializable_keys(&cluster, torn, "k/").await? == 40).then_some(())
    })
    .await;
    let logs = cluster.log_tails(usize::MAX);
    assert!(logs.contains("raft log ends in a torn write; dropping it"), "the tear was found:\n{logs}");
    let revision = client.get("k/", None).await.expect("get").header().map_or(0, |h| h.revision());
    let hashes = cluster.hashes_at(0..3, revision).await;
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "members agree at revision {revision}: {hashes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_disk_stalls_hands_leadership_on() {
    let cluster = Cluster::start(3).await;
    let stalled = cluster.leader().await;
    let stalled_id = cluster.member_id(stalled).await.expect("member id");
    let healthy = cluster.other_than(&[stalled]);
    cluster.failpoint(stalled, "wal-fsync", "sleep(3000)").await;

    let mut client = cluster.member_client(healthy).await;
    let writer = tokio::spawn(async move {
        for i in 0..20 {
            client.put(format!("k/{i:02}"), "v", None).await.expect("writes go on while a disk stalls");
        }
    });
    wait::until(Duration::from_secs(30), "a member with a healthy disk to lead", || async {
        let leader = cluster.status(healthy).await?.leader();
        (leader != 0 && leader != stalled_id).then_some(())
    })
    .await;
    writer.await.expect("writer");
    let logs = cluster.log_tails(usize::MAX);
    assert!(logs.contains("raft log write stalled; handing leadership on"), "{logs}");

    cluster.failpoint(stalled, "wal-fsync", "off").await;
    wait::until(Duration::from_secs(30), "the stalled member to catch up", || async {
        (serializable_keys(&cluster, stalled, "k/").await? == 20).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_on_a_failed_fsync_does_not_lead_again_in_its_term() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let term = cluster.status(leader).await.and_then(|s| s.header().map(|h| h.raft_term())).expect("term");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (mut client, stop) = (cluster.client().await, stop.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if client.put(format!("w/{i:05}"), "v", None).await.is_ok() {
                    acked.push(format!("w/{i:05}"));
                }
            }
            acked
        })
    };
    cluster.failpoint(leader, "wal-fsync", "eio").await;
    assert!(!cluster.wait_exit(leader).await, "the leader exits on the failed fsync");
    cluster.restart(leader);
    // Whoever leads now, it leads in a newer term than the one the stopped
    // leader held: resuming that term could reuse an index it had sent out.
    let (now_leading, now_term) = wait::until(Duration::from_secs(30), "a leader after the restart", || async {
        for i in 0..3 {
            let Some(status) = cluster.status(i).await else { continue };
            let Some(header) = status.header() else { continue };
            if status.leader() == header.member_id() {
                return Some((header.member_id(), header.raft_term()));
            }
        }
        None
    })
    .await;
    assert!(now_term > term, "leader {now_leading:x} leads in term {now_term}, the stopped leader's was {term}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    let mut client = cluster.client().await;
    let revision = client.put("w/last", "v", None).await.expect("put").header().map_or(0, |h| h.revision());
    let hashes = cluster.hashes_at(0..3, revision).await;
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "members agree at revision {revision}: {hashes:?}");
    let stored = client.get("w/", Some(GetOptions::new().with_prefix().with_keys_only())).await.expect("get");
    let stored: std::collections::HashSet<String> =
        stored.kvs().iter().map(|kv| kv.key_str().unwrap_or("").to_string()).collect();
    let lost: Vec<&String> = acked.iter().filter(|k| !stored.contains(*k)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}
