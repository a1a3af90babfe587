//! Disaster recovery from snapshot backups: save, lose every member, restore
//! a new cluster, and find every key, value, revision and lease again. Bad
//! files are refused before anything is written.

use std::path::Path;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use shoal_tests::cluster::shoalctl;
use shoal_tests::{Cluster, Etcdctl};

const KEYS: usize = 100_000;
const REVISIONS_PER_KEY: usize = 3;
const LEASES: usize = 100;
const PER_TXN: usize = 100;

/// Every key at `revision`, as (key, value, create, mod, version, lease).
async fn all_keys(client: &mut Client, revision: i64) -> Vec<(Vec<u8>, Vec<u8>, i64, i64, i64, i64)> {
    let mut out = Vec::new();
    let mut from = b"\0".to_vec();
    loop {
        let options = GetOptions::new().with_from_key().with_limit(20_000).with_revision(revision);
        let page = client.get(from.clone(), Some(options)).await.expect("range");
        for kv in page.kvs() {
            out.push((
                kv.key().to_vec(),
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
            ));
        }
        match (page.more(), page.kvs().last()) {
            (true, Some(last)) => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return out,
        }
    }
}

async fn load(client: &Client, leases: &[i64]) {
    let chunks = KEYS / PER_TXN;
    for round in 0..REVISIONS_PER_KEY {
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let mut client = client.clone();
            let leases = leases.to_vec();
            tasks.push(tokio::spawn(async move {
                for chunk in (worker..chunks).step_by(8) {
                    let ops: Vec<TxnOp> = (0..PER_TXN)
                        .map(|j| {
                            let n = chunk * PER_TXN + j;
                            let options =
                                n.is_multiple_of(10).then(|| PutOptions::new().with_lease(leases[n % leases.len()]));
                            TxnOp::put(format!("key/{n:06}"), format!("value-{round}-{n}"), options)
                        })
                        .collect();
                    let txn = Txn::new().when(Vec::<Compare>::new()).and_then(ops);
                    client.txn(txn).await.expect("load txn");
                }
            }));
        }
        for task in tasks {
            task.await.expect("loader");
        }
    }
}

pub(crate) fn restore_member(file: &Path, cluster: &Cluster, i: usize) -> Duration {
    let initial: Vec<String> = cluster.members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
    let member = &cluster.members[i];
    let started = Instant::now();
    let (ok, stdout, stderr) = shoalctl(&[
        "snapshot",
        "restore",
        &file.display().to_string(),
        "--name",
        &member.name,
        "--initial-cluster",
        &initial.join(","),
        "--initial-advertise-peer-urls",
        &member.peer_url,
        "--initial-cluster-token",
        "shoal-test",
        "--data-dir",
        &member.data_dir.display().to_string(),
    ]);
    assert!(ok, "restore failed:\n{stdout}\n{stderr}");
    started.elapsed()
}

/// `shoalctl snapshot restore` of `file` into `data_dir`, as the only member
/// of a new cluster: (success, stdout, stderr).
pub(crate) fn restore_alone(file: &Path, data_dir: &Path) -> (bool, String, String) {
    shoalctl(&[
        "snapshot",
        "restore",
        &file.display().to_string(),
        "--name",
        "r",
        "--initial-cluster",
        "r=http://127.0.0.1:1",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:1",
        "--data-dir",
        &data_dir.display().to_string(),
    ])
}

