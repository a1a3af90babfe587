//! The node-lifecycle controller. A node is alive while its heartbeat key
//! (`/registry/leases/<node>`, attached to a store lease the agent renews)
//! exists. When the key vanishes, the node is marked `Ready=Unknown` and
//! tainted `node.kubernetes.io/unreachable:NoExecute`; after
//! `--pod-eviction-timeout` its pods that do not tolerate the taint are
//! deleted, so their owners recreate them elsewhere. When most nodes go
//! silent at once (more likely the network than the nodes), evictions are
//! rate limited to one node per `--disrupted-eviction-interval`. A heartbeat
//! coming back lifts the taint.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_client::cache::Change;
use shoal_client::queue::Action;
use shoal_client::ObjectKey;
use shoal_proto::objects::meta::{condition, set_condition};
use shoal_proto::objects::node::{Taint, TAINT_UNREACHABLE};
use shoal_proto::objects::{time, Condition, Lease, Node};

use crate::context::Context;
use crate::owners::ignore_gone;
use crate::runner::{all_keys, own_key, Builder, Running};

/// A node this young that has not been heard from yet is still starting.
const STARTUP_GRACE: Duration = Duration::from_secs(10);
/// Above this share of silent nodes (with at least 3 nodes), the cluster is
/// "disrupted" and evictions slow down.
const DISRUPTED_SHARE: f64 = 0.55;

/// What the controller remembers between reconciles.
#[derive(Default)]
struct Memory {
    last_disrupted_eviction: Option<Instant>,
    /// Nodes that heartbeated at least once: no startup grace for them.
    heard_from: HashSet<String>,
}

pub fn start(context: Arc<Context>) -> Running {
    let memory: Arc<Mutex<Memory>> = Arc::default();
    let informers = &context.informers;
    let lease_to_node = |change: &Change<Lease>| vec![ObjectKey::new("", &change.key.name)];
    let builder = Builder::new("nodelifecycle")
        .watches(&informers.nodes, own_key)
        .watches(&informers.leases, lease_to_node)
        .resyncs(all_keys(&informers.nodes));
    builder.run(context.config.workers, move |key| {
        let (context, memory) = (context.clone(), memory.clone());
        async move { reconcile(&context, &memory, &key).await }
    })
}

fn heartbeating(context: &Context, node: &str) -> bool {
    context.informers.leases.get(&ObjectKey::new("", node)).is_some()
}

fn unreachable_taint(now: &str) -> Taint {
    Taint {
        key: TAINT_UNREACHABLE.into(),
        value: String::new(),
        effect: "NoExecute".into(),
        time_added: Some(now.into()),
    }
}

async fn reconcile(context: &Context, memory: &Mutex<Memory>, key: &ObjectKey) -> Result<Action, shoal_client::Error> {
    let Some(node) = context.informers.nodes.get(key) else { return Ok(Action::Done) };
    let now = time::now();
    if heartbeating(context, &key.name) {
        memory.lock().unwrap_or_else(|p| p.into_inner()).heard_from.insert(key.name.clone());
        return recover(context, &node, &now).await;
    }
    let age = node.metadata.creation_timestamp.as_deref().and_then(time::age).unwrap_or_default();
    let heard_from = memory.lock().unwrap_or_else(|p| p.into_inner()).heard_from.contains(&key.name);
    if age < STARTUP_GRACE && !heard_from {
        return Ok(Action::RequeueAfter(STARTUP_GRACE - age));
    }
    let Some(node) = mark_unreachable(context, &node, &now).await? else { return Ok(Action::Done) };
    let tainted_at = node
        .spec
        .taints
        .iter()
        .find(|t| t.key == TAINT_UNREACHABLE)
        .and_then(|t| t.time_added.as_deref())
        .and_then(time::age)
        .unwrap_or_default();
    let timeout = context.config.pod_eviction_timeout;
    if tainted_at < timeout {
        return Ok(Action::RequeueAfter(timeout - tainted_at));
    }
    if disrupted(context) {
        let mut memory = memory.lock().unwrap_or_else(|p| p.into_inner());
        let interval = context.config.disrupted_eviction_interval;
        if let Some(wait) = memory.last_disrupted_eviction.and_then(|at| interval.checked_sub(at.elapsed())) {
            return Ok(Action::RequeueAfter(wait));
        }
        memory.last_disrupted_eviction = Some(Instant::now());
        tracing::warn!(node = %key, "most nodes are silent: evicting one node's pods at a time");
    }
    evict(context, &node, tainted_at).await
}

