//! The npm `etcd3` client (Node.js) gets the same answers from Shoal as
//! from etcd 3.4: KV, the txn builder, the watch builder with resume, leases
//! with keepalive, locks, elections, auth and namespaces. The sequence is
//! `tests/clients/node/script.mjs`; `scripts/prereqs.sh test` installs the
//! pinned client beside it. Its watch also resumes across member kills
//! (`watch_resume.mjs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etcd_client::GetOptions;
use shoal_tests::answers::{assert_same_answers, script_answers};
use shoal_tests::process::Process;
use shoal_tests::{wait, Cluster, Etcd};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_npm_etcd3_watch_resumes_across_member_kills_without_loss_or_repeats() {
    let mut cluster = Cluster::start(3).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("watch.out");
    let script = client_dir().join("watch_resume.mjs").display().to_string();
    let watcher = Process::spawn(Path::new("node"), &[script, cluster.endpoints_csv()], log.clone());
    let output = || std::fs::read_to_string(&log).unwrap_or_default();
    wait::until(Duration::from_secs(20), "the watch to start", || async {
        output().contains("watching").then_some(())
    })
    .await;

    // Each round kills one member, so the member serving the watch dies in
    // one of them; the writes go through another member, once each.
    let mut expected = Vec::new();
    for round in 0..3 {
        let mut writer = cluster.member_client((round + 1) % 3).await;
        for i in 0..10 {
            if i == 5 {
                let killed = cluster.member_id(round).await.expect("member id");
                cluster.kill(round);
                wait::until(Duration::from_secs(30), "a live leader", || async {
                    let leader = cluster.status((round + 1) % 3).await?.leader();
                    (leader != 0 && leader != killed).then_some(())
                })
                .await;
            }
            let key = format!("r/{round}-{i}");
            let put = writer.put(key.clone(), "v", None).await.expect("put through a live member");
            expected.push(format!("put {key} {}", put.header().map_or(0, |h| h.revision())));
        }
        cluster.restart(round);
        wait::until(Duration::from_secs(30), "the member to serve again", || async {
            let mut client = cluster.member_client(round).await;
            client.get("r/", Some(GetOptions::new().with_serializable())).await.ok().map(|_| ())
        })
        .await;
    }
    let done = cluster.member_client(0).await.put("r/done", "v", None).await.expect("put");
    expected.push(format!("put r/done {}", done.header().map_or(0, |h| h.revision())));
    wait::until(Duration::from_secs(60), "the watch to see r/done", || async {
        output().contains("put r/done").then_some(())
    })
    .await;
    drop(watcher);
    let text = output();
    let puts: Vec<&str> = text.lines().filter(|l| l.starts_with("put ")).collect();
    assert_eq!(puts, expected, "every put once, in order:\n{text}");
    assert!(text.contains("disconnected"), "the watch lost its member once at least:\n{text}");
}
