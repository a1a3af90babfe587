//! The scheduler: binds each pending pod to the best node that fits, by a
//! compare-and-swap write of `spec.nodeName`. A pod that fits nowhere gets
//! `PodScheduled=False` with the reasons, and is tried again when nodes or
//! pods change.
//!
//! One worker decides at a time, so two decisions never count the same free
//! room. A bind is "assumed" from the moment it is decided until the pod
//! cache shows it, so the next decision counts it while its write is still
//! on its way to the store (binds are written in the background).

pub mod filter;
pub mod score;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shoal_client::cache::Change;
use shoal_client::queue::Action;
use shoal_client::ObjectKey;
use shoal_proto::objects::meta::set_condition;
use shoal_proto::objects::pod::PodSpec;
use shoal_proto::objects::{time, Condition, Node, Pod};

use crate::context::Context;
use crate::owners::ignore_gone;
use crate::runner::{Builder, Running};
use filter::{refuse, unschedulable_message, Usage};

/// How soon a pod whose bind is still being written is looked at again.
const BIND_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Binds written but not yet seen in the pod cache: pod → (node, spec, owner uid).
type Assumed = Arc<Mutex<HashMap<ObjectKey, (String, PodSpec, Option<String>)>>>;

fn is_pending(pod: &Pod) -> bool {
    pod.spec.node_name.as_deref().unwrap_or_default().is_empty() && pod.is_active()
}

fn pending_keys(context: &Context) -> Vec<ObjectKey> {
    context
        .informers
        .pods
        .read(|c| c.list(None).iter().filter(|p| is_pending(p)).map(|p| ObjectKey::of(p.as_ref())).collect())
}

pub fn start(context: Arc<Context>) -> Running {
    let assumed: Assumed = Arc::default();
    let pods_changed = {
        let (context, assumed) = (context.clone(), assumed.clone());
        move |change: &Change<Pod>| {
            // The cache now shows the bind (or the pod is gone): no need to assume it.
            if change.new.as_ref().is_none_or(|p| !is_pending(p)) {
                assumed.lock().unwrap_or_else(|p| p.into_inner()).remove(&change.key);
            }
            match &change.new {
                Some(pod) if is_pending(pod) => vec![change.key.clone()],
                // A bound pod went away or finished: room freed for the pending ones.
                _ if change.old.as_ref().is_some_and(|p| !is_pending(p)) => pending_keys(&context),
                _ => Vec::new(),
            }
        }
    };
    let nodes_changed = {
        let context = context.clone();
        move |_: &Change<Node>| pending_keys(&context)
    };
    let resync = {
        let context = context.clone();
        move || pending_keys(&context)
    };
    let informers = &context.informers;
    let builder = Builder::new("scheduler")
        .watches(&informers.pods, pods_changed)
        .watches(&informers.nodes, nodes_changed)
        .resyncs(resync);
    builder.run(1, move |key| {
        let (context, assumed) = (context.clone(), assumed.clone());
        async move { schedule(&context, &assumed, &key).await }
    })
}

/// What each node holds: pods the cache shows bound there plus assumed binds.
/// Also how many pods of `owner` each node holds.
fn usage_by_node(context: &Context, assumed: &Assumed, owner: Option<&str>) -> HashMap<String, (Usage, usize)> {
    let mut usage: HashMap<String, (Usage, usize)> = HashMap::new();
    let same_owner = |uid: Option<&str>| owner.is_some() && uid == owner;
    let mut seen = std::collections::HashSet::new();
    context.informers.pods.read(|cache| {
        for pod in cache.list(None).iter().filter(|p| !matches!(p.phase(), "Succeeded" | "Failed")) {
            let Some(node) = pod.spec.node_name.as_deref().filter(|n| !n.is_empty()) else { continue };
            if !pod.is_active() {
                usage.entry(node.to_string()).or_default().0.hold_ports(&pod.spec);
                continue;
            }
            seen.insert(ObjectKey::of(pod.as_ref()));
            let entry = usage.entry(node.to_string()).or_default();
            entry.0.add(&pod.spec);
            if same_owner(pod.metadata.controller().map(|o| o.uid.as_str())) {
                entry.1 += 1;
            }
        }
    });
    for (key, (node, spec, uid)) in assumed.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        if !seen.contains(key) {
            let entry = usage.entry(node.clone()).or_default();
            entry.0.add(spec);
            if same_owner(uid.as_deref()) {
                entry.1 += 1;
            }
        }
    }
    usage
}

