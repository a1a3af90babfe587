//! The Deployment controller: rolls the pod template out through
//! ReplicaSets. The ReplicaSet whose template equals the Deployment's is the
//! "new" one (created as `<name>-<pod-template-hash>` when missing); every
//! other owned ReplicaSet is "old". A RollingUpdate grows the new one and
//! shrinks the old ones within maxSurge and maxUnavailable; Recreate empties
//! the old ones first. Each ReplicaSet carries the revision it was rolled out
//! as; old empty ones are kept up to `revisionHistoryLimit` for rollback
//! (which puts an old template back into the Deployment).

pub mod rolling;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use shoal_client::queue::Action;
use shoal_client::ObjectKey;
use shoal_proto::objects::workload::PodTemplateSpec;
use shoal_proto::objects::{time, Deployment, ObjectMeta, ReplicaSet};

use crate::context::Context;
use crate::owners::{self, claim, controller_ref, ignore_gone};
use crate::runner::{all_keys, own_key, Builder, Running};
use rolling::{available, first_replicas, new_replicas, old_scale_down_budget, old_scale_downs, spec};

pub const TEMPLATE_HASH: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const HISTORY_LIMIT: i32 = 10;

pub fn start(context: Arc<Context>) -> Running {
    let informers = &context.informers;
    let deployments = informers.deployments.clone();
    let rs_to_deployment = move |change: &shoal_client::cache::Change<ReplicaSet>| {
        owners::owners_of_change(change, &deployments, |d: &Deployment| &d.spec.selector)
    };
    let builder = Builder::new("deployment")
        .watches(&informers.deployments, own_key)
        .watches(&informers.replica_sets, rs_to_deployment)
        .resyncs(all_keys(&informers.deployments));
    builder.run(context.config.workers, move |key| {
        let context = context.clone();
        async move { reconcile(&context, &key).await }
    })
}

/// A short stable hash of a template, in Kubernetes' alphabet.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let digest = Sha256::digest(&json);
    let mut n = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]));
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    for _ in 0..10 {
        out.push(ALPHABET[(n % ALPHABET.len() as u64) as usize] as char);
        n /= ALPHABET.len() as u64;
    }
    out
}

/// A ReplicaSet's template without the label the controller added.
fn bare_template(rs: &ReplicaSet) -> PodTemplateSpec {
    let mut template = rs.spec.template.clone();
    template.metadata.labels.remove(TEMPLATE_HASH);
    template
}

pub fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

async fn reconcile(context: &Context, key: &ObjectKey) -> Result<Action, shoal_client::Error> {
    let Some(d) = context.informers.deployments.get(key) else { return Ok(Action::Done) };
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::Done);
    }
    let namespace = d.metadata.namespace_or_default().to_string();
    let candidates = context.informers.replica_sets.read(|c| c.list(Some(&namespace)));
    let owned = claim(d.as_ref(), &d.spec.selector, candidates, &context.replica_sets).await?;
    let mut owned: Vec<ReplicaSet> = owned.iter().map(|rs| rs.as_ref().clone()).collect();
    owned.sort_by_key(|rs| (revision_of(rs), rs.metadata.creation_timestamp.clone()));
    let new_index = owned.iter().position(|rs| bare_template(rs) == d.spec.template);
    let now = time::now();

    // A paused Deployment rolls nothing out; only its status is kept.
    let new_index = if d.spec.paused {
        new_index
    } else {
        let (max_surge, max_unavailable) = d.surge_and_unavailable();
        let replicas = d.replicas();
        let new_index = match new_index {
            Some(i) => {
                bump_revision(context, &mut owned, i).await?;
                i
            }
            None => {
                let all: Vec<&ReplicaSet> = owned.iter().collect();
                let size = if d.is_recreate() {
                    if owned.iter().any(|rs| spec(rs) > 0 || rs.status.as_ref().is_some_and(|s| s.replicas > 0)) {
                        0
                    } else {
                        replicas
                    }
                } else {
                    first_replicas(replicas, max_surge, &all)
                };
                let created = create_new(context, &d, &owned, size).await?;
                owned.push(created);
                owned.len() - 1
            }
        };
        let stepped = if d.is_recreate() {
            recreate(context, &d, &mut owned, new_index).await?
        } else {
            roll(context, &d, &mut owned, new_index, max_surge, max_unavailable).await?
        };
        if !stepped {
            clean_history(context, &d, &owned, new_index).await?;
        }
        Some(new_index)
    };
    let new = new_index.map(|i| &owned[i]);
    let all: Vec<&ReplicaSet> = owned.iter().collect();
    let (status, check_again) = status::compute(&d, &all, new, &now);
    let mut updated = d.as_ref().clone();
    if let Some(rs) = new {
        updated.metadata.annotations.insert(REVISION.into(), revision_of(rs).to_string());
    }
    if d.status.as_ref() != Some(&status) || updated.metadata.annotations != d.metadata.annotations {
        updated.status = Some(status);
        ignore_gone(context.deployments.update(&updated).await)?;
    }
    Ok(check_again.map_or(Action::Done, Action::RequeueAfter))
}

/// Makes the new ReplicaSet the latest revision again (after a rollback).
async fn bump_revision(context: &Context, owned: &mut [ReplicaSet], new: usize) -> Result<(), shoal_client::Error> {
    let latest = owned.iter().enumerate().filter(|(i, _)| *i != new).map(|(_, rs)| revision_of(rs)).max().unwrap_or(0);
    if revision_of(&owned[new]) > latest {
        return Ok(());
    }
    let mut rs = owned[new].clone();
    rs.metadata.annotations.insert(REVISION.into(), (latest + 1).to_string());
    if let Some(written) = ignore_gone(context.replica_sets.update(&rs).await)? {
        owned[new] = written;
    }
    Ok(())
}

