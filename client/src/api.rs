//! The typed object client. Every write is one Txn: creates compare
//! `create_revision == 0`, updates and conditional deletes compare the key's
//! `mod_revision` with the object's `resourceVersion`, and a fenced client
//! also compares its leader key, so a deposed leader's writes are refused.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::marker::PhantomData;

use shoal_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use shoal_proto::etcdserverpb::{
    request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp,
    TxnRequest, TxnResponse,
};
use shoal_proto::mvccpb::KeyValue;
use shoal_proto::objects::validation::{self, validate};
use shoal_proto::objects::{time, Object, DEFAULT_NAMESPACE};

use crate::error::{Error, Result};
use crate::store::Store;

/// Which object: its namespace (empty for cluster-scoped kinds) and name.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey { namespace: namespace.into(), name: name.into() }
    }

    pub fn of<K: Object>(object: &K) -> ObjectKey {
        let meta = object.meta();
        let namespace = if K::NAMESPACED { meta.namespace_or_default().to_string() } else { String::new() };
        ObjectKey { namespace, name: meta.name.clone() }
    }

    /// Parses a store key of kind `K` back into namespace and name.
    pub fn from_store_key<K: Object>(key: &[u8]) -> Option<ObjectKey> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(&K::prefix(None))?;
        if K::NAMESPACED {
            let (namespace, name) = rest.split_once('/')?;
            Some(ObjectKey::new(namespace, name))
        } else {
            Some(ObjectKey::new("", rest))
        }
    }

    pub fn store_key<K: Object>(&self) -> String {
        K::key(&self.namespace, &self.name)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// The leader key a fenced client's writes depend on.
#[derive(Clone, Debug)]
pub struct Fence {
    pub key: String,
    /// The leader key's create revision when this component won.
    pub create_revision: i64,
    pub component: String,
}

/// A listing: the objects, the revision it was taken at, and the keys that
/// held something that is not a valid object of the kind.
#[derive(Debug)]
pub struct ObjectList<K> {
    pub items: Vec<K>,
    pub revision: i64,
    pub malformed: Vec<(String, String)>,
}

/// Objects of kind `K`.
pub struct Api<K> {
    store: Store,
    fence: Option<Fence>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api { store: self.store.clone(), fence: self.fence.clone(), kind: PhantomData }
    }
}

/// Reads an object of kind `K` from a key-value pair, checking that it is
/// well formed, valid, and named as its key says; sets `resourceVersion`.
pub fn decode<K: Object>(kv: &KeyValue) -> Result<K> {
    let key = String::from_utf8_lossy(&kv.key).into_owned();
    let malformed = |reason: String| Error::Malformed { key: key.clone(), reason };
    let mut object: K = validation::decode(&kv.value).map_err(malformed)?;
    validate(&object).map_err(|e| malformed(e.to_string()))?;
    let expected = ObjectKey::from_store_key::<K>(&kv.key).ok_or_else(|| malformed("not a key of this kind".into()))?;
    if ObjectKey::of(&object) != expected {
        return Err(malformed(format!("the object is named {}, not as its key says", ObjectKey::of(&object))));
    }
    object.set_type();
    object.meta_mut().resource_version = Some(kv.mod_revision.to_string());
    Ok(object)
}

pub use shoal_proto::keys::prefix_end;

pub(crate) fn compare(key: &str, target: CompareTarget, union: TargetUnion) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(union),
    }
}

pub(crate) fn op(request: request_op::Request) -> RequestOp {
    RequestOp { request: Some(request) }
}

fn put_op(key: &str, value: Vec<u8>) -> RequestOp {
    op(request_op::Request::RequestPut(PutRequest { key: key.as_bytes().to_vec(), value, ..Default::default() }))
}

/// A key written in the same transaction as an object, which must not
/// exist yet: what the object takes for its own (a cluster IP, say).
#[derive(Clone, Debug)]
pub struct Claim {
    pub key: String,
    pub value: Vec<u8>,
}

/// Makes the claim of an object as it is about to be written.
pub type ClaimFor<'a, K> = &'a (dyn Fn(&K) -> Result<Claim> + Sync);

