//! Snapshots in etcd's format, both ways. A file that etcd 3.4's
//! `etcdctl snapshot save` wrote: `shoalctl snapshot status` reports what
//! `etcdctl snapshot status` reports about it (hash, revision, keys, size),
//! and `shoalctl snapshot restore` of it gives Shoal members that answer what
//! the etcd it came from answers; a damaged one is refused. A snapshot saved
//! from Shoal: etcdctl reads it, and `etcdctl snapshot restore` of it gives
//! an etcd that answers what Shoal answered.

use etcd_client::{Client, ConnectOptions, DeleteOptions, LeaseTimeToLiveOptions, PermissionType, PutOptions};
use shoal_tests::cluster::shoalctl;
use shoal_tests::{Cluster, Etcd, Etcdctl};

use crate::backup::{refused_leaving_nothing, restore_member};

/// The value after `label` on a line of `shoalctl snapshot status`.
fn field<'a>(status: &'a str, label: &str) -> &'a str {
    let line = status.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} in {status}"));
    line[label.len()..].split_whitespace().next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoalctl_reads_an_etcd_snapshot_as_etcdctl_does() {
    let etcd = Etcd::start().await;
    let ctl = Etcdctl::new(etcd.client_url.clone());
    // Enough keys for branch pages, a big value for overflow pages, history,
    // a delete, a lease and a user: every bucket etcd fills.
    let mut client = etcd_client::Client::connect([etcd.client_url.clone()], None).await.expect("connect");
    for i in 0..3000 {
        client.put(format!("key/{i:05}"), format!("value {i}"), None).await.expect("put");
    }
    client.put("big", vec![b'x'; 20_000], None).await.expect("put");
    client.put("key/00001", "again", None).await.expect("put");
    client.delete("key/00002", None).await.expect("delete");
    let lease = client.lease_grant(600, None).await.expect("grant").id();
    let leased = etcd_client::PutOptions::new().with_lease(lease);
    client.put("leased", "v", Some(leased)).await.expect("put");
    client.user_add("alice", "pw", None).await.expect("user");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("etcd.db");
    let path = file.display().to_string();
    let saved = ctl.run(&["snapshot", "save", &path]);
    assert!(saved.success, "{saved:?}");
    let expected = ctl.run(&["snapshot", "status", &path, "-w", "json"]);
    assert!(expected.success, "{expected:?}");
    let expected: serde_json::Value = serde_json::from_str(&expected.stdout).expect("etcdctl's json");

    let (ok, status, stderr) = shoalctl(&["snapshot", "status", &path]);
    assert!(ok, "{stderr}");
    assert_eq!(field(&status, "format:"), "etcd", "{status}");
    assert_eq!(u64::from_str_radix(field(&status, "hash:"), 16).ok(), expected["hash"].as_u64(), "{status}");
    assert_eq!(field(&status, "revision:").parse().ok(), expected["revision"].as_u64(), "{status}");
    assert_eq!(field(&status, "total keys:").parse().ok(), expected["totalKey"].as_u64(), "{status}");
    let size = status.lines().find(|l| l.starts_with("size:")).unwrap_or_default();
    let bytes = expected["totalSize"].as_u64().expect("totalSize");
    assert!(size.contains(&format!("({bytes} bytes)")), "{status} against {bytes}");

    // Damaged copies: the trailer catches a changed byte, and a database
    // cut short is refused without the trailer too.
    let good = std::fs::read(&file).expect("read");
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let cut = &good[..good.len() / 2 / 4096 * 4096];
    for (name, bytes) in [("flipped", flipped.as_slice()), ("cut", cut)] {
        let bad = dir.path().join(name);
        std::fs::write(&bad, bytes).expect("write");
        let (ok, out, stderr) = shoalctl(&["snapshot", "status", &bad.display().to_string()]);
        assert!(!ok, "{name}: {out}");
        assert!(stderr.contains("corrupt") || stderr.contains("truncated"), "{name}: {stderr}");
    }
}

