//! Services on real processes: two agents as two nodes, each with a
//! loopback address of its own (the `shoal up` layout), the controllers,
//! and busybox web servers in pods with addresses of their own. All
//! traffic stays on this machine.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal_agent::net::cidr::Cidr;
use shoal_client::Api;
use shoal_proto::objects::service::PORTS_ALLOCATED;
use shoal_proto::objects::{Deployment, Endpoints, Pod, Service};
use shoal_tests::agents::{alive, can_run_containers, running_pid, Agent};
use shoal_tests::control_plane::{store, Controllers};
use shoal_tests::ports::{free_port, listening};
use shoal_tests::services::{http_get, node_addresses, service, web_deployment};
use shoal_tests::{wait, Cluster};

/// Fields drop in order: the agents (and their containers, found through
/// their data dirs) before the cluster, whose directory holds those dirs.
struct Layout {
    agents: Vec<Agent>,
    _controllers: Controllers,
    cluster: Cluster,
    addresses: [String; 2],
}

impl Layout {
    async fn start(members: usize) -> Layout {
        let cluster = Cluster::start(members).await;
        let addresses = node_addresses();
        let endpoints = cluster.endpoints_csv();
        let agents = ["node-1", "node-2"]
            .iter()
            .zip(&addresses)
            .map(|(node, address)| Agent::start(&endpoints, cluster.dir(), node, &["--address", address]))
            .collect();
        let controllers = Controllers::start(&endpoints, cluster.dir(), "c1", &[]);
        Layout { agents, _controllers: controllers, cluster, addresses }
    }

    fn api<K: shoal_proto::objects::Object>(&self) -> Api<K> {
        Api::new(store(&self.cluster.endpoints()))
    }

    /// The Service's port on each node.
    fn proxies(&self, port: u16) -> Vec<SocketAddr> {
        self.addresses.iter().map(|a| SocketAddr::new(a.parse().expect("ip"), port)).collect()
    }

    fn logs(&self) -> String {
        self.agents.iter().map(|a| a.log()).collect::<Vec<_>>().join("\n")
    }
}

/// The ready pods of app `app`, by name.
async fn ready_pods(api: &Api<Pod>, app: &str) -> BTreeMap<String, Pod> {
    let pods = api.list(Some("default")).await.map(|l| l.items).unwrap_or_default();
    pods.into_iter()
        .filter(|p| p.metadata.labels.get("app").map(String::as_str) == Some(app))
        .filter(|p| p.is_ready() && p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.metadata.name.clone(), p))
        .collect()
}

async fn ready_endpoints(api: &Api<Endpoints>, name: &str) -> usize {
    api.get_opt("default", name).await.ok().flatten().map_or(0, |e| e.counts().0)
}

