//! `shoal-agent --hollow N`: many nodes from one agent process, with the
//! real pod loop and a runtime that runs nothing, against the real
//! scheduler and controllers. Needs no root.

use std::time::Duration;

use shoal_client::Api;
use shoal_proto::objects::{Deployment, Lease, Node, Pod};
use shoal_tests::cluster::agent_binary;
use shoal_tests::control_plane::{deployment, store, Controllers};
use shoal_tests::process::Process;
use shoal_tests::{wait, Cluster};

const NODES: usize = 20;
const REPLICAS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_register_beat_and_run_a_deployments_pods() {
    let cluster = Cluster::start(1).await;
    let endpoints = cluster.endpoints_csv();
    let _controllers = Controllers::start(&endpoints, cluster.dir(), "c1", &[]);
    let data_dir = cluster.dir().join("hollow");
    let args: Vec<String> = [
        "--hollow",
        &NODES.to_string(),
        "--node-name",
        "hollow",
        "--endpoints",
        &endpoints,
        "--data-dir",
        data_dir.to_str().expect("utf-8 path"),
        "--cpus",
        "4",
        "--memory",
        "8Gi",
        "--heartbeat-ttl",
        "4s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut hollow = Process::spawn(&agent_binary(), &args, cluster.dir().join("hollow.log"));
    let store = store(&cluster.endpoints());
    let (nodes, leases, pods) =
        (Api::<Node>::new(store.clone()), Api::<Lease>::new(store.clone()), Api::<Pod>::new(store.clone()));

    wait::until(Duration::from_secs(30), "every hollow node Ready with its heartbeat", || async {
        let ready = nodes.list(None).await.ok()?.items.iter().filter(|n| n.is_ready()).count();
        let beating = leases.list(None).await.ok()?.items.len();
        (ready == NODES && beating == NODES).then_some(())
    })
    .await;

    let deployments = Api::<Deployment>::new(store.clone());
    deployments.create(&deployment("spread", REPLICAS as i32, "100m")).await.expect("create the deployment");
    let running = wait::until(Duration::from_secs(60), "every replica Running and Ready on a hollow node", || async {
        let list = pods.list(None).await.ok()?.items;
        let good = list.iter().filter(|p| {
            p.spec.node_name.as_deref().is_some_and(|n| n.starts_with("hollow-"))
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.is_ready()
        });
        (good.count() == REPLICAS && list.len() == REPLICAS).then_some(list)
    })
    .await;
    let used: std::collections::BTreeSet<_> = running.iter().filter_map(|p| p.spec.node_name.clone()).collect();
    assert!(used.len() >= NODES / 2, "the scheduler spread the pods: {used:?}");

    // Deleted pods are stopped by their hollow node and removed from the store.
    deployments.delete("default", "spread", None).await.expect("delete the deployment");
    wait::until(Duration::from_secs(60), "every pod gone", || async {
        pods.list(None).await.ok()?.items.is_empty().then_some(())
    })
    .await;

    // One process: when it stops, every node's heartbeat stops with it.
    hollow.kill();
    wait::until(Duration::from_secs(30), "every heartbeat Lease gone", || async {
        leases.list(None).await.ok()?.items.is_empty().then_some(())
    })
    .await;
}
