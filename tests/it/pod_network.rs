//! The pod network on real namespaces: pods with addresses of their own on
//! two nodes' bridges, reaching each other and reached from the host; what
//! an agent restart keeps and a deleted pod gives back; an exhausted or
//! overlapping pod CIDR. These need root and return early without it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use shoal_agent::net::cidr::Cidr;
use shoal_agent::net::link;
use shoal_client::Api;
use shoal_proto::objects::{Node, Pod};
use shoal_tests::agents::{alive, busybox_rootfs, can_run_containers, pod_cidr, Agent};
use shoal_tests::control_plane::store;
use shoal_tests::services::http_get;
use shoal_tests::{wait, Cluster};

/// Creates pod `name` on `node` with `spec` (nodeName is filled in).
async fn create(api: &Api<Pod>, name: &str, node: &str, mut spec: Value) -> Pod {
    spec["nodeName"] = json!(node);
    spec["terminationGracePeriodSeconds"] = json!(1);
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("a pod");
    api.create(&pod).await.expect("create the pod")
}

async fn until_pod(api: &Api<Pod>, name: &str, what: &str, test: impl Fn(&Pod) -> bool) -> Pod {
    wait::until(Duration::from_secs(30), what, || async {
        api.get_opt("default", name).await.ok().flatten().filter(|p| test(p))
    })
    .await
}

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

fn running(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.first())
        .and_then(|c| c.state.as_ref()?.running.as_ref())
        .is_some()
}

/// A busybox web server answering `GET /` with its hostname, on 8080.
fn web_server(root: &Path) -> Value {
    json!({"containers": [{
        "name": "main", "image": root.to_str(),
        "command": ["sh", "-c", "hostname > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"],
        "ports": [{"name": "http", "containerPort": 8080}]
    }]})
}

/// Whether anything of pod `uid`'s network is left on the host.
fn network_left(uid: &str) -> bool {
    link::netns_path(uid).exists() || link::link_exists(&link::host_veth(uid))
}

