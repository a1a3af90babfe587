//! The Python clients `aetcd` (asyncio, gRPC) and `etcd3gw` (the JSON
//! gateway only) get the same answers from Shoal as from etcd 3.4. The
//! sequences are in `tests/clients/python`; `scripts/prereqs.sh test`
//! installs the pinned clients in a venv beside them.

use std::path::PathBuf;
use std::process::Command;

use shoal_tests::answers::{assert_same_answers, script_answers};
use shoal_tests::{Cluster, Etcd};

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients").join("python")
}

/// `script`'s answers against the member at `client_url`, one per line.
fn run_script(script: &str, client_url: &str) -> Vec<String> {
    let dir = client_dir();
    let python = dir.join(".venv").join("bin").join("python");
    assert!(python.exists(), "the Python clients are missing: run scripts/prereqs.sh test (./dev test does)");
    let (host, port) = client_url
        .trim_start_matches("http://")
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("a client URL with a port: {client_url}"));
    let mut run = Command::new(&python);
    run.arg(script).args([host, port]).current_dir(&dir);
    script_answers(&mut run, &format!("{script} against {client_url}"))
}

/// Runs `script` against etcd and a 3-member Shoal, each fresh, and
/// compares every answer.
async fn same_answers(script: &'static str, at_least: usize) {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(3));
    let expected = tokio::task::spawn_blocking(move || run_script(script, &etcd.client_url)).await.expect("etcd run");
    assert!(expected.len() >= at_least, "{script} ran every step on etcd: {expected:?}");
    let url = cluster.members[0].client_url.clone();
    let got = tokio::task::spawn_blocking(move || run_script(script, &url)).await.expect("shoal run");
    assert_same_answers(&got, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aetcd_sees_what_it_sees_on_etcd() {
    same_answers("aetcd_script.py", 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd3gw_over_the_json_gateway_sees_what_it_sees_on_etcd() {
    same_answers("etcd3gw_script.py", 38).await;
}
