//! The ReplicaSet controller: keeps `spec.replicas` active pods that match
//! the selector, adopting orphans and releasing pods that stopped matching.
//!
//! Expectations keep it from acting twice on a stale cache: after creating
//! or deleting N pods it waits until the pod informer has shown those N
//! changes (or a while has passed) before it counts pods again. A restarted
//! controller starts with no expectations but with a freshly listed cache,
//! so it never creates duplicates either.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_client::cache::Change;
use shoal_client::queue::Action;
use shoal_client::ObjectKey;
use shoal_proto::objects::meta::condition;
use shoal_proto::objects::workload::ReplicaSetStatus;
use shoal_proto::objects::{time, ObjectMeta, Pod, ReplicaSet};

use crate::context::Context;
use crate::owners::{self, claim, controller_of, controller_ref, ignore_gone};
use crate::runner::{all_keys, Builder, Running};

/// How long unmet expectations hold a ReplicaSet back at most.
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(15);
/// Most pods one reconcile creates or deletes.
const BURST: usize = 500;

#[derive(Default)]
pub struct Expectations(Mutex<HashMap<ObjectKey, (i64, i64, Instant)>>);

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, (i64, i64, Instant)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn expect(&self, key: &ObjectKey, adds: i64, deletes: i64) {
        self.lock().insert(key.clone(), (adds, deletes, Instant::now()));
    }

    pub fn observed(&self, key: &ObjectKey, adds: i64, deletes: i64) {
        if let Some(e) = self.lock().get_mut(key) {
            e.0 -= adds;
            e.1 -= deletes;
        }
    }

    pub fn satisfied(&self, key: &ObjectKey) -> bool {
        self.lock()
            .get(key)
            .is_none_or(|(adds, deletes, at)| (*adds <= 0 && *deletes <= 0) || at.elapsed() > EXPECTATIONS_TIMEOUT)
    }

    pub fn forget(&self, key: &ObjectKey) {
        self.lock().remove(key);
    }
}

pub fn start(context: Arc<Context>) -> Running {
    let expectations = Arc::new(Expectations::default());
    let informers = &context.informers;
    let observe = {
        let (expectations, rs_informer) = (expectations.clone(), informers.replica_sets.clone());
        move |change: &Change<Pod>| {
            // A pod this controller made or removed has shown up in the cache.
            if let (None, Some(new)) = (&change.old, &change.new) {
                if let Some(owner) = controller_of::<ReplicaSet>(&new.metadata) {
                    expectations.observed(&ObjectKey::new(new.metadata.namespace_or_default(), &owner.name), 1, 0);
                }
            }
            if let (Some(old), None) = (&change.old, &change.new) {
                if let Some(owner) = controller_of::<ReplicaSet>(&old.metadata) {
                    expectations.observed(&ObjectKey::new(old.metadata.namespace_or_default(), &owner.name), 0, 1);
                }
            }
            owners::owners_of_change(change, &rs_informer, |rs: &ReplicaSet| &rs.spec.selector)
        }
    };
    let builder = Builder::new("replicaset")
        .watches(&informers.replica_sets, crate::runner::own_key)
        .watches(&informers.pods, observe)
        .resyncs(all_keys(&informers.replica_sets));
    let workers = context.config.workers;
    builder.run(workers, move |key| {
        let (context, expectations) = (context.clone(), expectations.clone());
        async move { reconcile(&context, &expectations, &key).await }
    })
}

async fn reconcile(
    context: &Context,
    expectations: &Expectations,
    key: &ObjectKey,
) -> Result<Action, shoal_client::Error> {
    let Some(rs) = context.informers.replica_sets.get(key) else {
        expectations.forget(key);
        return Ok(Action::Done);
    };
    let namespace = rs.metadata.namespace_or_default().to_string();
    let candidates = context.informers.pods.read(|c| c.list(Some(&namespace)));
    let owned = claim(rs.as_ref(), &rs.spec.selector, candidates, &context.pods).await?;
    let active: Vec<Arc<Pod>> = owned.iter().filter(|p| p.is_active()).cloned().collect();
    if rs.metadata.deletion_timestamp.is_none() && expectations.satisfied(key) {
        let want = rs.replicas().max(0) as usize;
        if active.len() < want {
            create_pods(context, expectations, key, &rs, want - active.len()).await?;
        } else if active.len() > want {
            delete_pods(context, expectations, key, &active, active.len() - want).await?;
        }
    }
    update_status(context, &rs, &owned).await
}