/// Writes `bytes` as `<name>.db` in `dir`, checks that a restore of it is
/// refused with `why` and leaves no data dir, whole or partial, behind;
/// returns the file.
pub(crate) fn refused_leaving_nothing(dir: &Path, name: &str, bytes: &[u8], why: &str) -> std::path::PathBuf {
    let bad = dir.join(format!("{name}.db"));
    std::fs::write(&bad, bytes).expect("write bad file");
    let data_dir = dir.join(format!("{name}.etcd"));
    let (ok, _, stderr) = restore_alone(&bad, &data_dir);
    assert!(!ok && stderr.contains(why), "{name}: {stderr}");
    assert!(!data_dir.exists(), "{name}: nothing is written for a bad file");
    let leftovers = std::fs::read_dir(dir).expect("list").flatten();
    let partial: Vec<_> = leftovers.filter(|e| e.file_name().to_string_lossy().contains("restoring")).collect();
    assert!(partial.is_empty(), "{name}: no partial data dir is left behind");
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_restored_from_a_snapshot_has_every_key_revision_and_lease() {
    let mut old = Cluster::start(3).await;
    let mut client = old.client().await;
    let mut leases = Vec::new();
    for _ in 0..LEASES {
        leases.push(client.lease_grant(3600, None).await.expect("lease grant").id());
    }
    load(&client, &leases).await;
    let backup_dir = tempfile::tempdir().expect("temp dir");
    let file = backup_dir.path().join("backup.db");
    let (ok, stdout, stderr) =
        shoalctl(&["--endpoints", &old.members[0].client_url, "snapshot", "save", &file.display().to_string()]);
    assert!(ok, "snapshot save failed:\n{stdout}\n{stderr}");
    let revision = client.get("key/000000", None).await.expect("get").header().expect("header").revision();
    let (ok, status, _) = shoalctl(&["snapshot", "status", &file.display().to_string()]);
    assert!(ok && status.contains(&format!("revision:   {revision}")), "{status}");
    assert!(status.contains("format:     etcd (bbolt)"), "a snapshot in etcd's format: {status}");
    let expected = all_keys(&mut client, revision).await;
    assert_eq!(expected.len(), KEYS);
    let mut expected_leases: Vec<i64> =
        client.leases().await.expect("leases").leases().iter().map(|l| l.id()).collect();
    expected_leases.sort();
    let old_cluster_id = client.status().await.expect("status").header().expect("header").cluster_id();

    // Disaster: every member and its data are gone.
    drop(client);
    for i in 0..3 {
        old.kill(i);
        std::fs::remove_dir_all(&old.members[i].data_dir).expect("delete the data dir");
    }

    let mut new = Cluster::prepare(3, &[]);
    let took: Vec<Duration> = (0..3).map(|i| restore_member(&file, &new, i)).collect();
    eprintln!("restore of {KEYS} keys x {REVISIONS_PER_KEY} revisions took {took:?} per member");
    let started = std::time::Instant::now();
    for i in 0..3 {
        new.restart(i);
    }
    new.leader().await;
    eprintln!("the restored cluster agreed on a leader after {:?}", started.elapsed());
    let mut client = new.client().await;
    let status = client.status().await.expect("status");
    assert_ne!(status.header().expect("header").cluster_id(), old_cluster_id, "a restored cluster is a new cluster");
    assert_eq!(all_keys(&mut client, revision).await, expected, "every key, value and revision is back");
    let mut got_leases: Vec<i64> = client.leases().await.expect("leases").leases().iter().map(|l| l.id()).collect();
    got_leases.sort();
    assert_eq!(got_leases, expected_leases);
    let ttl = client.lease_time_to_live(expected_leases[0], None).await.expect("lease ttl");
    assert!(ttl.ttl() > 0, "leases live on after the restore");

    // Watchers resume from the snapshot's revision + 1.
    let mut stream = client
        .watch("", Some(WatchOptions::new().with_prefix().with_start_revision(revision + 1)))
        .await
        .expect("watch");
    client.put("after-restore", "1", None).await.expect("put");
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let response = stream.message().await.expect("watch stream").expect("a response");
            if let Some(event) = response.events().first() {
                return event.clone();
            }
        }
    })
    .await
    .expect("a watch event");
    assert_eq!(event.event_type(), EventType::Put);
    let kv = event.kv().expect("kv");
    assert_eq!((kv.key(), kv.mod_revision()), (&b"after-restore"[..], revision + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_saves_what_shoalctl_restores_and_bad_files_are_refused() {
    let cluster = Cluster::start(1).await;
    let ctl = Etcdctl::new(cluster.endpoints_csv());
    for i in 0..50 {
        assert!(ctl.run(&["put", &format!("k{i}"), &format!("v{i}")]).success);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("etcdctl.db");
    let saved = ctl.run(&["snapshot", "save", &file.display().to_string()]);
    assert!(saved.success, "{saved:?}");
    let good = std::fs::read(&file).expect("read snapshot");

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("garbage", b"neither a Shoal nor an etcd snapshot, just text".to_vec(), "is not an etcd or Shoal snapshot"),
        ("flipped", flipped, "checksum does not match"),
        ("truncated", good[..good.len() - 100].to_vec(), "the database is longer than the file (truncated)"),
        ("stub", good[..20].to_vec(), "too short"),
        ("empty", Vec::new(), "is empty"),
    ];
    for (name, bytes, why) in cases {
        let bad = refused_leaving_nothing(dir.path(), name, &bytes, why);
        let (ok, _, stderr) = shoalctl(&["snapshot", "status", &bad.display().to_string()]);
        assert!(!ok && stderr.contains(why), "{name}: status {stderr}");
    }

    // The file etcdctl saved restores, and the member serves its keys.
    let mut restored = Cluster::prepare(1, &[]);
    restore_member(&file, &restored, 0);
    let member = &restored.members[0];
    let (ok, _, stderr) = restore_alone(&file, &member.data_dir.clone());
    assert!(!ok && stderr.contains("exists"), "a restore never overwrites a data dir: {stderr}");
    restored.restart(0);
    restored.leader().await;
    let got = Etcdctl::new(restored.endpoints_csv()).run(&["get", "k", "--prefix", "--keys-only"]);
    assert_eq!(got.stdout.lines().filter(|l| !l.is_empty()).count(), 50, "{got:?}");

    // A member added to the restored cluster gets the restored data too (by
    // snapshot: no log holds it).
    let mut client = restored.client().await;
    let joiner = restored.prepare_joiner(&[]);
    let peer = restored.members[joiner].peer_url.clone();
    let options = etcd_client::MemberAddOptions::new().with_is_learner();
    client.member_add([peer], Some(options)).await.expect("member add");
    restored.restart(joiner);
    let mut on_joiner = restored.member_client(joiner).await;
    let count = shoal_tests::wait::until(Duration::from_secs(30), "the new member to hold the restored keys", || {
        let mut c = on_joiner.clone();
        async move {
            let options = GetOptions::new().with_prefix().with_count_only().with_serializable();
            c.get("k", Some(options)).await.ok().map(|r| r.count()).filter(|n| *n == 50)
        }
    })
    .await;
    assert_eq!(count, 50);
    on_joiner.status().await.expect("status");
}
