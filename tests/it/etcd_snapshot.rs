//! Snapshots etcd saved, read by Shoal: `shoalctl snapshot status` on a file
//! that etcd 3.4's `etcdctl snapshot save` wrote reports what
//! `etcdctl snapshot status` reports about it (hash, revision, keys, size),
//! and a damaged one is refused.

use shoal_tests::cluster::shoalctl;
use shoal_tests::{Etcd, Etcdctl};

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

    // Restoring one is not there yet: refused, nothing written.
    let data_dir = dir.path().join("restored.etcd");
    let (ok, _, stderr) = shoalctl(&["snapshot", "restore", &path, "--data-dir", &data_dir.display().to_string()]);
    assert!(!ok && stderr.contains("is an etcd snapshot"), "{stderr}");
    assert!(!data_dir.exists());

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