fn get_op(key: &str) -> RequestOp {
    op(request_op::Request::RequestRange(RangeRequest { key: key.as_bytes().to_vec(), ..Default::default() }))
}

/// A random lowercase token of `len` characters from Kubernetes' alphabet
/// for generated names (no vowels, no confusable digits).
fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::with_capacity(len);
    let mut bits = RandomState::new().hash_one(std::time::SystemTime::now());
    for _ in 0..len {
        out.push(ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char);
        bits /= ALPHABET.len() as u64;
        if bits == 0 {
            bits = RandomState::new().hash_one(out.as_str());
        }
    }
    out
}

/// A random version-4 UUID.
pub fn new_uid() -> String {
    let state = RandomState::new();
    let (a, b) = (state.hash_one(1u8), state.hash_one(2u8));
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

impl<K: Object> Api<K> {
    pub fn new(store: Store) -> Api<K> {
        Api { store, fence: None, kind: PhantomData }
    }

    /// The same client, whose writes succeed only while `fence` holds.
    pub fn fenced(&self, fence: Option<Fence>) -> Api<K> {
        Api { store: self.store.clone(), fence, kind: PhantomData }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn key(namespace: &str, name: &str) -> String {
        let namespace = if namespace.is_empty() { DEFAULT_NAMESPACE } else { namespace };
        K::key(namespace, name)
    }

    /// The object, or None when there is none.
    pub async fn get_opt(&self, namespace: &str, name: &str) -> Result<Option<K>> {
        let key = Self::key(namespace, name);
        let request = RangeRequest { key: key.into_bytes(), ..Default::default() };
        let response = self.range(request).await?;
        response.kvs.first().map(decode::<K>).transpose()
    }

    pub async fn get(&self, namespace: &str, name: &str) -> Result<K> {
        self.get_opt(namespace, name).await?.ok_or_else(|| Error::not_found::<K>(name))
    }

    /// Every object in `namespace` (every namespace when None), at one
    /// revision, read in pages of [`crate::pages::LIST_CHUNK`].
    pub async fn list(&self, namespace: Option<&str>) -> Result<ObjectList<K>> {
        self.list_chunked(namespace, crate::pages::LIST_CHUNK).await
    }

    /// Creates the object; fails if one of that name exists. Fills in the
    /// uid, the creation time, generation 1, the default namespace, and a
    /// name from `generateName`.
    pub async fn create(&self, object: &K) -> Result<K> {
        self.create_claiming(object, None).await
    }

    /// [`Api::create`], writing the key `claim` makes of the object as it is
    /// written (its uid given) in the same transaction; fails with
    /// [`Error::Claimed`] when that key exists.
    pub async fn create_claiming(&self, object: &K, claim: Option<ClaimFor<'_, K>>) -> Result<K> {
        let mut object = object.clone();
        object.set_type();
        let meta = object.meta_mut();
        if meta.name.is_empty() && !meta.generate_name.is_empty() {
            meta.name = format!("{}{}", meta.generate_name, random_token(5));
        }
        if K::NAMESPACED {
            meta.namespace = Some(meta.namespace_or_default().to_string());
        }
        meta.uid = new_uid();
        meta.creation_timestamp = Some(time::now());
        meta.deletion_timestamp = None;
        meta.deletion_grace_period_seconds = None;
        meta.resource_version = None;
        meta.generation = 1;
        validate(&object)?;
        let claim = claim.map(|make| make(&object)).transpose()?;
        let claim = claim.as_ref();
        let key = object.key_of();
        let value = serde_json::to_vec(&object).map_err(|e| Error::Connect(e.to_string()))?;
        let mut compares = vec![compare(&key, CompareTarget::Create, TargetUnion::CreateRevision(0))];
        let mut success = vec![put_op(&key, value)];
        if let Some(claim) = claim {
            compares.push(compare(&claim.key, CompareTarget::Create, TargetUnion::CreateRevision(0)));
            success.push(put_op(&claim.key, claim.value.clone()));
        }
        let txn =
            TxnRequest { compare: self.with_fence(compares), success, failure: self.fence_probe(vec![get_op(&key)]) };
        let response = self.txn(txn).await?;
        if !response.succeeded {
            self.check_fence(&response)?;
            let exists = response.responses.first().is_some_and(|r| match &r.response {
                Some(response_op::Response::ResponseRange(range)) => !range.kvs.is_empty(),
                _ => false,
            });
            if let (Some(claim), false) = (claim, exists) {
                return Err(Error::Claimed { key: claim.key.clone() });
            }
            // A retried request whose first attempt did land finds its own object.
            let ours = response.responses.first().and_then(|r| match &r.response {
                Some(response_op::Response::ResponseRange(range)) => {
                    range.kvs.first().and_then(|kv| decode::<K>(kv).ok())
                }
                _ => None,
            });
            return match ours {
                Some(existing) if existing.meta().uid == object.meta().uid => Ok(existing),
                _ => Err(Error::exists::<K>(&object.meta().name)),
            };
        }
        object.meta_mut().resource_version = Some(revision_of(&response).to_string());
        Ok(object)
    }

    /// Replaces the object if it is unchanged since `resourceVersion` (when
    /// set). Keeps uid and creation time; bumps `generation` when the spec
    /// changed.
    pub async fn update(&self, object: &K) -> Result<K> {
        let meta = object.meta();
        let namespace = meta.namespace_or_default().to_string();
        let current = self.get(&namespace, &meta.name).await?;
        let current_revision = current.meta().revision().unwrap_or(0);
        if meta.revision().is_some_and(|r| r != current_revision) {
            return Err(Error::conflict::<K>(&meta.name));
        }
        self.update_from(object, &current).await
    }

    /// Replaces `current`, as a cache shows it (its `resourceVersion` set),
    /// with `object`, without reading it first: a conflict when the store
    /// holds a newer version. For writers that act on a watch cache.
    pub async fn update_from(&self, object: &K, current: &K) -> Result<K> {
        self.update_claiming(object, current, None).await
    }

    /// [`Api::update_from`], writing the key `claim` makes of the object as
    /// it is written in the same transaction; fails with
    /// [`Error::Claimed`] when that key exists.
    pub async fn update_claiming(&self, object: &K, current: &K, claim: Option<ClaimFor<'_, K>>) -> Result<K> {
        let Some(current_revision) = current.meta().revision() else {
            return Err(Error::conflict::<K>(&current.meta().name));
        };
        let mut object = object.clone();
        object.set_type();
        let spec_changed = object.spec_json() != current.spec_json();
        let now = object.meta_mut();
        let before = current.meta();
        now.uid = before.uid.clone();
        now.creation_timestamp = before.creation_timestamp.clone();
        now.namespace = before.namespace.clone();
        now.generation = before.generation.max(1) + i64::from(spec_changed);
        now.resource_version = None;
        validate(&object)?;
        let claim = claim.map(|make| make(&object)).transpose()?;
        let claim = claim.as_ref();
        let key = object.key_of();
        let value = serde_json::to_vec(&object).map_err(|e| Error::Connect(e.to_string()))?;
        let mut compares = vec![compare(&key, CompareTarget::Mod, TargetUnion::ModRevision(current_revision))];
        let mut success = vec![put_op(&key, value)];
        let mut failure = Vec::new();
        if let Some(claim) = claim {
            compares.push(compare(&claim.key, CompareTarget::Create, TargetUnion::CreateRevision(0)));
            success.push(put_op(&claim.key, claim.value.clone()));
            failure.push(get_op(&claim.key));
        }
        let txn = TxnRequest { compare: self.with_fence(compares), success, failure: self.fence_probe(failure) };
        let response = self.txn(txn).await?;
        if !response.succeeded {
            self.check_fence(&response)?;
            let claimed = claim.is_some()
                && response.responses.first().is_some_and(|r| match &r.response {
                    Some(response_op::Response::ResponseRange(range)) => !range.kvs.is_empty(),
                    _ => false,
                });
            return Err(match claim {
                Some(claim) if claimed => Error::Claimed { key: claim.key.clone() },
                _ => Error::conflict::<K>(&object.meta().name),
            });
        }
        object.meta_mut().resource_version = Some(revision_of(&response).to_string());
        Ok(object)
    }

    /// Reads the object, applies `change`, and writes it back; starts over
    /// when someone else wrote in between (up to 20 times).
    pub async fn modify(&self, namespace: &str, name: &str, change: impl Fn(&mut K)) -> Result<K> {
        let mut attempts = 0;
        loop {
            let mut object = self.get(namespace, name).await?;
            change(&mut object);
            match self.update(&object).await {
                Err(e) if e.is_conflict() && attempts < 20 => attempts += 1,
                other => return other,
            }
        }
    }

    /// Deletes the object, if its `resourceVersion` is still `precondition`
    /// when one is given. Returns what was deleted.
    pub async fn delete(&self, namespace: &str, name: &str, precondition: Option<i64>) -> Result<Option<K>> {
        let key = Self::key(namespace, name);
        let mut compares = Vec::new();
        if let Some(revision) = precondition {
            compares.push(compare(&key, CompareTarget::Mod, TargetUnion::ModRevision(revision)));
        }
        let txn = TxnRequest {
            compare: self.with_fence(compares),
            success: vec![op(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.clone().into_bytes(),
                prev_kv: true,
                ..Default::default()
            }))],
            failure: self.fence_probe(vec![get_op(&key)]),
        };
        let response = self.txn(txn).await?;
        if !response.succeeded {
            self.check_fence(&response)?;
            let exists = response.responses.first().is_some_and(
                |r| matches!(&r.response, Some(response_op::Response::ResponseRange(range)) if !range.kvs.is_empty()),
            );
            return Err(if exists { Error::conflict::<K>(name) } else { Error::not_found::<K>(name) });
        }
        let deleted = response.responses.first().and_then(|r| match &r.response {
            Some(response_op::Response::ResponseDeleteRange(d)) => Some(d.clone()),
            _ => None,
        });
        match deleted {
            Some(d) if d.deleted > 0 => Ok(d.prev_kvs.first().and_then(|kv| decode::<K>(kv).ok())),
            _ => Err(Error::not_found::<K>(name)),
        }
    }

    /// Writes the object whatever is there, attached to store lease `lease`:
    /// it vanishes when the lease expires (heartbeats).
    pub async fn put_leased(&self, object: &K, lease: i64) -> Result<K> {
        let mut object = object.clone();
        object.set_type();
        let meta = object.meta_mut();
        if meta.uid.is_empty() {
            meta.uid = new_uid();
        }
        meta.creation_timestamp.get_or_insert_with(time::now);
        meta.generation = meta.generation.max(1);
        meta.resource_version = None;
        validate(&object)?;
        let value = serde_json::to_vec(&object).map_err(|e| Error::Connect(e.to_string()))?;
        let request = PutRequest { key: object.key_of().into_bytes(), value, lease, ..Default::default() };
        let response = self
            .store
            .call(|s| {
                let request = request.clone();
                async move { s.kv().put(request).await }
            })
            .await?
            .into_inner();
        object.meta_mut().resource_version = response.header.map(|h| h.revision.to_string());
        Ok(object)
    }

    pub(crate) async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        self.store.range(request).await
    }

    async fn txn(&self, txn: TxnRequest) -> Result<TxnResponse> {
        self.store.txn(txn).await
    }

    fn with_fence(&self, mut compares: Vec<Compare>) -> Vec<Compare> {
        if let Some(fence) = &self.fence {
            compares.push(compare(
                &fence.key,
                CompareTarget::Create,
                TargetUnion::CreateRevision(fence.create_revision),
            ));
        }
        compares
    }

    /// Failure ops that read the fence key last, to tell a lost leadership
    /// from a conflict.
    fn fence_probe(&self, mut ops: Vec<RequestOp>) -> Vec<RequestOp> {
        if let Some(fence) = &self.fence {
            ops.push(get_op(&fence.key));
        }
        ops
    }

    fn check_fence(&self, response: &TxnResponse) -> Result<()> {
        let Some(fence) = &self.fence else { return Ok(()) };
        let holds = response.responses.last().is_some_and(|r| match &r.response {
            Some(response_op::Response::ResponseRange(range)) => {
                range.kvs.first().is_some_and(|kv| kv.create_revision == fence.create_revision)
            }
            _ => false,
        });
        if holds {
            Ok(())
        } else {
            Err(Error::Fenced { component: fence.component.clone() })
        }
    }
}

