//! An informer's local copy of one kind: every object by key, plus indexes
//! by label and by one kind-specific value (a pod's node, say), so that
//! controllers read from memory instead of the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use shoal_proto::objects::selector::LabelSelector;
use shoal_proto::objects::Object;

use crate::api::ObjectKey;

/// The index a kind offers beyond labels: e.g. a pod's `spec.nodeName`.
pub type IndexFn<K> = fn(&K) -> Option<String>;

/// One object that changed: what it was and what it is (None: gone).
#[derive(Debug)]
pub struct Change<K> {
    pub key: ObjectKey,
    pub old: Option<Arc<K>>,
    pub new: Option<Arc<K>>,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        Change { key: self.key.clone(), old: self.old.clone(), new: self.new.clone() }
    }
}

pub struct Cache<K> {
    objects: BTreeMap<ObjectKey, Arc<K>>,
    by_label: HashMap<(String, String), BTreeSet<ObjectKey>>,
    by_index: HashMap<String, BTreeSet<ObjectKey>>,
    index: Option<IndexFn<K>>,
    /// Store keys that hold something that is not a valid object, and why.
    pub malformed: BTreeMap<String, String>,
    /// The store revision the cache reflects.
    pub revision: i64,
}

impl<K: Object> Cache<K> {
    pub fn new(index: Option<IndexFn<K>>) -> Cache<K> {
        Cache {
            objects: BTreeMap::new(),
            by_label: HashMap::new(),
            by_index: HashMap::new(),
            index,
            malformed: BTreeMap::new(),
            revision: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.objects.get(key).cloned()
    }

    /// Every object in `namespace`, or in all namespaces.
    pub fn list(&self, namespace: Option<&str>) -> Vec<Arc<K>> {
        match namespace {
            None => self.objects.values().cloned().collect(),
            Some(ns) => self
                .objects
                .range(ObjectKey::new(ns, "")..)
                .take_while(|(k, _)| k.namespace == ns)
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }

    /// Objects in `namespace` that `selector` matches (none for an empty selector).
    pub fn selected(&self, namespace: &str, selector: &LabelSelector) -> Vec<Arc<K>> {
        if selector.is_empty() {
            return Vec::new();
        }
        // Narrow by one matchLabels pair when there is one; check the rest.
        let candidates: Vec<Arc<K>> = match selector.match_labels.iter().next() {
            Some((k, v)) => self
                .by_label
                .get(&(k.clone(), v.clone()))
                .into_iter()
                .flatten()
                .filter(|key| key.namespace == namespace)
                .filter_map(|key| self.objects.get(key).cloned())
                .collect(),
            None => self.list(Some(namespace)),
        };
        candidates.into_iter().filter(|o| selector.matches(&o.meta().labels)).collect()
    }

    /// Objects whose index value is `value`.
    pub fn indexed(&self, value: &str) -> Vec<Arc<K>> {
        self.by_index.get(value).into_iter().flatten().filter_map(|key| self.objects.get(key).cloned()).collect()
    }

    /// Stores an object; returns the change, or None if it was already there
    /// at that resource version.
    pub fn insert(&mut self, object: K) -> Option<Change<K>> {
        let key = ObjectKey::of(&object);
        if let Some(old) = self.objects.get(&key) {
            if old.meta().resource_version == object.meta().resource_version {
                return None;
            }
        }
        self.malformed.remove(&key.store_key::<K>());
        let old = self.remove_entry(&key);
        let new = Arc::new(object);
        for (k, v) in &new.meta().labels {
            self.by_label.entry((k.clone(), v.clone())).or_default().insert(key.clone());
        }
        if let Some(value) = self.index.and_then(|f| f(&new)) {
            self.by_index.entry(value).or_default().insert(key.clone());
        }
        self.objects.insert(key.clone(), new.clone());
        Some(Change { key, old, new: Some(new) })
    }

    /// Forgets an object; returns the change if it was there.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Change<K>> {
        let old = self.remove_entry(key)?;
        Some(Change { key: key.clone(), old: Some(old), new: None })
    }

    fn remove_entry(&mut self, key: &ObjectKey) -> Option<Arc<K>> {
        let old = self.objects.remove(key)?;
        for (k, v) in &old.meta().labels {
            let pair = (k.clone(), v.clone());
            if let Some(set) = self.by_label.get_mut(&pair) {
                set.remove(key);
                if set.is_empty() {
                    self.by_label.remove(&pair);
                }
            }
        }
        if let Some(value) = self.index.and_then(|f| f(&old)) {
            if let Some(set) = self.by_index.get_mut(&value) {
                set.remove(key);
                if set.is_empty() {
                    self.by_index.remove(&value);
                }
            }
        }
        Some(old)
    }

    /// Replaces everything with a fresh listing; returns what changed,
    /// including the objects that vanished while nobody watched.
    pub fn replace(&mut self, objects: Vec<K>, malformed: Vec<(String, String)>, revision: i64) -> Vec<Change<K>> {
        let fresh: BTreeSet<ObjectKey> = objects.iter().map(ObjectKey::of).collect();
        let gone: Vec<ObjectKey> = self.objects.keys().filter(|k| !fresh.contains(*k)).cloned().collect();
        let mut changes: Vec<Change<K>> = gone.iter().filter_map(|k| self.remove(k)).collect();
        changes.extend(objects.into_iter().filter_map(|o| self.insert(o)));
        self.malformed = malformed.into_iter().collect();
        self.revision = revision;
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::objects::Pod;

    fn pod(ns: &str, name: &str, app: &str, node: Option<&str>, rv: i64) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.namespace = Some(ns.into());
        p.metadata.labels.insert("app".into(), app.into());
        p.metadata.resource_version = Some(rv.to_string());
        p.spec.node_name = node.map(String::from);
        p
    }

    fn node_of(p: &Pod) -> Option<String> {
        p.spec.node_name.clone()
    }

    fn selector(app: &str) -> LabelSelector {
        LabelSelector { match_labels: [("app".to_string(), app.to_string())].into(), ..Default::default() }
    }

    #[test]
    fn indexes_follow_inserts_updates_and_removals() {
        let mut cache = Cache::new(Some(node_of as IndexFn<Pod>));
        cache.insert(pod("a", "p1", "web", Some("n1"), 1));
        cache.insert(pod("a", "p2", "web", None, 2));
        cache.insert(pod("b", "p3", "web", Some("n1"), 3));
        assert_eq!(cache.selected("a", &selector("web")).len(), 2);
        assert_eq!(cache.indexed("n1").len(), 2);
        assert!(cache.insert(pod("a", "p1", "web", Some("n1"), 1)).is_none(), "same version: no change");
        // p1 moves to another app and node.
        let change = cache.insert(pod("a", "p1", "db", Some("n2"), 4)).expect("a change");
        assert_eq!(change.old.expect("old").metadata.labels["app"], "web");
        assert_eq!(cache.selected("a", &selector("web")).len(), 1);
        assert_eq!(cache.indexed("n1").len(), 1);
        assert_eq!(cache.indexed("n2").len(), 1);
        cache.remove(&ObjectKey::new("b", "p3"));
        assert!(cache.indexed("n1").is_empty());
        assert_eq!(cache.list(Some("a")).len(), 2);
        assert_eq!(cache.list(None).len(), 2);
        assert!(cache.selected("a", &LabelSelector::default()).is_empty(), "an empty selector selects nothing");
    }

    #[test]
    fn a_relist_reports_what_vanished_and_what_changed() {
        let mut cache = Cache::new(None);
        cache.insert(pod("a", "kept", "web", None, 1));
        cache.insert(pod("a", "changed", "web", None, 2));
        cache.insert(pod("a", "gone", "web", None, 3));
        let changes = cache.replace(
            vec![
                pod("a", "kept", "web", None, 1),
                pod("a", "changed", "web", None, 5),
                pod("a", "new", "web", None, 6),
            ],
            vec![("/registry/pods/a/bad".into(), "not JSON".into())],
            6,
        );
        let mut names: Vec<(String, bool)> = changes.iter().map(|c| (c.key.name.clone(), c.new.is_some())).collect();
        names.sort();
        assert_eq!(names, [("changed".into(), true), ("gone".into(), false), ("new".into(), true)]);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.revision, 6);
        assert_eq!(cache.malformed.len(), 1);
    }
}