/// The addresses an agent holds, from its data dir.
fn held(agent: &Agent) -> usize {
    std::fs::read_dir(agent.data_dir.join("net/addresses"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<Ipv4Addr>().is_ok())).count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_two_nodes_reach_each_other_by_pod_ip_and_leave_nothing_behind() {
    if !can_run_containers() {
        return;
    }
    let cluster = Cluster::start(1).await;
    let root = busybox_rootfs(cluster.dir());
    let mut n1 = Agent::start(&cluster.endpoints_csv(), cluster.dir(), "n1", &[]);
    let n2 = Agent::start(&cluster.endpoints_csv(), cluster.dir(), "n2", &[]);
    let api: Api<Pod> = Api::new(store(&cluster.endpoints()));
    let nodes: Api<Node> = Api::new(store(&cluster.endpoints()));

    create(&api, "server", "n1", web_server(&root)).await;
    let server =
        until_pod(&api, "server", "the server to run with an address", |p| running(p) && pod_ip(p).is_some()).await;
    let server_ip = pod_ip(&server).expect("podIP");
    let status = server.status.as_ref().expect("status");
    assert_eq!(status.pod_ips.iter().map(|p| p.ip.as_str()).collect::<Vec<_>>(), [server_ip.to_string()]);
    let n1_node = nodes.get("", "n1").await.expect("node n1");
    let n1_cidr: Cidr = n1_node.spec.pod_cidr.as_deref().expect("n1's podCIDR").parse().expect("CIDR");
    assert!(n1_cidr.contains(server_ip), "{server_ip} in n1's {n1_cidr}");
    assert!(link::netns_path(&server.metadata.uid).exists(), "the pod's namespace is named after its uid");

    // From the host, straight to the pod's address.
    let address = SocketAddr::from((server_ip, 8080));
    let answer =
        wait::until(Duration::from_secs(20), "the server to answer at its pod IP", || async { http_get(address) })
            .await;
    assert_eq!(answer, "server");

    // From a pod on the other node.
    let fetch = format!("wget -q -O - http://{server_ip}:8080/ > /tmp/got && cat /tmp/got");
    let client = create(
        &api,
        "client",
        "n2",
        json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": root.to_str(), "command": ["sh", "-c", fetch]}]}),
    )
    .await;
    let done =
        until_pod(&api, "client", "the client to finish", |p| p.phase() != "Pending" && p.phase() != "Running").await;
    let got = std::fs::read_to_string(n2.data_dir.join("pods").join(&client.metadata.uid).join("tmp/got"));
    assert_eq!(done.phase(), "Succeeded", "the client fetched across nodes (got {got:?})");
    assert_eq!(got.expect("what the client got").trim(), "server");
    let n2_cidr: Cidr = nodes.get("", "n2").await.expect("n2").spec.pod_cidr.expect("podCIDR").parse().expect("CIDR");
    assert!(n2_cidr.contains(pod_ip(&done).expect("client podIP")) && !n2_cidr.overlaps(&n1_cidr));

    // A pod on the host's network has the node's address, and no network of its own.
    create(
        &api,
        "host",
        "n1",
        json!({"hostNetwork": true, "containers": [{"name": "main", "command": ["/bin/sleep", "600"]}]}),
    )
    .await;
    let host = until_pod(&api, "host", "the host-network pod to run", running).await;
    assert_eq!(host.status.as_ref().and_then(|s| s.pod_ip.as_deref()), Some("127.0.0.1"));
    assert!(!network_left(&host.metadata.uid));
    assert_eq!(held(&n1), 1, "only the server holds an address on n1");

    // An agent restart adopts the pod with its address.
    let registered = nodes.get("", "n1").await.expect("n1").metadata.revision();
    n1.restart();
    wait::until(Duration::from_secs(30), "the restarted agent to register again", || async {
        let node = nodes.get_opt("", "n1").await.ok().flatten()?;
        (node.metadata.revision() > registered).then_some(())
    })
    .await;
    let server_again = api.get("default", "server").await.expect("server");
    assert_eq!(pod_ip(&server_again), Some(server_ip), "the same address after the restart");
    assert_eq!(http_get(address).as_deref(), Some("server"));
    assert_eq!(held(&n1), 1);

    // Deleted pods give their addresses and links back.
    for name in ["server", "client", "host"] {
        api.delete("default", name, None).await.expect("delete");
    }
    for (uid, agent) in [(&server.metadata.uid, &n1), (&client.metadata.uid, &n2)] {
        wait::until(Duration::from_secs(30), "the deleted pod's network to go", || async {
            (!network_left(uid) && held(agent) == 0).then_some(())
        })
        .await;
    }
    assert!(n1.pid().is_some_and(alive) && n2.pid().is_some_and(alive));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pod_cidr_keeps_the_next_pod_waiting_and_an_overlapping_one_is_refused() {
    if !can_run_containers() {
        return;
    }
    let cluster = Cluster::start(1).await;
    // A /30 has room for one pod beside the bridge.
    let small = pod_cidr().replace("/24", "/30");
    let n1 = Agent::start(&cluster.endpoints_csv(), cluster.dir(), "n1", &["--pod-cidr", &small]);
    let api: Api<Pod> = Api::new(store(&cluster.endpoints()));
    let sleeper = || json!({"containers": [{"name": "main", "command": ["/bin/sleep", "600"]}]});

    let first = create(&api, "first", "n1", sleeper()).await;
    until_pod(&api, "first", "the first pod to run", running).await;
    let second = create(&api, "second", "n1", sleeper()).await;
    let waiting = until_pod(&api, "second", "the second pod to wait for an address", |p| {
        let state = p.status.as_ref().and_then(|s| s.container_statuses.first()).and_then(|c| c.state.clone());
        state.and_then(|s| s.waiting).is_some_and(|w| w.reason.as_deref() == Some("ContainerCreating"))
    })
    .await;
    let message = waiting.status.as_ref().and_then(|s| s.container_statuses[0].state.clone()?.waiting?.message);
    assert!(
        message.as_deref().is_some_and(|m| m.contains(&format!("no free address in the pod CIDR {small}"))),
        "{message:?}"
    );
    assert_eq!(waiting.phase(), "Pending");
    assert_eq!(pod_ip(&waiting), None);
    assert!(!network_left(&second.metadata.uid), "nothing is made for a pod without an address");
    assert_eq!(held(&n1), 1);

    // Once the first is gone, the second gets its address.
    api.delete("default", "first", None).await.expect("delete");
    let second = until_pod(&api, "second", "the second pod to run", running).await;
    let cidr: Cidr = small.parse().expect("CIDR");
    assert!(pod_ip(&second).is_some_and(|ip| cidr.contains(ip)));
    assert!(!network_left(&first.metadata.uid));

    // A node whose pod CIDR overlaps n1's is refused, and says why.
    let mut n2 = Agent::start(&cluster.endpoints_csv(), cluster.dir(), "n2", &["--pod-cidr", &small]);
    let pid = n2.pid().expect("n2 runs");
    wait::until(Duration::from_secs(30), "the overlapping agent to exit", || async { (!alive(pid)).then_some(()) })
        .await;
    let log = n2.log();
    assert!(log.contains(&format!("--pod-cidr {small} overlaps node \"n1\"'s pod CIDR {small}")), "{log}");
    n2.kill();
    let nodes: Api<Node> = Api::new(store(&cluster.endpoints()));
    assert!(nodes.get_opt("", "n2").await.expect("get").is_none(), "the refused node never registered");
}