fn revision_of(response: &TxnResponse) -> i64 {
    response.header.as_ref().map_or(0, |h| h.revision)
}

impl<K: Object> Api<K> {
    /// Deletes an object as Kubernetes does: one that something may be
    /// running (a pod bound to a node) is only marked (deletionTimestamp,
    /// and the grace period its processes get to stop), and whoever runs it
    /// removes it once they have stopped; anything else is removed at once.
    /// `grace` overrides the object's own grace period; `Some(0)` removes
    /// at once. Returns the object as marked, or as it was when removed.
    pub async fn terminate(&self, namespace: &str, name: &str, grace: Option<i64>) -> Result<K> {
        for _ in 0..20 {
            let object = self.get(namespace, name).await?;
            let Some(own_grace) = object.deletion_grace().filter(|_| grace != Some(0)) else {
                match self.delete(namespace, name, object.meta().revision()).await {
                    Ok(_) => return Ok(object),
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(e),
                }
            };
            if object.meta().deletion_timestamp.is_some() {
                return Ok(object);
            }
            let mut marked = object.clone();
            marked.meta_mut().deletion_timestamp = Some(time::now());
            marked.meta_mut().deletion_grace_period_seconds = Some(grace.unwrap_or(own_grace).max(0));
            match self.update(&marked).await {
                Ok(marked) => return Ok(marked),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict::<K>(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::objects::{Node, Pod};

    #[test]
    fn store_keys_parse_back() {
        assert_eq!(ObjectKey::from_store_key::<Pod>(b"/registry/pods/ns/p1"), Some(ObjectKey::new("ns", "p1")));
        assert_eq!(ObjectKey::from_store_key::<Node>(b"/registry/nodes/n1"), Some(ObjectKey::new("", "n1")));
        assert_eq!(ObjectKey::from_store_key::<Pod>(b"/registry/pods/nonamespace"), None);
        assert_eq!(ObjectKey::from_store_key::<Pod>(b"/registry/nodes/n1"), None);
    }

    #[test]
    fn generated_tokens_and_uids_look_right() {
        let token = random_token(5);
        assert_eq!(token.len(), 5);
        assert!(token.bytes().all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)));
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
        assert_ne!(new_uid(), new_uid());
    }

    #[test]
    fn malformed_objects_are_named_by_key() {
        let kv = |key: &str, value: &str| KeyValue {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            mod_revision: 7,
            ..Default::default()
        };
        let good =
            r#"{"metadata":{"name":"p1","namespace":"ns"},"spec":{"containers":[{"name":"c","command":["x"]}]}}"#;
        let pod: Pod = decode(&kv("/registry/pods/ns/p1", good)).expect("decodes");
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(pod.kind, "Pod");
        for (key, value, says) in [
            ("/registry/pods/ns/p1", "garbage", "not JSON"),
            ("/registry/pods/ns/p2", good, "not as its key says"),
            (
                "/registry/pods/ns/p1",
                r#"{"metadata":{"name":"p1","namespace":"ns"}}"#,
                "spec.containers: Required value",
            ),
            (
                "/registry/pods/ns/p1",
                r#"{"kind":"Node","metadata":{"name":"p1","namespace":"ns"},"spec":{"containers":[{"name":"c","command":["x"]}]}}"#,
                "kind is not Pod",
            ),
        ] {
            let err = decode::<Pod>(&kv(key, value)).expect_err("malformed").to_string();
            assert!(err.starts_with(key) && err.contains(says), "{err}");
        }
    }
}
