//! The control plane around a test cluster: `shoal-controllers` processes,
//! and fake nodes that stand in for agents. A fake node registers its Node,
//! keeps its heartbeat Lease alive on a store lease, and marks the pods bound
//! to it Running and Ready; stopping it is a node dying.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use shoal_client::informer::Informer;
use shoal_client::{Api, Store};
use shoal_proto::objects::{time, Deployment, Node, Pod};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::controllers_binary;
use crate::process::Process;

pub fn store(endpoints: &[String]) -> Store {
    Store::connect(endpoints, Duration::from_secs(5)).expect("endpoints")
}

/// A Deployment `name` of `replicas` sleeping pods, each asking for `cpu`
/// and 64Mi, labelled `app: name`.
pub fn deployment(name: &str, replicas: i32, cpu: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "main",
                    "command": ["/bin/sleep", "3600"],
                    "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}
                }]}
            }
        }
    }))
    .expect("a deployment")
}

/// A `shoal-controllers` process.
pub struct Controllers {
    pub process: Process,
    pub identity: String,
}

impl Controllers {
    pub fn start(endpoints: &str, dir: &std::path::Path, identity: &str, extra: &[&str]) -> Controllers {
        let mut args: Vec<String> = vec![
            "--endpoints".into(),
            endpoints.into(),
            "--identity".into(),
            identity.into(),
            "--leader-elect-lease-duration".into(),
            "3s".into(),
            "--log-level".into(),
            "info".into(),
        ];
        if !extra.contains(&"--service-cluster-ip-range") {
            args.extend(["--service-cluster-ip-range".to_string(), crate::agents::service_range()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let log: PathBuf = dir.join(format!("{identity}.log"));
        Controllers { process: Process::spawn(&controllers_binary(), &args, log), identity: identity.into() }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }
}

/// Fake nodes: one task per node.
pub struct FakeNodes {
    nodes: HashMap<String, JoinHandle<()>>,
    _pods: Informer<Pod>,
    _stop: watch::Sender<bool>,
}

/// Heartbeat lease TTL of a fake node.
pub const HEARTBEAT_TTL: i64 = 3;

impl FakeNodes {
    /// Registers `names`, each with `cpu` cores and `memory` to allocate.
    pub async fn start(endpoints: &[String], names: &[&str], cpu: &str, memory: &str) -> FakeNodes {
        let store = store(endpoints);
        let (stop, shutdown) = watch::channel(false);
        let (pods, _) =
            Informer::spawn(Api::<Pod>::new(store.clone()), None, Some(|p: &Pod| p.spec.node_name.clone()), shutdown);
        let mut nodes = HashMap::new();
        for name in names {
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {
                    "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                    "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]
                }
            }))
            .expect("a node");
            Api::<Node>::new(store.clone()).create(&node).await.expect("register the node");
            let task = tokio::spawn(run_node(store.clone(), name.to_string(), pods.clone()));
            nodes.insert(name.to_string(), task);
        }
        FakeNodes { nodes, _pods: pods, _stop: stop }
    }

    /// The node dies: no more heartbeats, no more pod status.
    pub fn kill(&mut self, name: &str) {
        if let Some(task) = self.nodes.remove(name) {
            task.abort();
        }
    }
}

impl Drop for FakeNodes {
    fn drop(&mut self) {
        for task in self.nodes.values() {
            task.abort();
        }
    }
}

async fn run_node(store: Store, name: String, pods: Informer<Pod>) {
    let pod_api: Api<Pod> = Api::new(store.clone());
    let mut lease_id = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut beats = 0u64;
    loop {
        tick.tick().await;
        if beats.is_multiple_of(10) {
            lease_id =
                shoal_agent::node::beat(&store, &name, lease_id, Duration::from_secs(HEARTBEAT_TTL as u64)).await;
        }
        beats += 1;
        for pod in pods.read(|c| c.indexed(&name)) {
            if pod.metadata.deletion_timestamp.is_some() {
                // Stopped at once: the pod goes.
                let _ = pod_api.delete(pod.metadata.namespace_or_default(), &pod.metadata.name, None).await;
                continue;
            }
            if pod.is_ready() || !pod.is_active() {
                continue;
            }
            let mut running = pod.as_ref().clone();
            let status = running.status.get_or_insert_with(Default::default);
            let now = time::now();
            status.phase = Some("Running".into());
            status.start_time.get_or_insert(now.clone());
            status.pod_ip = Some("127.0.0.1".into());
            for type_ in ["Ready", "ContainersReady"] {
                let condition = shoal_proto::objects::Condition {
                    type_: type_.into(),
                    status: "True".into(),
                    ..Default::default()
                };
                shoal_proto::objects::meta::set_condition(&mut status.conditions, condition, &now);
            }
            let _ = pod_api.update(&running).await;
        }
    }
}
