//! Filters: may this pod run on this node? Each refusal is a reason in
//! Kubernetes' words, counted per reason in the pod's Unschedulable message.

use std::collections::BTreeSet;

use shoal_proto::objects::node::allocatable;
use shoal_proto::objects::pod::PodSpec;
use shoal_proto::objects::{Node, Pod};

/// What is already placed on a node: millicores, bytes, pods, and the fixed
/// ports its pods listen on (`port/protocol`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu: i64,
    pub memory: i64,
    pub pods: i64,
    pub ports: BTreeSet<String>,
}

impl Usage {
    pub fn add(&mut self, spec: &PodSpec) {
        let (cpu, memory) = spec.requests();
        self.cpu += cpu;
        self.memory += memory;
        self.pods += 1;
        self.ports.extend(spec.fixed_ports());
    }

    /// A pod being deleted frees its room for counting, but its processes
    /// may still hold their ports until they have stopped.
    pub fn hold_ports(&mut self, spec: &PodSpec) {
        self.ports.extend(spec.fixed_ports());
    }
}

pub const NOT_READY: &str = "node(s) were not ready";
pub const UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const SELECTOR: &str = "node(s) didn't match Pod's node affinity/selector";
pub const NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";

/// Why `pod` cannot go to `node`, or None if it can.
pub fn refuse(pod: &Pod, node: &Node, usage: &Usage) -> Option<String> {
    if node.metadata.deletion_timestamp.is_some() || !node.is_ready() {
        return Some(NOT_READY.into());
    }
    if node.spec.unschedulable {
        return Some(UNSCHEDULABLE.into());
    }
    if !pod.spec.node_selector.iter().all(|(k, v)| node.metadata.labels.get(k) == Some(v)) {
        return Some(SELECTOR.into());
    }
    let repelling = node
        .spec
        .taints
        .iter()
        .find(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !pod.spec.tolerates(t));
    if let Some(taint) = repelling {
        return Some(format!("node(s) had untolerated taint {{{}: {}}}", taint.key, taint.value));
    }
    // Pods on the node's network: two that need one fixed port cannot share a node.
    if pod.spec.fixed_ports().iter().any(|p| usage.ports.contains(p)) {
        return Some(NODE_PORTS.into());
    }
    let (cpu, memory) = pod.spec.requests();
    let (cpu_free, memory_free, pods_max) = allocatable(node);
    if usage.pods + 1 > pods_max {
        return Some("Too many pods".into());
    }
    if cpu_free.is_some_and(|total| usage.cpu + cpu > total) {
        return Some("Insufficient cpu".into());
    }
    if memory_free.is_some_and(|total| usage.memory + memory > total) {
        return Some("Insufficient memory".into());
    }
    None
}

/// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) were not ready.`
pub fn unschedulable_message(nodes: usize, reasons: &[String]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for reason in reasons {
        *counts.entry(reason.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
    if parts.is_empty() {
        format!("0/{nodes} nodes are available.")
    } else {
        format!("0/{nodes} nodes are available: {}.", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn node(name: &str, cpu: &str, memory: &str, extra: serde_json::Value) -> Node {
        let mut value = json!({
            "metadata": {"name": name, "labels": {"disk": "ssd"}},
            "status": {
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "3"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        if let (Some(base), Some(more)) = (value.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                base.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(value).expect("node")
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    fn asking(cpu: &str) -> Pod {
        pod(
            json!({"containers": [{"name": "c", "command": ["x"], "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}),
        )
    }

    #[test]
    fn resources_must_fit_what_is_left() {
        let n = node("n", "2", "4Gi", json!({}));
        assert_eq!(refuse(&asking("1500m"), &n, &Usage::default()), None);
        let used = Usage { cpu: 1000, memory: 0, pods: 1, ..Default::default() };
        assert_eq!(refuse(&asking("1500m"), &n, &used).as_deref(), Some("Insufficient cpu"));
        let full = Usage { cpu: 0, memory: (3 << 30) + 1, pods: 1, ..Default::default() };
        assert_eq!(refuse(&asking("1"), &n, &full).as_deref(), Some("Insufficient memory"));
        let crowded = Usage { cpu: 0, memory: 0, pods: 3, ..Default::default() };
        assert_eq!(refuse(&asking("1"), &n, &crowded).as_deref(), Some("Too many pods"));
    }

    #[test]
    fn readiness_cordons_selectors_and_taints() {
        let p = asking("1");
        let not_ready =
            node("n", "2", "4Gi", json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(refuse(&p, &not_ready, &Usage::default()).as_deref(), Some(NOT_READY));
        let cordoned = node("n", "2", "4Gi", json!({"spec": {"unschedulable": true}}));
        assert_eq!(refuse(&p, &cordoned, &Usage::default()).as_deref(), Some(UNSCHEDULABLE));
        let mut picky = asking("1");
        picky.spec.node_selector.insert("disk".into(), "hdd".into());
        assert_eq!(refuse(&picky, &node("n", "2", "4Gi", json!({})), &Usage::default()).as_deref(), Some(SELECTOR));
        let tainted = node(
            "n",
            "2",
            "4Gi",
            json!({"spec": {"taints": [{"key": "gpu", "value": "only", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(
            refuse(&p, &tainted, &Usage::default()).as_deref(),
            Some("node(s) had untolerated taint {gpu: only}")
        );
        let tolerant = pod(
            json!({"containers": [{"name": "c", "command": ["x"]}], "tolerations": [{"key": "gpu", "operator": "Exists"}]}),
        );
        assert_eq!(refuse(&tolerant, &tainted, &Usage::default()), None);
        let soft = node("n", "2", "4Gi", json!({"spec": {"taints": [{"key": "gpu", "effect": "PreferNoSchedule"}]}}));
        assert_eq!(refuse(&p, &soft, &Usage::default()), None, "PreferNoSchedule does not filter");
    }

    #[test]
    fn the_message_counts_each_reason() {
        let reasons = vec!["Insufficient cpu".to_string(), NOT_READY.to_string(), NOT_READY.to_string()];
        assert_eq!(
            unschedulable_message(3, &reasons),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) were not ready."
        );
        assert_eq!(unschedulable_message(0, &[]), "0/0 nodes are available.");
    }

    #[test]
    fn two_pods_that_need_one_fixed_port_never_share_a_node() {
        let n = node("n", "2", "4Gi", json!({}));
        let ports = |port: i32| json!({"hostNetwork": true, "containers": [{"name": "c", "command": ["x"], "ports": [{"containerPort": port}]}]});
        let fixed = pod(ports(8080));
        let mut used = Usage::default();
        assert_eq!(refuse(&fixed, &n, &used), None);
        used.add(&fixed.spec);
        assert_eq!(refuse(&fixed, &n, &used).as_deref(), Some(NODE_PORTS));
        let dynamic = pod(ports(0));
        used.add(&dynamic.spec);
        assert_eq!(refuse(&dynamic, &n, &used), None, "ports the node allocates never collide");
        assert_eq!(refuse(&pod(ports(8081)), &n, &used), None);
        let own_network =
            pod(json!({"containers": [{"name": "c", "command": ["x"], "ports": [{"containerPort": 8080}]}]}));
        assert_eq!(refuse(&own_network, &n, &used), None, "a pod with its own address takes no node port");
    }
}
