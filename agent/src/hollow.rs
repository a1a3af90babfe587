//! Hollow nodes, as kubemark makes them: `shoal-agent --hollow N` registers
//! N nodes (`<node-name>-0` ... `<node-name>-<N-1>`) from one process, so
//! that the control plane can be measured at a scale real agents could not
//! reach on one machine. Each node registers its Node, keeps its heartbeat
//! Lease, and runs the same pod loop as a real agent ([`crate::agent`]):
//! bound pods are started, reported Running and Ready, stopped, and
//! removed once deleted. Only the runtime differs: it runs nothing (the
//! [fake](crate::runtime::fake) one), so probes count as passing, and no
//! network, proxy, DNS or logs are served.
//!
//! One Pod watch serves every node (its cache is indexed by node). A pod
//! change wakes only the nodes it names; every node also makes a full pass
//! every few seconds. Heartbeats renew every quarter of `--heartbeat-ttl`,
//! as kubelet renews its lease (give hollow nodes a longer TTL, say 40s:
//! 1,000 nodes then renew 100 leases a second).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use shoal_client::informer::{Informer, Shutdown};
use shoal_client::{Api, Store};
use shoal_proto::objects::{Node, Pod};

use crate::agent::Agent;
use crate::config::Config;
use crate::node;
use crate::ports::Ports;
use crate::runtime::fake::FakeRuntime;
use crate::sync::PodSync;

/// How often every hollow node looks at all its pods, change or not.
const FULL_PASS: Duration = Duration::from_secs(5);
/// Node registrations, or node passes, in flight at once.
const IN_FLIGHT: usize = 32;

/// The names of `count` hollow nodes.
pub fn names(prefix: &str, count: u32) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// Node `name` as a hollow node describes itself: what the flags offer, the
/// agent's address, and no pod CIDR (it gives its pods no addresses).
fn describe(config: &Config, name: &str) -> Node {
    let mut node = node::describe(config, &config.address.to_string());
    node.metadata.name = name.to_string();
    node.metadata.labels.insert("kubernetes.io/hostname".into(), name.to_string());
    node.spec.pod_cidr = None;
    node.spec.pod_cidrs.clear();
    if let Some(status) = node.status.as_mut() {
        for address in status.addresses.iter_mut().filter(|a| a.type_ == "Hostname") {
            address.address = name.to_string();
        }
    }
    node
}

/// Registers every node, retrying each until the store takes it.
async fn register_all(nodes: &Api<Node>, config: &Config, names: &[String], shutdown: &Shutdown) {
    futures::stream::iter(names)
        .for_each_concurrent(IN_FLIGHT, |name| async move {
            let described = describe(config, name);
            while !*shutdown.borrow() {
                match node::register(nodes, &described).await {
                    Ok(_) => return,
                    Err(e) => tracing::warn!(node = %name, error = %e, "cannot register the hollow node yet"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
        .await;
}

/// The nodes a pod change concerns: where the pod was, and where it is.
fn nodes_of(change: &shoal_client::cache::Change<Pod>) -> impl Iterator<Item = &String> {
    [&change.old, &change.new].into_iter().flatten().filter_map(|pod| pod.spec.node_name.as_ref())
}

/// Runs `count` hollow nodes until `shutdown`.
pub async fn run(config: Config, count: u32, shutdown: Shutdown) -> anyhow::Result<()> {
    let store = Store::connect_tls(&config.endpoints, Duration::from_secs(5), config.tls.clone())
        .context("cannot reach the store")?;
    let names = names(&config.node_name, count);
    register_all(&Api::new(store.clone()), &config, &names, &shutdown).await;
    tracing::info!(nodes = names.len(), prefix = %config.node_name, "hollow nodes registered");
    let every = (config.heartbeat_ttl / 4).max(Duration::from_secs(1));
    for name in &names {
        tokio::spawn(node::heartbeat(store.clone(), name.clone(), config.heartbeat_ttl, every, shutdown.clone()));
    }

    let api: Api<Pod> = Api::new(store.clone());
    let (pods, _task) = Informer::spawn(api.clone(), None, Some(|p: &Pod| p.spec.node_name.clone()), shutdown.clone());
    let mut changes = pods.subscribe();
    pods.synced().await;
    let address = config.address.to_string();
    let no_services: crate::service_env::ServiceEnv = Arc::new(|_| Vec::new());
    let agents: HashMap<String, Agent<FakeRuntime>> = names
        .iter()
        .map(|name| {
            let runtime = Arc::new(FakeRuntime::default());
            let ports = Arc::new(Ports::new(config.address, config.port_range.clone()));
            let sync = Arc::new(PodSync::new(runtime.clone(), config.restart_backoff, ports, no_services.clone()));
            let agent = Agent::new(name.clone(), address.clone(), pods.clone(), api.clone(), runtime, sync, false);
            (name.clone(), agent)
        })
        .collect();
    let mut full = tokio::time::interval(FULL_PASS);
    let mut shutdown = shutdown;
    loop {
        let mut woken = BTreeSet::new();
        tokio::select! {
            _ = full.tick() => woken.extend(agents.keys().cloned()),
            Some(change) = changes.recv() => {
                woken.extend(nodes_of(&change).cloned());
                while let Ok(change) = changes.try_recv() {
                    woken.extend(nodes_of(&change).cloned());
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
        let passes = woken.iter().filter_map(|name| agents.get(name)).map(Agent::pass);
        futures::stream::iter(passes).buffer_unordered(IN_FLIGHT).collect::<Vec<()>>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn hollow_nodes_are_named_from_the_prefix_and_claim_no_pod_cidr() {
        assert_eq!(names("hollow", 3), ["hollow-0", "hollow-1", "hollow-2"]);
        let config = crate::config::Cli::parse_from(["shoal-agent", "--node-name", "hollow", "--hollow", "2"])
            .validate()
            .expect("valid flags");
        let node = describe(&config, "hollow-1");
        assert_eq!(node.metadata.name, "hollow-1");
        assert_eq!(node.metadata.labels.get("kubernetes.io/hostname").map(String::as_str), Some("hollow-1"));
        assert!(node.spec.pod_cidr.is_none() && node.spec.pod_cidrs.is_empty());
        let status = node.status.expect("a status");
        assert!(status.addresses.iter().any(|a| a.type_ == "Hostname" && a.address == "hollow-1"));
        assert!(status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    }
}