/// Answers to `count` requests through each proxy in turn.
fn answers(proxies: &[SocketAddr], count: usize) -> Vec<Option<String>> {
    (0..count).map(|i| http_get(proxies[i % proxies.len()])).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_reaches_every_ready_pod_through_each_nodes_proxy() {
    if !can_run_containers() {
        return;
    }
    let layout = Layout::start(3).await;
    let (pods, endpoints) = (layout.api::<Pod>(), layout.api::<Endpoints>());
    let port = free_port();
    layout.api::<Deployment>().create(&web_deployment("web", 3)).await.expect("deployment");
    layout.api::<Service>().create(&service("web", "web", port)).await.expect("service");
    let ready = wait::until(Duration::from_secs(60), "3 ready pods and 3 endpoints", || async {
        let ready = ready_pods(&pods, "web").await;
        (ready.len() == 3 && ready_endpoints(&endpoints, "web").await == 3).then_some(ready)
    })
    .await;
    // Three pods on two nodes, each at an address of its own from its node's pod CIDR.
    let nodes = layout.api::<shoal_proto::objects::Node>();
    let mut addresses = BTreeSet::new();
    for pod in ready.values() {
        let ip: std::net::Ipv4Addr =
            pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).expect("podIP").parse().expect("an IPv4 address");
        let node = nodes.get("", pod.spec.node_name.as_deref().expect("bound")).await.expect("node");
        let cidr: Cidr = node.spec.pod_cidr.as_deref().expect("podCIDR").parse().expect("a CIDR");
        assert!(cidr.contains(ip), "{ip} is in its node's pod CIDR {cidr}");
        addresses.insert(ip);
    }
    assert_eq!(addresses.len(), 3, "three addresses: {addresses:?}");

    // Through the proxy of each node (once it has seen the Endpoints), 30
    // requests reach all three pods.
    let names: BTreeSet<String> = ready.keys().cloned().collect();
    for proxy in layout.proxies(port) {
        wait::until(Duration::from_secs(30), "the proxy to know every endpoint", || async {
            let reached: BTreeSet<String> = answers(&[proxy], 6).into_iter().flatten().collect();
            (reached == names).then_some(())
        })
        .await;
        let got = answers(&[proxy], 30);
        assert!(got.iter().all(Option::is_some), "every request answered through {proxy}: {got:?}");
        let reached: BTreeSet<String> = got.into_iter().flatten().collect();
        assert_eq!(reached, names, "through {proxy}");
    }

    // Kill one pod's process: requests keep being answered by the others,
    // and reach all three again once it is Ready again.
    let victim = ready.values().next().expect("a pod").clone();
    let pid = running_pid(&victim).expect("pid");
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill the web server");
    let proxies = layout.proxies(port);
    let started = Instant::now();
    let (mut failing_since, mut longest_failure, mut requests) = (None::<Instant>, Duration::ZERO, 0);
    let mut seen_after: BTreeSet<String> = BTreeSet::new();
    let mut back = false;
    while started.elapsed() < Duration::from_secs(60) && !(back && seen_after == names) {
        requests += 1;
        match http_get(proxies[requests % 2]) {
            Some(name) => {
                if let Some(since) = failing_since.take() {
                    longest_failure = longest_failure.max(since.elapsed());
                }
                if back {
                    seen_after.insert(name);
                }
            }
            None => {
                failing_since.get_or_insert_with(Instant::now);
            }
        }
        if !back && requests % 20 == 0 {
            let now = ready_pods(&pods, "web").await;
            back = now
                .get(&victim.metadata.name)
                .is_some_and(|p| p.status.as_ref().is_some_and(|s| s.container_statuses[0].restart_count == 1))
                && ready_endpoints(&endpoints, "web").await == 3;
        }
    }
    assert!(!alive(pid));
    assert!(back && seen_after == names, "all three answer again after the restart: {seen_after:?}\n{}", layout.logs());
    assert!(
        longest_failure <= Duration::from_secs(1),
        "requests failed for {longest_failure:?} (one probe period is 1s)"
    );
    eprintln!("{requests} requests during the restart; longest run of failures {longest_failure:?}");

    // Scale to 5: each new pod gets traffic soon after it is Ready.
    layout.api::<Deployment>().modify("default", "web", |d| d.spec.replicas = Some(5)).await.expect("scale");
    let mut ready_at: BTreeMap<String, Instant> = BTreeMap::new();
    let mut answered_at: BTreeMap<String, Instant> = BTreeMap::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) && answered_at.len() < 5 {
        for name in ready_pods(&pods, "web").await.into_keys() {
            ready_at.entry(name).or_insert_with(Instant::now);
        }
        for (i, name) in answers(&proxies, 10).into_iter().enumerate() {
            if let Some(name) = name {
                answered_at.entry(name).or_insert_with(Instant::now);
            } else {
                panic!("request {i} failed while scaling up");
            }
        }
    }
    assert_eq!(answered_at.len(), 5, "all five answer: {answered_at:?}");
    for name in answered_at.keys().filter(|n| !names.contains(*n)) {
        let ready = ready_at.get(name).copied().unwrap_or(started);
        let lag = answered_at[name].saturating_duration_since(ready);
        eprintln!("{name}: traffic {lag:?} after it was seen Ready");
        assert!(lag <= Duration::from_secs(2), "{name} got traffic {lag:?} after becoming Ready");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_ports_conflict_follow_readiness_and_close_when_deleted() {
    if !can_run_containers() {
        return;
    }
    let layout = Layout::start(1).await;
    let (services, endpoints, pods) = (layout.api::<Service>(), layout.api::<Endpoints>(), layout.api::<Pod>());
    let port = free_port();
    let proxies = layout.proxies(port);
    services.create(&service("first", "probe", port)).await.expect("first service");
    wait::until(Duration::from_secs(30), "the first Service's port on both nodes", || async {
        proxies.iter().all(|p| listening(*p)).then_some(())
    })
    .await;

    // A second Service asking for the same port is refused in its status.
    services.create(&service("second", "probe", port)).await.expect("second service");
    let refused = wait::until(Duration::from_secs(30), "the conflict in the second's status", || async {
        let second = services.get("default", "second").await.ok()?;
        let status = second.status?;
        shoal_proto::objects::meta::condition(&status.conditions, PORTS_ALLOCATED).filter(|c| !c.is_true()).cloned()
    })
    .await;
    assert_eq!(refused.reason.as_deref(), Some("PortConflict"));
    let message = refused.message.unwrap_or_default();
    assert!(message.contains(&format!("port {port}/TCP is already allocated to Service default/first")), "{message}");
    assert!(services.get("default", "first").await.expect("first").ports_allocated());
    assert!(layout.agents.iter().all(|a| a.pid().is_some_and(alive)), "no proxy crashed");
    assert!(proxies.iter().all(|p| listening(*p)), "the first Service is still served");

    // A pod whose HTTP readiness probe fails (GET /ready turns 404) leaves the endpoints.
    let mut web = web_deployment("probe", 1);
    let probe =
        serde_json::json!({"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1});
    web.spec.template.spec.containers[0].readiness_probe = Some(serde_json::from_value(probe).expect("probe"));
    let command = &mut web.spec.template.spec.containers[0].command;
    command[2] =
        command[2].replace("hostname > /tmp/www/index.html", "hostname > /tmp/www/index.html && touch /tmp/www/ready");
    layout.api::<Deployment>().create(&web).await.expect("deployment");
    let pod = wait::until(Duration::from_secs(60), "the probe pod in the endpoints", || async {
        let ready = ready_pods(&pods, "probe").await;
        let pod = ready.into_values().next()?;
        (ready_endpoints(&endpoints, "first").await == 1).then_some(pod)
    })
    .await;
    wait::until(Duration::from_secs(10), "the pod served through both nodes", || async {
        (proxies.iter().filter_map(|p| http_get(*p)).count() == 2).then_some(())
    })
    .await;
    let agent = layout.agents.iter().find(|a| Some(&a.node) == pod.spec.node_name.as_ref()).expect("its agent");
    let flag = agent.data_dir.join("pods").join(&pod.metadata.uid).join("tmp/www/ready");
    std::fs::remove_file(&flag).expect("remove the readiness flag");
    let removed = Instant::now();
    wait::until(Duration::from_secs(10), "the pod to leave the endpoints", || async {
        (ready_endpoints(&endpoints, "first").await == 0).then_some(())
    })
    .await;
    let left_after = removed.elapsed();
    eprintln!("the pod left the endpoints {left_after:?} after its readiness began failing");
    assert!(left_after <= Duration::from_secs(3), "one probe period is 1s; took {left_after:?}");

    // Deleting the first Service closes its listeners; the second then gets the port.
    services.delete("default", "first", None).await.expect("delete");
    wait::until(Duration::from_secs(30), "the second Service to get the port", || async {
        services.get("default", "second").await.ok().filter(|s| s.ports_allocated()).map(|_| ())
    })
    .await;
    wait::until(Duration::from_secs(30), "the first's endpoints to go", || async {
        endpoints.get_opt("default", "first").await.ok()?.is_none().then_some(())
    })
    .await;
    services.delete("default", "second", None).await.expect("delete");
    wait::until(Duration::from_secs(30), "the listeners to close", || async {
        proxies.iter().all(|p| !listening(*p)).then_some(())
    })
    .await;
    assert!(layout.agents.iter().all(|a| a.pid().is_some_and(alive)));
}
