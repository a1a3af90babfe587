//! One store member and one real agent (node n1), shared by the tests
//! that run containers on them.

use std::time::Duration;

use serde_json::{json, Value};
use shoal_client::Api;
use shoal_proto::objects::Pod;
use shoal_tests::agents::{busybox_rootfs, Agent};
use shoal_tests::cluster::shoalctl_binary;
use shoal_tests::control_plane::store;
use shoal_tests::{wait, Cluster};

/// A one-member store, an agent for node n1, a client, and a busybox root.
pub struct OneNode {
    pub cluster: Cluster,
    pub agent: Agent,
    pub api: Api<Pod>,
    pub root: std::path::PathBuf,
}

impl OneNode {
    pub async fn start() -> OneNode {
        let cluster = Cluster::start(1).await;
        let agent = Agent::start(&cluster.endpoints_csv(), cluster.dir(), "n1", &[]);
        let api: Api<Pod> = Api::new(store(&cluster.endpoints()));
        let root = busybox_rootfs(cluster.dir());
        OneNode { cluster, agent, api, root }
    }
}

/// Creates pod `name` on node n1 with `spec` (nodeName is filled in).
pub async fn create(api: &Api<Pod>, name: &str, mut spec: Value) -> Pod {
    spec["nodeName"] = json!("n1");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("a pod");
    api.create(&pod).await.expect("create the pod")
}

/// Waits until pod `name` satisfies `test`; returns it.
pub async fn until_pod(api: &Api<Pod>, name: &str, what: &str, seconds: u64, test: impl Fn(&Pod) -> bool) -> Pod {
    wait::until(Duration::from_secs(seconds), what, || async {
        api.get_opt("default", name).await.ok().flatten().filter(|p| test(p))
    })
    .await
}

pub fn shoalctl(cluster: &Cluster, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(shoalctl_binary())
        .arg("--endpoints")
        .arg(cluster.endpoints_csv())
        .args(args)
        .output()
        .expect("run shoalctl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}