async fn create_new(
    context: &Context,
    d: &Deployment,
    owned: &[ReplicaSet],
    replicas: i32,
) -> Result<ReplicaSet, shoal_client::Error> {
    let hash = template_hash(&d.spec.template);
    let mut template = d.spec.template.clone();
    template.metadata.labels.insert(TEMPLATE_HASH.into(), hash.clone());
    let mut selector = d.spec.selector.clone();
    selector.match_labels.insert(TEMPLATE_HASH.into(), hash.clone());
    let revision = owned.iter().map(revision_of).max().unwrap_or(0) + 1;
    let mut labels: BTreeMap<String, String> = template.metadata.labels.clone();
    labels.insert(TEMPLATE_HASH.into(), hash.clone());
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: format!("{}-{hash}", d.metadata.name),
            namespace: Some(d.metadata.namespace_or_default().to_string()),
            labels,
            annotations: [(REVISION.to_string(), revision.to_string())].into(),
            owner_references: vec![controller_ref(d)],
            ..Default::default()
        },
        spec: shoal_proto::objects::workload::ReplicaSetSpec {
            replicas: Some(replicas),
            selector,
            template,
            min_ready_seconds: d.spec.min_ready_seconds,
        },
        ..Default::default()
    };
    let created = context.replica_sets.create(&rs).await?;
    tracing::info!(deployment = %d.metadata.name, replicaset = %created.metadata.name, revision, replicas, "created a new ReplicaSet");
    Ok(created)
}

async fn scale(context: &Context, rs: &mut ReplicaSet, replicas: i32) -> Result<bool, shoal_client::Error> {
    if spec(rs) == replicas {
        return Ok(false);
    }
    let mut scaled = rs.clone();
    scaled.spec.replicas = Some(replicas);
    match ignore_gone(context.replica_sets.update(&scaled).await)? {
        Some(written) => {
            tracing::info!(replicaset = %rs.metadata.name, from = spec(rs), to = replicas, "scaled");
            *rs = written;
            Ok(true)
        }
        None => Err(shoal_client::Error::conflict_on(&rs.metadata.name)),
    }
}

/// One step of a rolling update; returns whether anything was scaled.
async fn roll(
    context: &Context,
    d: &Deployment,
    owned: &mut [ReplicaSet],
    new: usize,
    max_surge: i32,
    max_unavailable: i32,
) -> Result<bool, shoal_client::Error> {
    let replicas = d.replicas();
    let target = {
        let all: Vec<&ReplicaSet> = owned.iter().collect();
        new_replicas(replicas, max_surge, &all, &owned[new])
    };
    if scale(context, &mut owned[new], target).await? && target > 0 {
        return Ok(true);
    }
    let old: Vec<usize> = (0..owned.len()).filter(|i| *i != new && spec(&owned[*i]) > 0).collect();
    if old.is_empty() {
        return Ok(false);
    }
    let all: Vec<&ReplicaSet> = owned.iter().collect();
    let budget = old_scale_down_budget(replicas, max_unavailable, &all, &owned[new]);
    let available_now: i32 = owned.iter().map(available).sum();
    let old_sets: Vec<&ReplicaSet> = old.iter().map(|i| &owned[*i]).collect();
    let downs = old_scale_downs(&old_sets, budget, replicas - max_unavailable, available_now);
    let mut stepped = false;
    for (j, size) in downs {
        stepped |= scale(context, &mut owned[old[j]], size).await?;
    }
    Ok(stepped)
}

/// Recreate: every old pod goes before any new pod starts.
async fn recreate(
    context: &Context,
    d: &Deployment,
    owned: &mut [ReplicaSet],
    new: usize,
) -> Result<bool, shoal_client::Error> {
    let mut stepped = false;
    for i in (0..owned.len()).filter(|i| *i != new) {
        stepped |= scale(context, &mut owned[i], 0).await?;
    }
    let old_pods_left =
        owned.iter().enumerate().any(|(i, rs)| i != new && rs.status.as_ref().is_some_and(|s| s.replicas > 0));
    if stepped || old_pods_left {
        return Ok(true);
    }
    scale(context, &mut owned[new], d.replicas()).await
}

/// Deletes the oldest empty old ReplicaSets beyond `revisionHistoryLimit`.
async fn clean_history(
    context: &Context,
    d: &Deployment,
    owned: &[ReplicaSet],
    new: usize,
) -> Result<(), shoal_client::Error> {
    let limit = d.spec.revision_history_limit.unwrap_or(HISTORY_LIMIT).max(0) as usize;
    let empty: Vec<&ReplicaSet> = owned
        .iter()
        .enumerate()
        .filter(|(i, rs)| *i != new && spec(rs) == 0 && rs.status.as_ref().is_none_or(|s| s.replicas == 0))
        .map(|(_, rs)| rs)
        .collect();
    for rs in empty.iter().take(empty.len().saturating_sub(limit)) {
        tracing::info!(replicaset = %rs.metadata.name, "removing beyond the revision history limit");
        ignore_gone(
            context
                .replica_sets
                .delete(rs.metadata.namespace_or_default(), &rs.metadata.name, rs.metadata.revision())
                .await,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hashes_are_stable_and_distinct() {
        let mut a = PodTemplateSpec::default();
        a.metadata.labels.insert("app".into(), "web".into());
        let mut b = a.clone();
        b.metadata.labels.insert("v".into(), "2".into());
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert_eq!(template_hash(&a).len(), 10);
    }
}
