//! The control plane's objects: Node, Pod, ReplicaSet, Deployment, Service
//! and Endpoints, shaped like their Kubernetes counterparts. Each is stored as JSON at
//! `/registry/<resource>/[<namespace>/]<name>`; its `resourceVersion` is the
//! key's `mod_revision`.
//!
//! # Layout
//! - [`meta`]: `metadata`, owner references and status conditions.
//! - [`pod`], [`node`], [`workload`], [`service`]: the objects; [`lease`]: a
//!   node's heartbeat.
//! - [`selector`]: label selectors; [`security`]: a container's securityContext.
//! - [`quantity`]: `500m`, `128Mi` and the like; [`cidr`]: IPv4 networks.
//! - [`time`]: RFC 3339 timestamps.
//! - [`validation`]: field-by-field checks with Kubernetes' messages.

pub mod cidr;
pub mod lease;
pub mod meta;
pub mod node;
pub mod pod;
pub mod quantity;
pub mod security;
pub mod selector;
pub mod service;
pub mod time;
pub mod validation;
pub mod workload;

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use lease::Lease;
pub use meta::{Condition, ObjectMeta, OwnerReference};
pub use node::Node;
pub use pod::Pod;
pub use service::{Endpoints, Service};
pub use workload::{Deployment, ReplicaSet};

/// Where every object key starts.
pub const REGISTRY: &str = "/registry/";
/// The namespace of an object that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What the store, the typed client and the controllers need to know of a kind.
pub trait Object: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    const KIND: &'static str;
    const API_VERSION: &'static str;
    /// Plural and lower case: the key segment after `/registry/`.
    const RESOURCE: &'static str;
    const NAMESPACED: bool;

    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// Field-by-field checks of the spec (metadata is checked for every kind).
    fn validate_spec(&self, errors: &mut validation::FieldErrors);

    /// The spec as JSON, to tell a spec change (which bumps `generation`) from a
    /// status or metadata change.
    fn spec_json(&self) -> serde_json::Value;

    /// `Kind.group`, as Kubernetes names a kind in its messages (`Deployment.apps`).
    fn qualified_kind() -> String {
        match Self::API_VERSION.split_once('/') {
            Some((group, _)) => format!("{}.{group}", Self::KIND),
            None => Self::KIND.to_string(),
        }
    }

    /// The store key of the object named `name` in `namespace`.
    fn key(namespace: &str, name: &str) -> String {
        if Self::NAMESPACED {
            format!("{REGISTRY}{}/{namespace}/{name}", Self::RESOURCE)
        } else {
            format!("{REGISTRY}{}/{name}", Self::RESOURCE)
        }
    }

    /// The key prefix of every object of this kind in `namespace`, or in
    /// every namespace when None.
    fn prefix(namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if Self::NAMESPACED => format!("{REGISTRY}{}/{ns}/", Self::RESOURCE),
            _ => format!("{REGISTRY}{}/", Self::RESOURCE),
        }
    }

    /// This object's key.
    fn key_of(&self) -> String {
        Self::key(self.meta().namespace_or_default(), &self.meta().name)
    }

    /// Fills in `apiVersion` and `kind` when a manifest left them out.
    fn set_type(&mut self);

    /// Seconds the object's processes get to stop when it is deleted, for an
    /// object that something may be running (a pod bound to a node): it is
    /// then only marked for deletion, and whoever runs it removes it. None
    /// when deleting it may remove it at once.
    fn deletion_grace(&self) -> Option<i64>;
}

