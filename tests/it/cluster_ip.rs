//! Services at their cluster IPs, on real processes: two agents, the
//! controllers, and busybox web servers in pods with addresses of their
//! own. The cluster IP is given once and refused with Kubernetes' words
//! when asked for wrongly; every node's proxy serves it, to the host and
//! to pods, following the ready endpoints.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::json;
use shoal_client::{service_ips, Api};
use shoal_proto::objects::cidr::Cidr;
use shoal_proto::objects::{Deployment, Pod, Service};
use shoal_tests::agents::{busybox_rootfs, can_run_containers, service_range, Agent};
use shoal_tests::cluster::shoalctl;
use shoal_tests::control_plane::{store, Controllers};
use shoal_tests::ports::listening;
use shoal_tests::services::{http_get, node_addresses, web_deployment};
use shoal_tests::{wait, Cluster};

/// Fields drop in order: agents (and their containers) before the cluster.
struct Layout {
    agents: Vec<Agent>,
    _controllers: Controllers,
    cluster: Cluster,
    range: Cidr,
    addresses: [String; 2],
}

impl Layout {
    async fn start() -> Layout {
        let cluster = Cluster::start(1).await;
        let endpoints = cluster.endpoints_csv();
        let addresses = node_addresses();
        let agents = ["n1", "n2"]
            .iter()
            .zip(addresses.iter())
            .map(|(node, address)| Agent::start(&endpoints, cluster.dir(), node, &["--address", address]))
            .collect();
        let range = service_range();
        let controllers =
            Controllers::start(&endpoints, cluster.dir(), "c1", &["--service-cluster-ip-range", range.as_str()]);
        let range = range.parse().expect("CIDR");
        let layout = Layout { agents, _controllers: controllers, cluster, range, addresses };
        let store = store(&layout.cluster.endpoints());
        wait::until(Duration::from_secs(30), "the controllers to record the Service range", || async {
            service_ips::range(&store).await.ok().flatten().filter(|r| *r == layout.range).map(|_| ())
        })
        .await;
        layout
    }

    fn api<K: shoal_proto::objects::Object>(&self) -> Api<K> {
        Api::new(store(&self.cluster.endpoints()))
    }

    /// `shoalctl apply` of `manifest` (JSON); (success, stdout, stderr).
    fn apply(&self, manifest: serde_json::Value) -> (bool, String, String) {
        let path = self.cluster.dir().join(format!("manifest-{}.json", shoal_client::api::new_uid()));
        std::fs::write(&path, manifest.to_string()).expect("write the manifest");
        let endpoints = self.cluster.endpoints_csv();
        shoalctl(&["--endpoints", &endpoints, "apply", "-f", path.to_str().expect("utf-8")])
    }
}

fn service(name: &str, cluster_ip: Option<&str>) -> serde_json::Value {
    let mut spec = json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]});
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

