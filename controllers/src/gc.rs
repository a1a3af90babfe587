//! The garbage collector: an object whose every owner is gone is deleted.
//! Deleting a Deployment thus removes its ReplicaSets, and those their pods.
//! An owner missing from the cache is looked up in the store before anything
//! is deleted, since a cache can be a moment behind.

use std::sync::Arc;

use shoal_client::cache::Change;
use shoal_client::informer::Informer;
use shoal_client::queue::Action;
use shoal_client::{Api, ObjectKey};
use shoal_proto::objects::Object;

use crate::context::Context;
use crate::owners::ignore_gone;
use crate::runner::{all_keys, own_key, Builder, Running};

pub fn start(context: Arc<Context>) -> Vec<Running> {
    let informers = &context.informers;
    vec![
        collector(
            &informers.pods,
            &informers.replica_sets,
            context.pods.clone(),
            context.replica_sets.clone(),
            context.config.workers,
        ),
        collector(
            &informers.replica_sets,
            &informers.deployments,
            context.replica_sets.clone(),
            context.deployments.clone(),
            context.config.workers,
        ),
    ]
}

/// Collects dependents of kind `D` whose owners of kind `O` are gone.
fn collector<D: Object, O: Object>(
    dependents: &Informer<D>,
    owners: &Informer<O>,
    dependent_api: Api<D>,
    owner_api: Api<O>,
    workers: usize,
) -> Running {
    // An owner that goes away sends its dependents to the queue.
    let owner_gone = {
        let dependents = dependents.clone();
        move |change: &Change<O>| {
            let Some(old) = change.old.as_ref().filter(|_| change.new.is_none()) else { return Vec::new() };
            let uid = old.meta().uid.clone();
            dependents.read(|c| {
                c.list(None)
                    .iter()
                    .filter(|d| d.meta().owner_references.iter().any(|r| r.uid == uid))
                    .map(|d| ObjectKey::of(d.as_ref()))
                    .collect()
            })
        }
    };
    let builder =
        Builder::new("gc").watches(dependents, own_key).watches(owners, owner_gone).resyncs(all_keys(dependents));
    let (dependents, owners) = (dependents.clone(), owners.clone());
    builder.run(workers, move |key| {
        let (dependents, owners, dependent_api, owner_api) =
            (dependents.clone(), owners.clone(), dependent_api.clone(), owner_api.clone());
        async move { collect(&dependents, &owners, &dependent_api, &owner_api, &key).await }
    })
}

async fn collect<D: Object, O: Object>(
    dependents: &Informer<D>,
    owners: &Informer<O>,
    dependent_api: &Api<D>,
    owner_api: &Api<O>,
    key: &ObjectKey,
) -> Result<Action, shoal_client::Error> {
    let Some(dependent) = dependents.get(key) else { return Ok(Action::Done) };
    let meta = dependent.meta();
    if meta.owner_references.is_empty() {
        return Ok(Action::Done);
    }
    let namespace = meta.namespace_or_default();
    for owner in &meta.owner_references {
        if owner.kind != O::KIND {
            return Ok(Action::Done); // an owner this collector cannot judge
        }
        let cached = owners.get(&ObjectKey::new(if O::NAMESPACED { namespace } else { "" }, &owner.name));
        if cached.is_some_and(|o| o.meta().uid == owner.uid) {
            return Ok(Action::Done);
        }
        if owner_api.get_opt(namespace, &owner.name).await?.is_some_and(|o| o.meta().uid == owner.uid) {
            return Ok(Action::Done);
        }
    }
    tracing::info!(kind = D::KIND, object = %key, "every owner is gone: deleting");
    // Gracefully, where something runs it (a pod's agent stops it first).
    ignore_gone(dependent_api.terminate(namespace, &meta.name, None).await)?;
    Ok(Action::Done)
}