macro_rules! object {
    ($ty:ty, $kind:literal, $api:literal, $resource:literal, $namespaced:literal, $validate:path, $grace:expr) => {
        object!($ty, $kind, $api, $resource, $namespaced, $validate, $grace, spec);
    };
    ($ty:ty, $kind:literal, $api:literal, $resource:literal, $namespaced:literal, $validate:path, $grace:expr, $spec:ident) => {
        impl Object for $ty {
            const KIND: &'static str = $kind;
            const API_VERSION: &'static str = $api;
            const RESOURCE: &'static str = $resource;
            const NAMESPACED: bool = $namespaced;

            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }

            fn validate_spec(&self, errors: &mut validation::FieldErrors) {
                $validate(self, errors)
            }

            fn spec_json(&self) -> serde_json::Value {
                serde_json::to_value(&self.$spec).unwrap_or_default()
            }

            fn set_type(&mut self) {
                if self.api_version.is_empty() {
                    self.api_version = $api.into();
                }
                if self.kind.is_empty() {
                    self.kind = $kind.into();
                }
            }

            fn deletion_grace(&self) -> Option<i64> {
                let grace: fn(&$ty) -> Option<i64> = $grace;
                grace(self)
            }
        }
    };
}

object!(Pod, "Pod", "v1", "pods", true, validation::pod, |pod| {
    // A pod that may be running on a node: its agent stops it, then removes it.
    let runs_somewhere = pod.spec.node_name.is_some() && !matches!(pod.phase(), "Succeeded" | "Failed");
    runs_somewhere.then(|| pod.spec.grace_period().max(0))
});
object!(Node, "Node", "v1", "nodes", false, validation::node, |_| None);
object!(ReplicaSet, "ReplicaSet", "apps/v1", "replicasets", true, validation::replica_set, |_| None);
object!(Deployment, "Deployment", "apps/v1", "deployments", true, validation::deployment, |_| None);
object!(Service, "Service", "v1", "services", true, validation::service, |_| None);
// Endpoints have no spec: their subsets are what a change changes.
object!(Endpoints, "Endpoints", "v1", "endpoints", true, validation::endpoints, |_| None, subsets);
object!(Lease, "Lease", "coordination.k8s.io/v1", "leases", false, validation::lease, |_| None);

/// A count, or a percentage of some total (`maxSurge: 25%`, `port: http`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

impl Default for IntOrString {
    fn default() -> Self {
        IntOrString::Int(0)
    }
}

impl IntOrString {
    /// The value against `total`: a count as is, a percentage of `total`
    /// rounded up or down. None if it is neither.
    pub fn scaled(&self, total: i32, round_up: bool) -> Option<i32> {
        match self {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(s) => {
                let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
                let product = percent * i64::from(total);
                let value = if round_up { (product + 99).div_euclid(100) } else { product.div_euclid(100) };
                i32::try_from(value).ok()
            }
        }
    }
}

/// Any object, as a manifest or a listing holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyObject {
    Node(Node),
    Pod(Pod),
    ReplicaSet(ReplicaSet),
    Deployment(Deployment),
    Service(Service),
    Endpoints(Endpoints),
}

/// Kinds a manifest may hold, for "no kind X" messages.
pub const KINDS: [&str; 6] = ["Node", "Pod", "ReplicaSet", "Deployment", "Service", "Endpoints"];

impl AnyObject {
    /// Reads an object of any known kind from JSON, by its `kind`.
    pub fn from_value(value: serde_json::Value) -> Result<AnyObject, String> {
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_string();
        let strict = |e: serde_json::Error| format!("{kind} is invalid: strict decoding error: {e}");
        Ok(match kind.as_str() {
            "Node" => AnyObject::Node(serde_json::from_value(value).map_err(strict)?),
            "Pod" => AnyObject::Pod(serde_json::from_value(value).map_err(strict)?),
            "ReplicaSet" => AnyObject::ReplicaSet(serde_json::from_value(value).map_err(strict)?),
            "Deployment" => AnyObject::Deployment(serde_json::from_value(value).map_err(strict)?),
            "Service" => AnyObject::Service(serde_json::from_value(value).map_err(strict)?),
            "Endpoints" => AnyObject::Endpoints(serde_json::from_value(value).map_err(strict)?),
            "" => return Err("Object 'Kind' is missing".into()),
            other => return Err(format!("no matches for kind \"{other}\": the kinds are {}", KINDS.join(", "))),
        })
    }
}