/// Most nodes silent at once.
fn disrupted(context: &Context) -> bool {
    let names: Vec<String> =
        context.informers.nodes.read(|c| c.list(None).iter().map(|n| n.metadata.name.clone()).collect());
    let silent = names.iter().filter(|n| !heartbeating(context, n)).count();
    is_disruption(names.len(), silent)
}

/// More than 55% of at least 3 nodes silent: more likely the network than
/// the nodes.
fn is_disruption(nodes: usize, silent: usize) -> bool {
    nodes >= 3 && silent as f64 > DISRUPTED_SHARE * nodes as f64
}

/// Ready=Unknown and the NoExecute taint; returns the node as written (or
/// as it was, when already marked), None if it vanished meanwhile.
async fn mark_unreachable(context: &Context, node: &Node, now: &str) -> Result<Option<Node>, shoal_client::Error> {
    let mut marked = node.clone();
    let status = marked.status.get_or_insert_with(Default::default);
    let ready = Condition {
        type_: "Ready".into(),
        status: "Unknown".into(),
        reason: Some("NodeStatusUnknown".into()),
        message: Some("Kubelet stopped posting node status.".into()),
        ..Default::default()
    };
    let mut changed = set_condition(&mut status.conditions, ready, now);
    if !marked.spec.taints.iter().any(|t| t.key == TAINT_UNREACHABLE) {
        marked.spec.taints.push(unreachable_taint(now));
        changed = true;
    }
    if !changed {
        return Ok(Some(marked));
    }
    tracing::warn!(node = %node.metadata.name, "no heartbeat: marked unreachable");
    ignore_gone(context.nodes.update(&marked).await)
}

/// Lifts the taint once the heartbeat is back.
async fn recover(context: &Context, node: &Node, now: &str) -> Result<Action, shoal_client::Error> {
    let marked = node.spec.taints.iter().any(|t| t.key == TAINT_UNREACHABLE);
    let unknown = node
        .status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Ready"))
        .is_some_and(|c| c.reason.as_deref() == Some("NodeStatusUnknown"));
    if !marked && !unknown {
        return Ok(Action::Done);
    }
    let mut healed = node.clone();
    healed.spec.taints.retain(|t| t.key != TAINT_UNREACHABLE);
    if unknown {
        let status = healed.status.get_or_insert_with(Default::default);
        let ready = Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("heartbeat resumed".into()),
            ..Default::default()
        };
        set_condition(&mut status.conditions, ready, now);
    }
    tracing::info!(node = %node.metadata.name, "heartbeat back: taint lifted");
    ignore_gone(context.nodes.update(&healed).await)?;
    Ok(Action::Done)
}

/// Deletes the node's pods that do not tolerate the taint (or whose
/// tolerationSeconds have run out).
async fn evict(context: &Context, node: &Node, tainted_for: Duration) -> Result<Action, shoal_client::Error> {
    let taint = unreachable_taint("");
    let pods = context.informers.pods.read(|c| c.indexed(&node.metadata.name));
    let mut next_check: Option<Duration> = None;
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let tolerated_for = pod
            .spec
            .tolerations
            .iter()
            .filter(|t| t.tolerates(&taint))
            .map(|t| t.toleration_seconds.map_or(Duration::MAX, |s| Duration::from_secs(s.max(0) as u64)))
            .max();
        match tolerated_for {
            Some(Duration::MAX) => continue,
            Some(limit) if limit > tainted_for => {
                let wait = limit - tainted_for;
                next_check = Some(next_check.map_or(wait, |n| n.min(wait)));
                continue;
            }
            _ => {}
        }
        let meta = &pod.metadata;
        tracing::warn!(pod = %format!("{}/{}", meta.namespace_or_default(), meta.name), node = %node.metadata.name, "evicting");
        ignore_gone(context.pods.delete(meta.namespace_or_default(), &meta.name, None).await)?;
    }
    Ok(next_check.map_or(Action::Done, Action::RequeueAfter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_nodes_silent_at_once_is_a_disruption() {
        assert!(!is_disruption(3, 1), "one of three dies: evict at once");
        assert!(is_disruption(3, 2));
        assert!(!is_disruption(10, 5));
        assert!(is_disruption(10, 6));
        assert!(!is_disruption(2, 2), "too few nodes to tell");
    }
}