/// A pod stamped from the ReplicaSet's template.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = &rs.spec.template;
    Pod {
        metadata: ObjectMeta {
            generate_name: format!("{}-", rs.metadata.name),
            namespace: Some(rs.metadata.namespace_or_default().to_string()),
            labels: template.metadata.labels.clone(),
            annotations: template.metadata.annotations.clone(),
            owner_references: vec![controller_ref(rs)],
            ..Default::default()
        },
        spec: template.spec.clone(),
        ..Default::default()
    }
}

/// Creates `count` pods in doubling batches (1, 2, 4, ...), stopping at the
/// first failure, as Kubernetes' slow start does.
async fn create_pods(
    context: &Context,
    expectations: &Expectations,
    key: &ObjectKey,
    rs: &ReplicaSet,
    count: usize,
) -> Result<(), shoal_client::Error> {
    let count = count.min(BURST);
    expectations.expect(key, count as i64, 0);
    let pod = pod_from_template(rs);
    let mut created = 0;
    let mut batch = 1;
    while created < count {
        let size = batch.min(count - created);
        let results = futures::future::join_all((0..size).map(|_| context.pods.create(&pod))).await;
        created += size;
        // A create that surely failed will never be observed. One whose
        // outcome is unknown (the store went away mid-request) may yet
        // appear: keep expecting it, so that a slow cache cannot make us
        // create it twice; the expectation times out if it never comes.
        let failed = results.iter().filter(|r| r.as_ref().is_err_and(|e| !outcome_unknown(e))).count();
        if let Some(error) = results.into_iter().find_map(Result::err) {
            expectations.observed(key, (failed + count - created) as i64, 0);
            return Err(error);
        }
        batch *= 2;
    }
    tracing::info!(replicaset = %key, count, "created pods");
    Ok(())
}

/// Whether a failed request may still have taken effect.
fn outcome_unknown(error: &shoal_client::Error) -> bool {
    use tonic::Code;
    match error {
        shoal_client::Error::Store(status) => {
            matches!(
                status.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Internal
            )
        }
        shoal_client::Error::Connect(_) => true,
        _ => false,
    }
}

/// Picks `count` pods to delete, one at a time: unscheduled first, then not
/// running, then not ready, then from the node that holds the most of them
/// (so what stays remains spread), then the youngest.
fn pick_victims(pods: &[Arc<Pod>], count: usize) -> Vec<Arc<Pod>> {
    let mut left: Vec<Arc<Pod>> = pods.to_vec();
    let mut per_node: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for pod in &left {
        *per_node.entry(pod.spec.node_name.clone().unwrap_or_default()).or_default() += 1;
    }
    let mut victims = Vec::new();
    while victims.len() < count && !left.is_empty() {
        let rank = |p: &Arc<Pod>| {
            (
                p.spec.node_name.is_some(),
                p.phase() == "Running",
                p.is_ready(),
                std::cmp::Reverse(per_node.get(&p.spec.node_name.clone().unwrap_or_default()).copied().unwrap_or(0)),
                std::cmp::Reverse(p.metadata.creation_timestamp.clone()),
            )
        };
        let Some(at) = (0..left.len()).min_by_key(|i| rank(&left[*i])) else { break };
        let victim = left.swap_remove(at);
        if let Some(n) = per_node.get_mut(&victim.spec.node_name.clone().unwrap_or_default()) {
            *n -= 1;
        }
        victims.push(victim);
    }
    victims
}

async fn delete_pods(
    context: &Context,
    expectations: &Expectations,
    key: &ObjectKey,
    active: &[Arc<Pod>],
    count: usize,
) -> Result<(), shoal_client::Error> {
    let victims = pick_victims(active, count.min(BURST));
    expectations.expect(key, 0, victims.len() as i64);
    for pod in &victims {
        let meta = &pod.metadata;
        // Graceful, as Kubernetes does it: the node's agent stops the pod, then removes it.
        if ignore_gone(context.pods.terminate(meta.namespace_or_default(), &meta.name, None).await)?.is_none() {
            expectations.observed(key, 0, 1);
        }
    }
    tracing::info!(replicaset = %key, count = victims.len(), "deleted pods");
    Ok(())
}

