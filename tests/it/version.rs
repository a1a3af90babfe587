//! Shoal reports itself as etcd 3.5.13, and keeps what that release
//! promises beyond 3.4, which clients gate on the version: kube-apiserver
//! serves consistent reads from its watch cache only from 3.5.13 on, because
//! from then a progress request is answered only once every watcher of the
//! stream has been handed everything up to the revision it names. (The Lock
//! and Election services and their errors are `lock_election`'s; periodic
//! progress notifications are `watch`'s.)

use std::process::Command;

use etcd_client::WatchOptions;
use shoal_tests::Cluster;

use crate::watch::next_matching;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoal_reports_etcd_3_5_13_and_answers_progress_requests_after_catch_up() {
    let cluster = Cluster::start(3).await;
    let mut client = cluster.client().await;
    let status = client.status().await.expect("status");
    assert_eq!(status.version(), "3.5.13");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", &format!("{}/version", cluster.endpoints()[0])])
        .output()
        .expect("run curl (./dev test installs it)");
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"etcdserver":"3.5.13","etcdcluster":"3.5.0"}"#);

    // A watcher 300 revisions behind, asked for progress at once: the answer
    // (watch id -1) comes after every event up to the revision it names.
    for i in 0..300 {
        client.put(format!("h/{i:03}"), "v", None).await.expect("put");
    }
    let current = client.get("h/", Some(etcd_client::GetOptions::new().with_prefix().with_count_only())).await;
    let current = current.expect("count").header().expect("header").revision();
    let mut stream =
        client.watch("h/", Some(WatchOptions::new().with_prefix().with_start_revision(1))).await.expect("watch");
    stream.request_progress().await.expect("progress request");
    let mut events_before = 0;
    let progress = next_matching(&mut stream, |r| {
        events_before += r.events().len();
        r.watch_id() == -1
    })
    .await;
    assert_eq!(progress.header().expect("header").revision(), current);
    assert_eq!(events_before, 300, "every event up to the progress revision came first");
}