/// Whether the host answers for `ip` (a `local` route for it).
fn is_local(ip: Ipv4Addr) -> bool {
    let out = std::process::Command::new("ip")
        .args(["route", "show", "table", "local", &format!("{ip}/32")])
        .output()
        .expect("run ip");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// The pod names that answer `count` requests at `at`.
fn reached(at: SocketAddr, count: usize) -> BTreeSet<String> {
    (0..count).filter_map(|_| http_get(at)).collect()
}

async fn ready_names(pods: &Api<Pod>) -> BTreeSet<String> {
    let list = pods.list(Some("default")).await.map(|l| l.items).unwrap_or_default();
    list.iter()
        .filter(|p| p.metadata.labels.get("app").map(String::as_str) == Some("web") && p.is_ready())
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.metadata.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_ip_is_given_once_and_reaches_the_ready_pods_from_the_host_and_from_pods() {
    if !can_run_containers() {
        return;
    }
    let layout = Layout::start().await;
    let root = busybox_rootfs(layout.cluster.dir());
    let (pods, services) = (layout.api::<Pod>(), layout.api::<Service>());
    // Ready while GET /ready answers: an HTTP readiness probe every second.
    let mut web = web_deployment("web", 3);
    let probe = json!({"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1});
    web.spec.template.spec.containers[0].readiness_probe = Some(serde_json::from_value(probe).expect("probe"));
    let command = &mut web.spec.template.spec.containers[0].command;
    command[2] =
        command[2].replace("hostname > /tmp/www/index.html", "hostname > /tmp/www/index.html && touch /tmp/www/ready");
    layout.api::<Deployment>().create(&web).await.expect("deployment");
    let (ok, out, err) = layout.apply(service("web", None));
    assert!(ok && out.contains("service/web created"), "{out}{err}");
    let web = services.get("default", "web").await.expect("the Service");
    let ip = web.spec.cluster_ip().expect("a cluster IP, given in the same write");
    assert!(layout.range.is_assignable(ip), "{ip} is in {}", layout.range);
    assert_eq!(web.spec.cluster_ips, [ip.to_string()]);
    let endpoints = layout.cluster.endpoints_csv();
    let (_, table, _) = shoalctl(&["--endpoints", &endpoints, "get", "svc", "web"]);
    assert!(table.contains("CLUSTER-IP") && table.contains(&format!("ClusterIP   {ip}")), "{table}");

    // From the host: every ready pod answers at the cluster IP.
    let names = wait::until(Duration::from_secs(60), "3 ready pods", || async {
        let names = ready_names(&pods).await;
        (names.len() == 3).then_some(names)
    })
    .await;
    let at = SocketAddr::from((ip, 80));
    assert!(is_local(ip), "the host answers for the cluster IP");
    wait::until(Duration::from_secs(30), "the cluster IP to reach every pod", || async {
        (reached(at, 12) == names).then_some(())
    })
    .await;
    let node_port = SocketAddr::new(layout.addresses[0].parse().expect("ip"), 80);
    assert!(!listening(node_port), "a ClusterIP Service takes no node port");

    // From a pod, through its bridge and the host, found through the variables Kubernetes sets.
    let fetch = "echo \"$WEB_SERVICE_HOST $WEB_SERVICE_PORT $WEB_PORT\" > /tmp/env; \
                 nslookup web.default.svc.cluster.local > /tmp/dns 2>&1; nslookup web > /tmp/short 2>&1; \
                 for i in 1 2 3 4 5 6 7 8 9; do wget -q -O - http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/ >> /tmp/got; done";
    let client: Pod = serde_json::from_value(json!({
        "metadata": {"name": "client"},
        "spec": {"nodeName": "n2", "restartPolicy": "Never",
                 "containers": [{"name": "main", "image": root.to_str(), "command": ["sh", "-c", fetch]}]}
    }))
    .expect("pod");
    let client = pods.create(&client).await.expect("client");
    let done = wait::until(Duration::from_secs(30), "the client pod to finish", || async {
        pods.get_opt("default", "client").await.ok().flatten().filter(|p| matches!(p.phase(), "Succeeded" | "Failed"))
    })
    .await;
    let tmp = layout.agents[1].data_dir.join("pods").join(&client.metadata.uid).join("tmp");
    let got = std::fs::read_to_string(tmp.join("got")).unwrap_or_default();
    let env = std::fs::read_to_string(tmp.join("env")).unwrap_or_default();
    assert_eq!(env.trim(), format!("{ip} 80 tcp://{ip}:80"), "the Service's variables");
    let dns = std::fs::read_to_string(tmp.join("dns")).unwrap_or_default();
    assert!(dns.contains(&format!("Address: {ip}")), "the node's DNS answers the Service's name:\n{dns}");
    let short = std::fs::read_to_string(tmp.join("short")).unwrap_or_default();
    assert!(short.contains(&format!("Address: {ip}")), "the namespace's search path finds `web`:\n{short}");
    assert_eq!(done.phase(), "Succeeded", "the pod reached the cluster IP: {got:?}");
    let answered: BTreeSet<String> = got.lines().map(String::from).collect();
    assert!(answered.len() >= 2 && answered.is_subset(&names), "{answered:?} of {names:?}");
    pods.delete("default", "client", None).await.expect("delete the client");

    // A pod whose readiness probe starts failing leaves the rotation within a probe period or two.
    let all = pods.list(Some("default")).await.expect("pods").items;
    let failing = all.iter().find(|p| names.contains(&p.metadata.name)).expect("a web pod");
    let agent = layout.agents.iter().find(|a| Some(&a.node) == failing.spec.node_name.as_ref()).expect("its agent");
    let flag = agent.data_dir.join("pods").join(&failing.metadata.uid).join("tmp/www/ready");
    std::fs::remove_file(&flag).expect("fail the readiness probe");
    let failed_at = std::time::Instant::now();
    let others: BTreeSet<String> = names.iter().filter(|n| **n != failing.metadata.name).cloned().collect();
    wait::until(Duration::from_secs(15), "the unready pod to leave the rotation", || async {
        (reached(at, 8) == others).then_some(())
    })
    .await;
    let took = failed_at.elapsed();
    eprintln!("the unready pod left the cluster IP's rotation {took:?} after its probe began failing");
    assert!(took <= Duration::from_secs(5), "one probe period is 1s; took {took:?}");
    std::fs::write(&flag, "").expect("pass the readiness probe again");
    wait::until(Duration::from_secs(15), "the pod to come back", || async { (reached(at, 12) == names).then_some(()) })
        .await;

    // Scaling down takes the gone pods out of the rotation.
    layout.api::<Deployment>().modify("default", "web", |d| d.spec.replicas = Some(1)).await.expect("scale");
    let left = wait::until(Duration::from_secs(60), "one pod left, answering alone", || async {
        let left = ready_names(&pods).await;
        (left.len() == 1 && reached(at, 6) == left).then_some(left)
    })
    .await;
    assert!(left.is_subset(&names));

    // Deleting the Service closes its port and gives its address back.
    services.delete("default", "web", None).await.expect("delete");
    let store = store(&layout.cluster.endpoints());
    wait::until(Duration::from_secs(30), "the address to be given back", || async {
        let allocated = service_ips::allocated(&store).await.ok()?;
        (!allocated.iter().any(|(held, _)| *held == ip)).then_some(())
    })
    .await;
    // Off this host, the address may lead anywhere: what matters is that the host no longer answers for it.
    wait::until(Duration::from_secs(30), "the cluster IP to stop being the host's", || async {
        (!is_local(ip)).then_some(())
    })
    .await;
    assert!(http_get(at).is_none_or(|answer| !names.contains(&answer)), "no pod answers at the old cluster IP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_ip_outside_the_range_or_taken_is_refused_with_kubernetes_words() {
    if !can_run_containers() {
        return;
    }
    let layout = Layout::start().await;
    let services = layout.api::<Service>();
    let range = layout.range;
    let outside = Ipv4Addr::from(u32::from(range.network()) + 256);
    let (ok, _, err) = layout.apply(service("outside", Some(&outside.to_string())));
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "Service \"outside\" is invalid: spec.clusterIPs: Invalid value: []string{{\"{outside}\"}}: failed to allocate IP {outside}: the provided IP ({outside}) is not in the valid range. The range of valid IPs is {range}"
        )),
        "{err}"
    );
    let asked = range.assignable().nth(7).expect("an address");
    let (ok, out, err) = layout.apply(service("first", Some(&asked.to_string())));
    assert!(ok, "{out}{err}");
    let (ok, _, err) = layout.apply(service("second", Some(&asked.to_string())));
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "Service \"second\" is invalid: spec.clusterIPs: Invalid value: []string{{\"{asked}\"}}: failed to allocate IP {asked}: provided IP is already allocated"
        )),
        "{err}"
    );
    let (ok, _, err) = layout.apply(service("bad", Some("10.0.0.300")));
    assert!(
        !ok && err.contains("spec.clusterIPs[0]: Invalid value: \"10.0.0.300\": must be a valid IP address"),
        "{err}"
    );
    for refused in ["outside", "second", "bad"] {
        assert!(services.get_opt("default", refused).await.expect("get").is_none(), "{refused} was not written");
    }
    // An address never changes once given.
    let other = range.assignable().nth(8).expect("an address");
    let (ok, _, err) = layout.apply(service("first", Some(&other.to_string())));
    assert!(!ok && err.contains("spec.clusterIPs[0]: Invalid value: []string{\""), "{err}");
    assert!(err.contains("may not change once set"), "{err}");
    assert_eq!(services.get("default", "first").await.expect("first").spec.cluster_ip(), Some(asked));
    // Re-applying the same manifest changes nothing.
    let (ok, out, _) = layout.apply(service("first", Some(&asked.to_string())));
    assert!(ok && out.contains("unchanged"), "{out}");

    // A Service written without going through shoalctl gets its address from the controller.
    let raw: Service = serde_json::from_value(service("raw", None)).expect("service");
    services.create(&raw).await.expect("create");
    let given = wait::until(Duration::from_secs(30), "the controller to give the Service an address", || async {
        services.get_opt("default", "raw").await.ok().flatten()?.spec.cluster_ip()
    })
    .await;
    assert!(range.is_assignable(given) && given != asked);
    let store = store(&layout.cluster.endpoints());
    let allocated = service_ips::allocated(&store).await.expect("allocated");
    let holders: BTreeSet<String> = allocated.iter().filter_map(|(_, h)| h.as_ref().map(|h| h.name.clone())).collect();
    assert_eq!(holders, BTreeSet::from(["first".to_string(), "raw".to_string()]), "{allocated:?}");
}