/// Writes to etcd what an etcd user's data holds: history, deletes, leases
/// with keys, a compaction, binary keys and values, users and roles with
/// auth on. Returns the compacted revision.
async fn fill(client: &mut Client) -> i64 {
    for i in 0..300 {
        client.put(format!("key/{i:03}"), format!("value {i}"), None).await.expect("put");
    }
    for i in 0..50 {
        client.put(format!("key/{i:03}"), format!("second {i}"), None).await.expect("put");
    }
    client.delete("key/1", Some(DeleteOptions::new().with_prefix())).await.expect("delete");
    let short = client.lease_grant(600, None).await.expect("grant").id();
    let long = client.lease_grant(3600, None).await.expect("grant").id();
    for (key, lease) in [("leased/a", short), ("leased/b", short), ("leased/c", long), ("leased/d", long)] {
        client.put(key, "v", Some(PutOptions::new().with_lease(lease))).await.expect("put");
    }
    // Moved off its lease, and a leased key deleted: neither stays attached.
    client.put("leased/d", "no lease now", None).await.expect("put");
    client.delete("leased/b", None).await.expect("delete");
    let compacted =
        client.put("marker", "at compaction", None).await.expect("put").header().expect("header").revision();
    client.compact(compacted, None).await.expect("compact");
    client.put("key/000", "after the compaction", None).await.expect("put");
    client.put(vec![0u8, 1, 0xff], vec![0u8, 0, 7], None).await.expect("binary put");
    client.put("leased/e", "v", Some(PutOptions::new().with_lease(short))).await.expect("put");
    client.user_add("root", "rootpw", None).await.expect("user");
    client.user_grant_role("root", "root").await.expect("grant");
    client.role_add("reader").await.expect("role");
    let read = etcd_client::Permission::new(PermissionType::Read, "key/").with_prefix();
    client.role_grant_permission("reader", read).await.expect("permission");
    client.user_add("alice", "alicepw", None).await.expect("user");
    client.user_grant_role("alice", "reader").await.expect("grant");
    client.auth_enable().await.expect("auth enable");
    compacted
}

