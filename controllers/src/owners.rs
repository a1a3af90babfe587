//! Owner references: which controller owns an object, adopting orphans that
//! match an owner's selector, releasing dependents that no longer match, and
//! routing a dependent's change to its owner's work queue.

use std::sync::Arc;

use shoal_client::cache::Change;
use shoal_client::informer::Informer;
use shoal_client::{Api, ObjectKey};
use shoal_proto::objects::selector::LabelSelector;
use shoal_proto::objects::{Object, ObjectMeta, OwnerReference};

/// A reference that makes `owner` the controller of a dependent.
pub fn controller_ref<O: Object>(owner: &O) -> OwnerReference {
    OwnerReference {
        api_version: O::API_VERSION.into(),
        kind: O::KIND.into(),
        name: owner.meta().name.clone(),
        uid: owner.meta().uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controller reference of `meta` if its controller is of kind `O`.
pub fn controller_of<O: Object>(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.controller().filter(|r| r.kind == O::KIND)
}

/// The owners of kind `O` a dependent's change concerns: its controller
/// before and after, or, for an orphan, every owner whose selector matches it
/// (one of them may adopt it).
pub fn owners_of_change<D: Object, O: Object>(
    change: &Change<D>,
    owners: &Informer<O>,
    selector: fn(&O) -> &LabelSelector,
) -> Vec<ObjectKey> {
    let mut keys = Vec::new();
    for dependent in [&change.old, &change.new].into_iter().flatten() {
        let meta = dependent.meta();
        let namespace = meta.namespace_or_default();
        match meta.controller() {
            Some(owner) if owner.kind == O::KIND => keys.push(ObjectKey::new(namespace, &owner.name)),
            Some(_) => {}
            None => owners.read(|cache| {
                for owner in cache.list(Some(namespace)) {
                    let s = selector(&owner);
                    if !s.is_empty() && s.matches(&meta.labels) {
                        keys.push(ObjectKey::of(owner.as_ref()));
                    }
                }
            }),
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The dependents `owner` controls after adopting matching orphans and
/// releasing what no longer matches. Failed adoptions are left for the next
/// reconcile.
pub async fn claim<D: Object, O: Object>(
    owner: &O,
    selector: &LabelSelector,
    candidates: Vec<Arc<D>>,
    api: &Api<D>,
) -> Result<Vec<Arc<D>>, shoal_client::Error> {
    let uid = &owner.meta().uid;
    let mut owned = Vec::new();
    for dependent in candidates {
        let meta = dependent.meta();
        let matches = !selector.is_empty() && selector.matches(&meta.labels);
        match meta.controller() {
            Some(r) if &r.uid == uid => {
                if matches {
                    owned.push(dependent);
                } else {
                    let mut released = dependent.as_ref().clone();
                    released.meta_mut().owner_references.retain(|r| &r.uid != uid);
                    ignore_gone(api.update(&released).await)?;
                }
            }
            Some(_) => {}
            None if matches && owner.meta().deletion_timestamp.is_none() && meta.deletion_timestamp.is_none() => {
                let mut adopted = dependent.as_ref().clone();
                adopted.meta_mut().owner_references.push(controller_ref(owner));
                match api.update(&adopted).await {
                    Ok(updated) => owned.push(Arc::new(updated)),
                    Err(e) if e.is_conflict() || e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            None => {}
        }
    }
    Ok(owned)
}

/// Treats "it changed or vanished meanwhile" as done: the change brings the
/// object back to the queue anyway.
pub fn ignore_gone<T>(result: Result<T, shoal_client::Error>) -> Result<Option<T>, shoal_client::Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_conflict() || e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}