/// Ready for at least `min_ready` seconds, as of now.
pub fn is_available(pod: &Pod, min_ready: i32) -> bool {
    if !pod.is_ready() {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    let since = pod
        .status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Ready"))
        .and_then(|c| c.last_transition_time.as_deref());
    since.and_then(time::age).is_some_and(|age| age >= Duration::from_secs(min_ready as u64))
}

async fn update_status(context: &Context, rs: &ReplicaSet, owned: &[Arc<Pod>]) -> Result<Action, shoal_client::Error> {
    let active: Vec<&Arc<Pod>> = owned.iter().filter(|p| p.is_active()).collect();
    let template = &rs.spec.template.metadata.labels;
    let min_ready = rs.spec.min_ready_seconds;
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: active
            .iter()
            .filter(|p| template.iter().all(|(k, v)| p.metadata.labels.get(k) == Some(v)))
            .count() as i32,
        ready_replicas: active.iter().filter(|p| p.is_ready()).count() as i32,
        available_replicas: active.iter().filter(|p| is_available(p, min_ready)).count() as i32,
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default(),
    };
    let waiting_for_min_ready = status.available_replicas < status.ready_replicas;
    if rs.status.as_ref() != Some(&status) {
        let mut updated = rs.clone();
        updated.status = Some(status);
        ignore_gone(context.replica_sets.update(&updated).await)?;
    }
    Ok(if waiting_for_min_ready { Action::RequeueAfter(Duration::from_secs(1)) } else { Action::Done })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_hold_until_observed_or_forgotten() {
        let e = Expectations::default();
        let key = ObjectKey::new("default", "rs");
        assert!(e.satisfied(&key));
        e.expect(&key, 2, 0);
        assert!(!e.satisfied(&key));
        e.observed(&key, 1, 0);
        assert!(!e.satisfied(&key));
        e.observed(&key, 1, 0);
        assert!(e.satisfied(&key));
        e.expect(&key, 0, 1);
        e.forget(&key);
        assert!(e.satisfied(&key));
    }

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: &str) -> Arc<Pod> {
        let mut p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": [{"name": "c", "command": ["x"]}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .expect("pod");
        p.spec.node_name = node.map(String::from);
        Arc::new(p)
    }

    #[test]
    fn scale_down_removes_the_least_useful_pods_first() {
        let pods = vec![
            pod("old-ready", Some("n"), "Running", true, "2026-01-01T00:00:00Z"),
            pod("new-ready", Some("n"), "Running", true, "2026-01-02T00:00:00Z"),
            pod("unready", Some("n"), "Running", false, "2026-01-01T00:00:00Z"),
            pod("pending", Some("n"), "Pending", false, "2026-01-01T00:00:00Z"),
            pod("unscheduled", None, "Pending", false, "2026-01-01T00:00:00Z"),
        ];
        let order: Vec<String> = pick_victims(&pods, 5).iter().map(|p| p.metadata.name.clone()).collect();
        assert_eq!(order, ["unscheduled", "pending", "unready", "new-ready", "old-ready"]);
    }

    #[test]
    fn scale_down_keeps_what_stays_spread() {
        let t = "2026-01-01T00:00:00Z";
        let mut pods = Vec::new();
        for (node, n) in [("a", 7), ("b", 7), ("c", 6)] {
            for i in 0..n {
                pods.push(pod(&format!("{node}{i}"), Some(node), "Running", true, t));
            }
        }
        let victims = pick_victims(&pods, 15);
        let mut left: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for p in pods.iter().filter(|p| !victims.iter().any(|v| v.metadata.name == p.metadata.name)) {
            *left.entry(p.spec.node_name.clone().unwrap_or_default()).or_default() += 1;
        }
        let mut counts: Vec<usize> = left.values().copied().collect();
        counts.sort();
        assert_eq!(counts, [1, 2, 2]);
    }

    #[test]
    fn pods_are_stamped_from_the_template_and_owned() {
        let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-abc", "namespace": "prod", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "command": ["x"]}]}}}
        }))
        .expect("rs");
        let pod = pod_from_template(&rs);
        assert_eq!(pod.metadata.generate_name, "web-abc-");
        assert_eq!(pod.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(pod.metadata.labels["app"], "web");
        let owner = pod.metadata.controller().expect("controller");
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("ReplicaSet", "u1"));
    }
}
