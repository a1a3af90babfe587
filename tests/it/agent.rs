//! The node agent's registration and heartbeat on a real store.

use std::time::Duration;

use shoal_agent::config::Cli;
use shoal_agent::node;
use shoal_client::Api;
use shoal_proto::objects::{Lease, Node};
use shoal_tests::control_plane::store;
use shoal_tests::{wait, Cluster};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_registers_heartbeats_and_goes_silent_when_stopped() {
    let cluster = Cluster::start(3).await;
    let cli = <Cli as clap::Parser>::parse_from([
        "shoal-agent",
        "--node-name",
        "n1",
        "--cpus",
        "2",
        "--memory",
        "4Gi",
        "--heartbeat-ttl",
        "2s",
    ]);
    let config = cli.validate().expect("valid flags");
    let nodes: Api<Node> = Api::new(store(&cluster.endpoints()));
    let registered = node::register(&nodes, &node::describe(&config, "127.0.0.1")).await.expect("register");
    assert!(registered.is_ready());
    let status = registered.status.clone().expect("status");
    assert_eq!((status.allocatable["cpu"].as_str(), status.allocatable["memory"].as_str()), ("2", "4Gi"));
    // Registering again (an agent restart) updates the status and keeps the spec.
    nodes.modify("", "n1", |n| n.spec.unschedulable = true).await.expect("cordon");
    let again = node::register(&nodes, &node::describe(&config, "127.0.0.2")).await.expect("register again");
    assert!(again.spec.unschedulable, "the operator's cordon stays");
    assert_eq!(again.status.expect("status").addresses[0].address, "127.0.0.2");

    let (stop, shutdown) = watch::channel(false);
    let beating =
        tokio::spawn(node::heartbeat(store(&cluster.endpoints()), "n1".into(), config.heartbeat_ttl, shutdown));
    let leases: Api<Lease> = Api::new(store(&cluster.endpoints()));
    wait::until(Duration::from_secs(10), "the heartbeat Lease", || async {
        leases.get_opt("", "n1").await.ok().flatten()
    })
    .await;
    // It outlives its TTL while beating...
    tokio::time::sleep(config.heartbeat_ttl + Duration::from_secs(1)).await;
    assert!(leases.get_opt("", "n1").await.expect("get").is_some(), "renewed every second");
    // ...and vanishes once the agent stops.
    let _ = stop.send(true);
    beating.await.expect("the heartbeat stops");
    wait::until(Duration::from_secs(15), "the Lease to expire", || async {
        leases.get_opt("", "n1").await.ok().filter(Option::is_none).map(|_| ())
    })
    .await;
    let bad = <Cli as clap::Parser>::parse_from(["shoal-agent", "--node-name", "Bad_Name"]);
    assert!(bad.validate().is_err_and(|e| e.contains("not a valid node name")));
}