/// What etcdctl prints for each question, as root.
fn answers(endpoints: &str, compacted: i64) -> Vec<(String, String)> {
    let ctl = Etcdctl::new(endpoints);
    let ids = regex::Regex::new(r#""(cluster_id|member_id|raft_term)":\d+"#).expect("valid regex");
    let at_compaction = format!("--rev={compacted}");
    let before_compaction = format!("--rev={}", compacted - 1);
    let questions: [&[&str]; 9] = [
        &["get", "", "--prefix", "-w", "json"],
        &["get", "key/000", &at_compaction, "-w", "json"],
        &["get", "key/000", &before_compaction],
        &["lease", "list"],
        &["user", "list"],
        &["user", "get", "alice"],
        &["role", "list"],
        &["role", "get", "reader"],
        &["auth", "status"],
    ];
    questions
        .iter()
        .map(|args| {
            let mut with_user = args.to_vec();
            with_user.extend(["--user", "root:rootpw"]);
            let out = ctl.run(&with_user);
            let mut stdout = ids.replace_all(&out.stdout, "\"$1\":N").into_owned();
            if args[0] == "lease" {
                // etcd lists its leases in no particular order.
                let mut lines: Vec<&str> = stdout.lines().collect();
                lines.sort();
                stdout = lines.join("\n");
            }
            // etcdctl's client-side retry log lines carry a time and a random target.
            let errors: Vec<&str> = out.stderr.lines().filter(|l| !l.starts_with('{')).collect();
            (args.join(" "), format!("{stdout}{}", errors.join("\n")))
        })
        .collect()
}

/// Checks that the answers to what [`fill`] wrote are worth comparing.
fn worth_comparing(answers: &[(String, String)]) {
    assert!(answers[0].1.trim_end().ends_with(r#""count":206}"#), "{:?}", answers[0].1.get(..300));
    assert!(answers[2].1.contains("required revision has been compacted"), "{}", answers[2].1);
    assert!(answers[3].1.contains("found 2 leases"), "{}", answers[3].1);
    assert!(answers[4].1.contains("alice") && answers[7].1.contains("key/"), "{answers:?}");
}

/// Every lease's granted TTL and attached keys, sorted.
async fn leases(client: &mut Client) -> Vec<(i64, i64, Vec<Vec<u8>>)> {
    let ids: Vec<i64> = client.leases().await.expect("leases").leases().iter().map(|l| l.id()).collect();
    let mut out = Vec::new();
    for id in ids {
        let ttl = client.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await.expect("ttl");
        let mut keys = ttl.keys().to_vec();
        keys.sort();
        out.push((id, ttl.granted_ttl(), keys));
    }
    out.sort();
    out
}

/// A bbolt database with no bucket at all: two meta pages, an empty
/// freelist and an empty root leaf, as a fresh bbolt file is.
fn bucketless_bbolt() -> Vec<u8> {
    const PAGE: usize = 4096;
    let mut b = vec![0u8; 4 * PAGE];
    let put = |b: &mut Vec<u8>, at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    for (id, flags) in [(2u64, 0x10u16), (3, 0x02)] {
        put(&mut b, id as usize * PAGE, &id.to_le_bytes());
        put(&mut b, id as usize * PAGE + 8, &flags.to_le_bytes());
    }
    for (id, txid) in [(0u64, 2u64), (1, 1)] {
        let page = id as usize * PAGE;
        put(&mut b, page, &id.to_le_bytes());
        put(&mut b, page + 8, &4u16.to_le_bytes());
        let meta = page + 16;
        put(&mut b, meta, &0xED0C_DAEDu32.to_le_bytes());
        put(&mut b, meta + 4, &2u32.to_le_bytes());
        put(&mut b, meta + 8, &(PAGE as u32).to_le_bytes());
        put(&mut b, meta + 16, &3u64.to_le_bytes()); // root bucket's page
        put(&mut b, meta + 32, &2u64.to_le_bytes()); // freelist page
        put(&mut b, meta + 40, &4u64.to_le_bytes()); // pages in use
        put(&mut b, meta + 48, &txid.to_le_bytes());
        let fnv = b[meta..meta + 56]
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3));
        put(&mut b, meta + 56, &fnv.to_le_bytes());
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_snapshot_restored_into_shoal_answers_what_etcd_answers() {
    let etcd = Etcd::start().await;
    let mut client = Client::connect([etcd.client_url.clone()], None).await.expect("connect");
    let compacted = fill(&mut client).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("etcd.db");
    let saved = Etcdctl::new(etcd.client_url.clone()).run(&[
        "snapshot",
        "save",
        &file.display().to_string(),
        "--user",
        "root:rootpw",
    ]);
    assert!(saved.success, "{saved:?}");
    let expected = answers(&etcd.client_url, compacted);
    worth_comparing(&expected);
    let as_root = || Some(ConnectOptions::new().with_user("root", "rootpw"));
    let mut etcd_root = Client::connect([etcd.client_url.clone()], as_root()).await.expect("connect");
    let expected_leases = leases(&mut etcd_root).await;
    assert_eq!(expected_leases.len(), 2, "{expected_leases:?}");

    let mut cluster = Cluster::prepare(3, &[]);
    for i in 0..3 {
        restore_member(&file, &cluster, i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.leader().await;
    let got = answers(&cluster.endpoints_csv(), compacted);
    for ((question, want), (_, have)) in expected.iter().zip(&got) {
        assert_eq!(have, want, "etcdctl {question}: Shoal (left) and etcd (right) differ");
    }
    let mut shoal_root = Client::connect(cluster.endpoints(), as_root()).await.expect("connect");
    assert_eq!(leases(&mut shoal_root).await, expected_leases, "leases, their TTLs and keys");

    // The restored history goes on where etcd's did.
    let next = |r: etcd_client::PutResponse| r.header().map(|h| h.revision());
    let on_etcd = etcd_root.put("after", "restore", None).await.expect("put");
    let on_shoal = shoal_root.put("after", "restore", None).await.expect("put");
    assert_eq!(next(on_shoal), next(on_etcd));

    // Bad files: refused with what is wrong, and nothing left behind.
    let good = std::fs::read(&file).expect("read");
    let mut not_bbolt_inside = good[..8192].to_vec();
    not_bbolt_inside[20..].fill(0x5a);
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("truncated", good[..good.len() / 2 / 4096 * 4096].to_vec(), "truncated"),
        ("garbage", not_bbolt_inside, "no valid bbolt meta page"),
        (
            "bucketless",
            bucketless_bbolt(),
            "is not an etcd or Shoal snapshot: it is a bbolt database without etcd's \"key\" bucket",
        ),
    ];
    for (name, bytes, why) in cases {
        refused_leaving_nothing(dir.path(), name, &bytes, why);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shoal_snapshot_is_restored_by_etcdctl_into_an_etcd_that_answers_alike() {
    let cluster = Cluster::start(3).await;
    let mut client = Client::connect(cluster.endpoints(), None).await.expect("connect");
    let compacted = fill(&mut client).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("shoal.db");
    let path = file.display().to_string();
    let ctl = Etcdctl::new(cluster.members[0].client_url.clone());
    let saved = ctl.run(&["snapshot", "save", &path, "--user", "root:rootpw"]);
    assert!(saved.success, "{saved:?}");

    // etcd's tool reads it, and Shoal's reads it the same.
    let status = ctl.run(&["snapshot", "status", &path, "-w", "json"]);
    assert!(status.success, "{status:?}");
    let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("etcdctl's json");
    let expected = answers(&cluster.endpoints_csv(), compacted);
    worth_comparing(&expected);
    let revision = regex::Regex::new(r#""revision":(\d+)"#).expect("valid regex");
    let current = revision.captures(&expected[0].1).and_then(|c| c[1].parse::<u64>().ok());
    assert_eq!(status["revision"].as_u64(), current, "{status}");
    let (ok, shoal_status, stderr) = shoalctl(&["snapshot", "status", &path]);
    assert!(ok, "{stderr}");
    assert_eq!(u64::from_str_radix(field(&shoal_status, "hash:"), 16).ok(), status["hash"].as_u64());
    assert_eq!(field(&shoal_status, "total keys:").parse().ok(), status["totalKey"].as_u64());

    // etcdctl snapshot restore gives an etcd that answers what Shoal answered.
    let as_root = || Some(ConnectOptions::new().with_user("root", "rootpw"));
    let mut shoal_root = Client::connect(cluster.endpoints(), as_root()).await.expect("connect");
    let expected_leases = leases(&mut shoal_root).await;
    assert_eq!(expected_leases.len(), 2, "{expected_leases:?}");
    let etcd = Etcd::start_restored(&file).await;
    let got = answers(&etcd.client_url, compacted);
    for ((question, want), (_, have)) in expected.iter().zip(&got) {
        assert_eq!(have, want, "etcdctl {question}: etcd (left) and Shoal (right) differ");
    }
    let mut etcd_root = Client::connect([etcd.client_url.clone()], as_root()).await.expect("connect");
    assert_eq!(leases(&mut etcd_root).await, expected_leases, "leases, their TTLs and keys");
    let next = |r: etcd_client::PutResponse| r.header().map(|h| h.revision());
    let on_shoal = shoal_root.put("after", "restore", None).await.expect("put");
    let on_etcd = etcd_root.put("after", "restore", None).await.expect("put");
    assert_eq!(next(on_etcd), next(on_shoal));
}
