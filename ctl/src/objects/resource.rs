//! The resource types `shoalctl` knows, by every name kubectl users type.

use shoal_proto::objects::{AnyObject, Object};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Pod,
    Deployment,
    ReplicaSet,
    Node,
    Lease,
    Service,
    Endpoints,
}

impl Resource {
    /// `pods`, `pod`, `po`, `deployments`, `deploy`, ...
    pub fn parse(name: &str) -> Option<Resource> {
        Some(match name.to_ascii_lowercase().as_str() {
            "pods" | "pod" | "po" => Resource::Pod,
            "deployments" | "deployment" | "deploy" | "deployments.apps" | "deployment.apps" => Resource::Deployment,
            "replicasets" | "replicaset" | "rs" | "replicasets.apps" | "replicaset.apps" => Resource::ReplicaSet,
            "nodes" | "node" | "no" => Resource::Node,
            "leases" | "lease" => Resource::Lease,
            "services" | "service" | "svc" => Resource::Service,
            "endpoints" | "ep" => Resource::Endpoints,
            _ => return None,
        })
    }

    /// `deployment/web` or `deployment` and `web`.
    pub fn split(text: &str) -> Option<(Resource, Option<&str>)> {
        match text.split_once('/') {
            Some((kind, name)) => Some((Resource::parse(kind)?, Some(name))),
            None => Some((Resource::parse(text)?, None)),
        }
    }

    /// `deployment.apps`, `pod`: how kubectl names one object in messages.
    pub fn singular(self) -> &'static str {
        match self {
            Resource::Pod => "pod",
            Resource::Deployment => "deployment.apps",
            Resource::ReplicaSet => "replicaset.apps",
            Resource::Node => "node",
            Resource::Lease => "lease.coordination.k8s.io",
            Resource::Service => "service",
            Resource::Endpoints => "endpoints",
        }
    }

    pub fn of(object: &AnyObject) -> Resource {
        match object {
            AnyObject::Pod(_) => Resource::Pod,
            AnyObject::Deployment(_) => Resource::Deployment,
            AnyObject::ReplicaSet(_) => Resource::ReplicaSet,
            AnyObject::Node(_) => Resource::Node,
            AnyObject::Service(_) => Resource::Service,
            AnyObject::Endpoints(_) => Resource::Endpoints,
        }
    }
}

/// Namespace and name of any object, as a manifest gives them.
pub fn name_of(object: &AnyObject) -> (String, String) {
    fn pair<K: Object>(o: &K) -> (String, String) {
        let ns = if K::NAMESPACED { o.meta().namespace_or_default().to_string() } else { String::new() };
        (ns, o.meta().name.clone())
    }
    match object {
        AnyObject::Pod(o) => pair(o),
        AnyObject::Deployment(o) => pair(o),
        AnyObject::ReplicaSet(o) => pair(o),
        AnyObject::Node(o) => pair(o),
        AnyObject::Service(o) => pair(o),
        AnyObject::Endpoints(o) => pair(o),
    }
}