/// The best node for `pod`, or the reasons every node refused it.
pub fn choose(pod: &Pod, nodes: &[Arc<Node>], usage: &HashMap<String, (Usage, usize)>) -> Result<String, Vec<String>> {
    let requests = pod.spec.requests();
    let mut feasible = Vec::new();
    let mut reasons = Vec::new();
    for node in nodes {
        let (used, siblings) = usage.get(&node.metadata.name).cloned().unwrap_or_default();
        match refuse(pod, node, &used) {
            Some(reason) => reasons.push(reason),
            None => feasible.push((node, used, siblings)),
        }
    }
    let most = feasible.iter().map(|(_, _, s)| *s).max().unwrap_or(0);
    feasible
        .iter()
        .map(|(node, used, siblings)| {
            let score = score::total(score::least_allocated(node, used, requests), score::spread(*siblings, most));
            // Highest score; ties go to the first name, for determinism.
            ((score, std::cmp::Reverse(node.metadata.name.clone())), node.metadata.name.clone())
        })
        .max()
        .map(|(_, name)| name)
        .ok_or(reasons)
}

async fn schedule(context: &Context, assumed: &Assumed, key: &ObjectKey) -> Result<Action, shoal_client::Error> {
    let Some(pod) = context.informers.pods.get(key) else {
        assumed.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        return Ok(Action::Done);
    };
    if !is_pending(&pod) {
        assumed.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        return Ok(Action::Done);
    }
    if assumed.lock().unwrap_or_else(|p| p.into_inner()).contains_key(key) {
        // Its bind is on its way: look again in case the write fails.
        return Ok(Action::RequeueAfter(BIND_RECHECK));
    }
    let nodes = context.informers.nodes.read(|c| c.list(None));
    let owner = pod.metadata.controller().map(|o| o.uid.clone());
    let usage = usage_by_node(context, assumed, owner.as_deref());
    let now = time::now();
    let mut updated = pod.as_ref().clone();
    let status = updated.status.get_or_insert_with(Default::default);
    match choose(&pod, &nodes, &usage) {
        Ok(node) => {
            set_condition(&mut status.conditions, scheduled("True", None, None), &now);
            updated.spec.node_name = Some(node.clone());
            // Assumed at once, so that the next decision counts it, and written
            // in the background (kube-scheduler's binding cycle): decisions do
            // not wait for the store. A bind that fails is forgotten; the pod
            // is decided again on its next change or at the resync.
            assumed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), (node.clone(), pod.spec.clone(), owner));
            let (pods, assumed, key) = (context.pods.clone(), assumed.clone(), key.clone());
            tokio::spawn(async move {
                match ignore_gone(pods.update_from(&updated, &pod).await) {
                    Ok(Some(_)) => tracing::info!(pod = %key, %node, "bound"),
                    outcome => {
                        if let Err(e) = outcome {
                            tracing::debug!(pod = %key, %node, error = %e, "bind failed; deciding again later");
                        }
                        assumed.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                    }
                }
            });
        }
        Err(reasons) => {
            let message = unschedulable_message(nodes.len(), &reasons);
            if set_condition(
                &mut status.conditions,
                scheduled("False", Some("Unschedulable"), Some(message.clone())),
                &now,
            ) {
                tracing::info!(pod = %key, %message, "cannot schedule");
                ignore_gone(context.pods.update_from(&updated, &pod).await)?;
            }
        }
    }
    Ok(Action::Done)
}

fn scheduled(status: &str, reason: Option<&str>, message: Option<String>) -> Condition {
    Condition {
        type_: "PodScheduled".into(),
        status: status.into(),
        reason: reason.map(String::from),
        message,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {"allocatable": {"cpu": cpu, "memory": "8Gi"}, "conditions": [{"type": "Ready", "status": "True"}]}
            }))
            .expect("node"),
        )
    }

    fn pod(cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "command": ["x"], "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .expect("pod")
    }

    #[test]
    fn the_emptiest_node_without_siblings_wins() {
        let nodes = vec![node("a", "4"), node("b", "4"), node("c", "2")];
        let mut usage = HashMap::new();
        usage.insert("a".to_string(), (Usage { cpu: 1000, memory: 0, pods: 1, ..Default::default() }, 1));
        assert_eq!(choose(&pod("500m"), &nodes, &usage), Ok("b".to_string()));
        usage.insert("b".to_string(), (Usage { cpu: 1000, memory: 0, pods: 1, ..Default::default() }, 1));
        assert_eq!(choose(&pod("500m"), &nodes, &usage), Ok("c".to_string()), "spreading beats a little more room");
    }

    #[test]
    fn a_pod_that_fits_nowhere_gets_every_reason() {
        let nodes = vec![node("a", "1"), node("b", "1")];
        let reasons = choose(&pod("2"), &nodes, &HashMap::new()).expect_err("fits nowhere");
        assert_eq!(unschedulable_message(2, &reasons), "0/2 nodes are available: 2 Insufficient cpu.");
    }
}
