//! Node: a machine the agent runs pods on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::meta::{Condition, ObjectMeta};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NodeSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Cordoned: no new pods are scheduled here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unschedulable: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// The addresses this node gives its pods (Kubernetes spells it `podCIDR`).
    #[serde(default, rename = "podCIDR", skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    #[serde(default, rename = "podCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
}

/// Repels pods that do not tolerate it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// NoSchedule, PreferNoSchedule or NoExecute.
    pub effect: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_added: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    /// InternalIP, ExternalIP or Hostname.
    #[serde(rename = "type")]
    pub type_: String,
    pub address: String,
}

/// The taint the node-lifecycle controller puts on a node that stopped heartbeating.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint on a node whose state is unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The annotation where a node's agent records its container logs
/// endpoint (`host:port`).
pub const LOGS_ADDRESS_ANNOTATION: &str = "shoal.io/logs-address";

impl Node {
    /// Whether the Ready condition is True.
    pub fn is_ready(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| super::meta::condition(&s.conditions, "Ready").is_some_and(|c| c.is_true()))
    }
}

/// What a node offers: (millicores, bytes, pods); None where it says nothing.
pub fn allocatable(node: &Node) -> (Option<i64>, Option<i64>, i64) {
    let status = node.status.as_ref();
    let amount = |name: &str| {
        let status = status?;
        let text = status.allocatable.get(name).or_else(|| status.capacity.get(name))?;
        super::quantity::Quantity::parse(text).ok()
    };
    (
        amount("cpu").map(|q| q.milli_value()),
        amount("memory").map(|q| q.value()),
        amount("pods").map_or(110, |q| q.value()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::pod::Toleration;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.into(), effect: effect.into(), time_added: None }
    }

    fn toleration(key: &str, operator: Option<&str>, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: key.into(),
            operator: operator.map(String::from),
            value: value.into(),
            effect: effect.into(),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerations_match_taints_as_kubernetes_does() {
        let t = taint("gpu", "yes", "NoSchedule");
        assert!(toleration("gpu", None, "yes", "NoSchedule").tolerates(&t));
        assert!(toleration("gpu", None, "yes", "").tolerates(&t), "an empty effect matches every effect");
        assert!(toleration("gpu", Some("Exists"), "", "").tolerates(&t));
        assert!(toleration("", Some("Exists"), "", "").tolerates(&t), "an empty key with Exists tolerates everything");
        assert!(!toleration("gpu", None, "no", "NoSchedule").tolerates(&t));
        assert!(!toleration("gpu", None, "yes", "NoExecute").tolerates(&t));
        assert!(!toleration("", None, "", "").tolerates(&t));
    }
}
