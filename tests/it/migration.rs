//! Moving a live etcd's keys into Shoal and back with `etcdctl make-mirror`
//! (docs/migrating-from-etcd.md, the online paths): the mirror copies what
//! is there, then follows every later put and delete, in both directions.

use std::path::Path;
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use shoal_tests::process::Process;
use shoal_tests::{wait, Cluster, Etcd};

/// Every key under `prefix` with its value.
async fn pairs(client: &Client, prefix: &str) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut client = client.clone();
    let found = client.get(prefix, Some(GetOptions::new().with_prefix())).await.ok()?;
    Some(found.kvs().iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())).collect())
}

async fn until_mirrored(from: &Client, to: &Client, what: &str) {
    wait::until(Duration::from_secs(30), what, || async {
        let (a, b) = (pairs(from, "app/").await?, pairs(to, "app/").await?);
        (a == b).then_some(())
    })
    .await;
}

/// `etcdctl make-mirror` from `source` into `destination`, until dropped.
fn mirror(source: &str, destination: &str, log: &Path) -> Process {
    let etcdctl = std::env::var("ETCDCTL_BIN").unwrap_or_else(|_| "/usr/bin/etcdctl".into());
    let args = [format!("--endpoints={source}"), "make-mirror".into(), destination.into()];
    Process::spawn(Path::new(&etcdctl), &args, log.to_path_buf())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_mirror_moves_a_live_etcd_into_shoal_and_back() {
    let (etcd, cluster) = tokio::join!(Etcd::start(), Cluster::start(3));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut source = Client::connect([etcd.client_url.clone()], None).await.expect("connect to etcd");
    let mut shoal = cluster.client().await;
    for i in 0..500 {
        source.put(format!("app/{i:04}"), format!("v{i}"), None).await.expect("put");
    }

    // In: what is there, then every change while the mirror runs.
    let inbound = mirror(&etcd.client_url, &cluster.endpoints()[0], &dir.path().join("in.log"));
    until_mirrored(&source, &shoal, "etcd's keys in Shoal").await;
    source.put("app/0001", "changed", None).await.expect("put");
    source.delete("app/0002", None).await.expect("delete");
    source.put("app/new", "late", None).await.expect("put");
    until_mirrored(&source, &shoal, "etcd's later changes in Shoal").await;
    drop(inbound);

    // Cut over: clients now write to Shoal. Back: a mirror the other way.
    shoal.put("app/after", "cutover", None).await.expect("put");
    let fresh = Etcd::start().await;
    let back = Client::connect([fresh.client_url.clone()], None).await.expect("connect to the fresh etcd");
    let outbound = mirror(&cluster.endpoints_csv(), &fresh.client_url, &dir.path().join("out.log"));
    until_mirrored(&shoal, &back, "Shoal's keys in a fresh etcd").await;
    shoal.delete("app/0003", None).await.expect("delete");
    until_mirrored(&shoal, &back, "Shoal's later changes in etcd").await;
    drop(outbound);
    assert_eq!(pairs(&back, "app/").await.map(|p| p.len()), Some(500));
}
