//! The agent's Node: registered at start with what the host offers, and
//! kept alive by a heartbeat — a Lease object attached to a store lease the
//! agent renews every second. When the agent stops, the store lease
//! expires, the Lease vanishes, and the node-lifecycle controller notices.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_client::informer::Shutdown;
use shoal_client::{Api, Store};
use shoal_proto::etcdserverpb::LeaseGrantRequest;
use shoal_proto::objects::meta::set_condition;
use shoal_proto::objects::node::{NodeAddress, NodeStatus};
use shoal_proto::objects::{time, Condition, Lease, Node, ObjectMeta};

use crate::config::Config;
use crate::host;
use crate::net::cidr::Cidr;

/// What this node offers: the flags, else the host.
pub fn resources(config: &Config) -> BTreeMap<String, String> {
    let cpus = config.cpus.clone().unwrap_or_else(|| host::cpus().to_string());
    let memory = config.memory.clone().unwrap_or_else(|| format!("{}Ki", host::memory_bytes().unwrap_or(0) / 1024));
    [("cpu".to_string(), cpus), ("memory".to_string(), memory), ("pods".to_string(), config.max_pods.to_string())]
        .into()
}

/// The Node as this agent describes it.
pub fn describe(config: &Config, address: &str) -> Node {
    let resources = resources(config);
    let now = time::now();
    let mut status = NodeStatus {
        capacity: resources.clone(),
        allocatable: resources,
        conditions: Vec::new(),
        addresses: vec![
            NodeAddress { type_: "InternalIP".into(), address: address.into() },
            NodeAddress { type_: "Hostname".into(), address: host::hostname() },
        ],
    };
    set_condition(&mut status.conditions, ready(), &now);
    Node {
        metadata: ObjectMeta {
            name: config.node_name.clone(),
            labels: [("kubernetes.io/hostname".to_string(), config.node_name.clone())].into(),
            ..Default::default()
        },
        spec: shoal_proto::objects::node::NodeSpec {
            pod_cidr: Some(config.pod_cidr.to_string()),
            pod_cidrs: vec![config.pod_cidr.to_string()],
            ..Default::default()
        },
        status: Some(status),
        ..Default::default()
    }
}

fn ready() -> Condition {
    Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: Some("KubeletReady".into()),
        message: Some("shoal-agent is posting ready status".into()),
        ..Default::default()
    }
}

/// Why `node` cannot join: another Node already gives its pods addresses
/// from an overlapping CIDR (two bridges on one network would each answer
/// for the other's pods).
pub async fn cidr_taken(api: &Api<Node>, node: &Node) -> Result<Option<String>, shoal_client::Error> {
    let Some(mine) = node.spec.pod_cidr.as_deref().and_then(|c| c.parse::<Cidr>().ok()) else { return Ok(None) };
    let others = api.list(None).await?.items;
    Ok(others.iter().filter(|other| other.metadata.name != node.metadata.name).find_map(|other| {
        let theirs = other.spec.pod_cidr.as_deref()?.parse::<Cidr>().ok()?;
        mine.overlaps(&theirs).then(|| {
            format!(
                "--pod-cidr {mine} overlaps node {:?}'s pod CIDR {theirs}: give each node a network of its own",
                other.metadata.name
            )
        })
    }))
}

/// Creates the Node, or brings an existing one's status and the agent's
/// annotations up to date (its spec — taints, cordon — belongs to the
/// operator and the controllers).
pub async fn register(api: &Api<Node>, node: &Node) -> Result<Node, shoal_client::Error> {
    match api.create(node).await {
        Err(shoal_client::Error::AlreadyExists { .. }) => {
            let fresh = node.status.clone().unwrap_or_default();
            let now = time::now();
            api.modify("", &node.metadata.name, |current| {
                // The agent's own annotations (its logs address) are refreshed too.
                for (key, value) in &node.metadata.annotations {
                    current.metadata.annotations.insert(key.clone(), value.clone());
                }
                // The pod CIDR is the agent's flag, not the operator's edit.
                current.spec.pod_cidr = node.spec.pod_cidr.clone();
                current.spec.pod_cidrs = node.spec.pod_cidrs.clone();
                let status = current.status.get_or_insert_with(Default::default);
                status.capacity = fresh.capacity.clone();
                status.allocatable = fresh.allocatable.clone();
                status.addresses = fresh.addresses.clone();
                set_condition(&mut status.conditions, ready(), &now);
            })
            .await
        }
        other => other,
    }
}

/// Renews heartbeat lease `lease` (or grants a new one when it is 0 or
/// gone) and makes sure the Lease object is there; returns the lease id, 0
/// when the store could not be reached.
pub async fn beat(store: &Store, node: &str, lease: i64, ttl: Duration) -> i64 {
    if lease != 0 {
        if store.keep_alive_once(lease).await.is_some_and(|ttl| ttl > 0) {
            return lease;
        }
        store.rotate();
    }
    let ttl_seconds = ttl.as_secs().max(1) as i64;
    let Ok(granted) = store.lease().lease_grant(LeaseGrantRequest { ttl: ttl_seconds, id: 0 }).await else { return 0 };
    let id = granted.into_inner().id;
    let mut object = Lease::default();
    object.metadata.name = node.into();
    object.spec.holder_identity = Some(node.into());
    object.spec.lease_duration_seconds = Some(ttl_seconds as i32);
    object.spec.renew_time = Some(time::now());
    match Api::<Lease>::new(store.clone()).put_leased(&object, id).await {
        Ok(_) => id,
        Err(_) => 0,
    }
}

/// Beats every `every` until shutdown.
pub async fn heartbeat(store: Store, node: String, ttl: Duration, every: Duration, mut shutdown: Shutdown) {
    let mut lease = 0;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => lease = beat(&store, &node, lease, ttl).await,
            _ = shutdown.changed() => return,
        }
    }
}
