//! The npm `etcd3` client (Node.js) gets the same answers from Shoal as
//! from etcd 3.4: KV, the txn builder, the watch builder with resume, leases
//! with keepalive, locks, elections, auth and namespaces. The sequence is
//! `tests/clients/node/script.mjs`; `scripts/prereqs.sh test` installs the
//! pinned client beside it.

use std::path::PathBuf;
use std::process::Command;

use shoal_tests::answers::{assert_same_answers, script_answers};
use shoal_tests::{Cluster, Etcd};

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients").join("node")
}

/// The script's answers against `endpoints`, one per line.
fn run_script(endpoints: &str) -> Vec<String> {
    let dir = client_dir();
    assert!(
        dir.join("node_modules").join("etcd3").exists(),
        "the etcd3 package is missing: run scripts/prereqs.sh test (./dev test does)"
    );
    let mut node = Command::new("node");
    node.arg("script.mjs").arg(endpoints).current_dir(&dir);
    script_answers(&mut node, &format!("the npm etcd3 script against {endpoints} (node from scripts/prereqs.sh test)"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_npm_etcd3_client_sees_what_it_sees_on_etcd() {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(3));
    let expected = tokio::task::spawn_blocking(move || run_script(&etcd.client_url)).await.expect("etcd run");
    let endpoints = cluster.endpoints_csv();
    let got = tokio::task::spawn_blocking(move || run_script(&endpoints)).await.expect("shoal run");
    // Every step ran to its end on etcd: a step failing alike on both would
    // prove nothing.
    let failed: Vec<&String> = expected.iter().filter(|l| l.contains(" failed: ")).collect();
    assert!(failed.is_empty(), "steps failed on etcd itself: {failed:?}");
    assert!(expected.len() > 50, "the script ran every step: {expected:?}");
    assert_same_answers(&got, &expected);
}
