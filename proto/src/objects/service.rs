//! Service (a stable port in front of the pods a selector picks) and
//! Endpoints (where those pods can be reached right now, kept by the
//! endpoints controller). An endpoint is a pod's address (the node's, for a
//! pod on the host's network) and its port. Every node's proxy serves a
//! Service at its cluster IP (a virtual address from the cluster's Service
//! range), and a `NodePort` Service also at the node's own address.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::meta::{Condition, ObjectMeta};
use super::IntOrString;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ServiceSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// The pods behind the Service; none selects no pods (Endpoints are then
    /// the user's to write).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// `ClusterIP` (the default): served at the cluster IP; `NodePort`:
    /// at every node's address too.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The Service's virtual address from the cluster's Service range,
    /// given once when it is created (or asked for); `None` makes a
    /// headless Service, with no address and no proxying.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    #[serde(default, rename = "clusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<String>,
}

/// The `clusterIP` of a headless Service.
pub const HEADLESS: &str = "None";

impl ServiceSpec {
    pub fn type_(&self) -> &str {
        self.type_.as_deref().unwrap_or("ClusterIP")
    }

    /// Whether the Service is served at every node's address.
    pub fn is_node_port(&self) -> bool {
        self.type_() == "NodePort"
    }

    /// The cluster IP given or asked for, if it is an address.
    pub fn cluster_ip(&self) -> Option<std::net::Ipv4Addr> {
        self.cluster_ip.as_deref().and_then(|ip| ip.parse().ok())
    }

    pub fn is_headless(&self) -> bool {
        self.cluster_ip.as_deref() == Some(HEADLESS)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Required when the Service has more than one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port at the cluster IP (and, for a NodePort Service, at every
    /// node's address).
    pub port: i32,
    /// The pods' port: a number, or the name of a container port (which
    /// finds ports the node allocated). Default: `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// TCP, the only protocol proxied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl ServicePort {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    pub fn protocol(&self) -> &str {
        self.protocol.as_deref().unwrap_or("TCP")
    }

    /// The target, `port` when none is given.
    pub fn target(&self) -> IntOrString {
        self.target_port.clone().unwrap_or(IntOrString::Int(self.port))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceStatus {
    /// `PortsAllocated`: False with reason `PortConflict` when another
    /// Service already holds one of its ports (it is then not served).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The condition saying whether a Service's ports are its own.
pub const PORTS_ALLOCATED: &str = "PortsAllocated";

impl Service {
    /// Whether the endpoints controller gave this NodePort Service its
    /// ports: only then does the node proxy listen for it at node addresses.
    pub fn ports_allocated(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| super::meta::condition(&s.conditions, PORTS_ALLOCATED))
            .is_some_and(|c| c.is_true())
    }
}

/// Kubernetes' Endpoints: no spec, only `subsets`, each a set of addresses
/// that share the same ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoints {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<EndpointSubset>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSubset {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<EndpointAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ready_addresses: Vec<EndpointAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointAddress {
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<ObjectReference>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReference {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl Endpoints {
    /// The ready addresses serving the Service port named `port_name`
    /// (empty for an unnamed port), in the order the object lists them.
    pub fn ready(&self, port_name: &str) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for subset in &self.subsets {
            let Some(port) = subset.ports.iter().find(|p| p.name.as_deref().unwrap_or_default() == port_name) else {
                continue;
            };
            let Ok(port) = u16::try_from(port.port) else { continue };
            for address in &subset.addresses {
                if let Ok(ip) = address.ip.parse() {
                    out.push(SocketAddr::new(ip, port));
                }
            }
        }
        out
    }

    /// How many ready and not-ready addresses the object lists.
    pub fn counts(&self) -> (usize, usize) {
        self.subsets.iter().fold((0, 0), |(r, n), s| (r + s.addresses.len(), n + s.not_ready_addresses.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_addresses_follow_the_port_name_in_each_subset() {
        let endpoints: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "subsets": [
                {"addresses": [{"ip": "127.0.0.2"}, {"ip": "127.0.0.3"}], "ports": [{"name": "http", "port": 20001}]},
                {"addresses": [{"ip": "127.0.0.2"}], "notReadyAddresses": [{"ip": "127.0.0.3"}],
                 "ports": [{"name": "http", "port": 20002}, {"name": "admin", "port": 20003}]}
            ]
        }))
        .expect("endpoints");
        let shown: Vec<String> = endpoints.ready("http").iter().map(|a| a.to_string()).collect();
        assert_eq!(shown, ["127.0.0.2:20001", "127.0.0.3:20001", "127.0.0.2:20002"]);
        assert_eq!(endpoints.ready("admin").len(), 1);
        assert!(endpoints.ready("").is_empty());
        assert_eq!(endpoints.counts(), (3, 1));
    }
}
