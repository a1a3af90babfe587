//! The node agent on a real store: registration and heartbeat, and a real
//! `shoal-agent` surviving its own death and its node's.

use std::time::{Duration, Instant};

use shoal_agent::config::Cli;
use shoal_agent::node;
use shoal_client::Api;
use shoal_proto::objects::{Deployment, Lease, Node, Pod};
use shoal_tests::agents::{alive, can_run_containers, running_pid, Agent};
use shoal_tests::control_plane::{deployment, store, Controllers};
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
    let every = Duration::from_secs(1);
    let beating =
        tokio::spawn(node::heartbeat(store(&cluster.endpoints()), "n1".into(), config.heartbeat_ttl, every, shutdown));
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

/// Creates pod `name` bound to `node`, running `command` on the host image.
async fn create_pod(api: &Api<Pod>, name: &str, node: &str, command: &[&str], grace: i64) {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": grace,
                 "containers": [{"name": "main", "command": command}]}
    }))
    .expect("a pod");
    api.create(&pod).await.expect("create the pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_its_containers_and_finishes_what_changed_meanwhile() {
    if !can_run_containers() {
        return;
    }
    let cluster = Cluster::start(1).await;
    let mut agent = Agent::start(&cluster.endpoints_csv(), cluster.dir(), "n1", &[]);
    let api: Api<Pod> = Api::new(store(&cluster.endpoints()));
    for name in ["keep", "marked", "forced"] {
        create_pod(&api, name, "n1", &["/bin/sleep", "3600"], 2).await;
    }
    let mut pids = std::collections::HashMap::new();
    for name in ["keep", "marked", "forced"] {
        let pod = wait::until(Duration::from_secs(30), "the pods to run", || async {
            api.get_opt("default", name).await.ok().flatten().filter(|p| running_pid(p).is_some())
        })
        .await;
        pids.insert(name, running_pid(&pod).expect("pid"));
    }
    let before = agent.container_pids();
    assert_eq!(before.len(), 3);

    agent.kill();
    // While it is down: one pod is deleted gracefully (marked), one at once.
    api.terminate("default", "marked", None).await.expect("mark");
    api.terminate("default", "forced", Some(0)).await.expect("force");
    assert!(alive(pids["marked"]) && alive(pids["forced"]), "nothing stops them while the agent is down");
    agent.restart();

    wait::until(Duration::from_secs(30), "the deleted pods' containers to stop", || async {
        (!alive(pids["marked"]) && !alive(pids["forced"])).then_some(())
    })
    .await;
    wait::until(Duration::from_secs(30), "the marked pod to be removed", || async {
        api.get_opt("default", "marked").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(agent.container_pids(), vec![pids["keep"]], "the same process, adopted, and no duplicate");
    let keep = api.get("default", "keep").await.expect("keep");
    assert_eq!(running_pid(&keep), Some(pids["keep"]));
    assert_eq!(keep.status.expect("status").container_statuses[0].restart_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_agents_pods_move_to_another_and_it_kills_them_when_it_returns() {
    if !can_run_containers() {
        return;
    }
    let cluster = Cluster::start(3).await;
    let mut a = Agent::start(&cluster.endpoints_csv(), cluster.dir(), "n1", &["--cpus", "4", "--memory", "4Gi"]);
    let b = Agent::start(&cluster.endpoints_csv(), cluster.dir(), "n2", &["--cpus", "4", "--memory", "4Gi"]);
    let _controllers = Controllers::start(&cluster.endpoints_csv(), cluster.dir(), "c1", &[]);
    let deployments: Api<Deployment> = Api::new(store(&cluster.endpoints()));
    let pods: Api<Pod> = Api::new(store(&cluster.endpoints()));
    deployments.create(&deployment("web", 6, "100m")).await.expect("create");
    let ready_on = |node: Option<&'static str>| {
        let pods = pods.clone();
        async move {
            let list = pods.list(Some("default")).await.ok()?.items;
            let ready: Vec<Pod> = list
                .into_iter()
                .filter(|p| p.is_ready() && p.metadata.deletion_timestamp.is_none())
                .filter(|p| node.is_none_or(|n| p.spec.node_name.as_deref() == Some(n)))
                .collect();
            (ready.len() == 6).then_some(ready)
        }
    };
    let first = wait::until(Duration::from_secs(60), "six ready pods", || ready_on(None)).await;
    assert!(first.iter().any(|p| p.spec.node_name.as_deref() == Some("n1")), "spread over both nodes");
    let stale = a.container_pids();
    assert!(!stale.is_empty());

    let died = Instant::now();
    a.kill();
    wait::until(Duration::from_secs(30), "six ready pods on n2", || ready_on(Some("n2"))).await;
    let moved = died.elapsed();
    eprintln!("a dead agent's pods ran elsewhere after {moved:?}");
    assert!(moved < Duration::from_secs(15), "the pods ran elsewhere within 15 s: {moved:?}");
    assert!(stale.iter().all(|pid| alive(*pid)), "a dead agent's containers are left alone meanwhile");

    a.restart();
    wait::until(Duration::from_secs(30), "the returning agent to kill its stale pods", || async {
        stale.iter().all(|pid| !alive(*pid)).then_some(())
    })
    .await;
    assert_eq!(b.container_pids().len(), 6, "no pod runs twice");
}
