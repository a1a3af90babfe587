//! The calls kube-apiserver's etcd3 storage layer makes, reproduced with the
//! etcd-client crate: create as Txn(mod_revision == 0) then put, update
//! and delete as Txn(mod_revision == X) then write else get (retried with
//! the value the else branch read), paginated lists pinned to the first
//! page's revision, watches from rv+1 with prev_kv and progress notify,
//! the compactor's Txn on `compact_rev_key` then Compact, and events on
//! leases the lease manager reuses and never keeps alive.
//!
//! Every call goes through a client that asks for a leader (`hasleader`),
//! as the apiserver's does.

use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, GetResponse, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions, WatchStream,
};

/// The key the compactors of all apiservers agree through.
pub const COMPACT_REV_KEY: &str = "compact_rev_key";
/// The lease manager's defaults: reuse a lease for up to 5% of the TTL,
/// capped at 60 s, and attach at most 1000 objects to one.
const LEASE_REUSE_PERCENT: f64 = 0.05;
const LEASE_REUSE_MAX_SECONDS: i64 = 60;
const LEASE_MAX_OBJECTS: u64 = 1000;

pub type Result<T> = std::result::Result<T, etcd_client::Error>;

/// One apiserver's storage layer.
pub struct KubeStorage {
    pub client: Client,
    leases: LeaseManager,
}

#[derive(Default)]
struct LeaseManager {
    id: i64,
    expires: Option<Instant>,
    attached: u64,
}

/// One object as the apiserver reads it: its value and resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub value: Vec<u8>,
    pub rev: i64,
}

/// A paginated list: its items, the revision every page was read at, and
/// each page's (count, more) as etcd answered them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    pub items: Vec<(String, Object)>,
    pub revision: i64,
    pub pages: Vec<(i64, bool)>,
}

/// The end of the range of every key under `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Where the next page starts (the continue token's key), if there is one.
pub fn continue_key(page: &GetResponse) -> Option<Vec<u8>> {
    let last = page.kvs().last().filter(|_| page.more())?;
    let mut next = last.key().to_vec();
    next.push(0);
    Some(next)
}

fn object_of(response: &GetResponse) -> Option<Object> {
    response.kvs().first().map(|kv| Object { value: kv.value().to_vec(), rev: kv.mod_revision() })
}

fn else_read(responses: &[TxnOpResponse]) -> Option<Object> {
    match responses.first() {
        Some(TxnOpResponse::Get(get)) => object_of(get),
        _ => None,
    }
}

fn header_revision(responses: &[TxnOpResponse]) -> i64 {
    match responses.first() {
        Some(TxnOpResponse::Put(put)) => put.header().map_or(0, |h| h.revision()),
        Some(TxnOpResponse::Delete(delete)) => delete.header().map_or(0, |h| h.revision()),
        _ => 0,
    }
}

impl KubeStorage {
    pub async fn connect(endpoints: &[String]) -> Result<KubeStorage> {
        let options = ConnectOptions::new().with_require_leader(true).with_connect_timeout(Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options)).await?;
        Ok(KubeStorage { client, leases: LeaseManager::default() })
    }

    /// The apiserver's /healthz probe of etcd: a linearizable get.
    pub async fn healthy(&mut self) -> Result<i64> {
        self.client.get("/registry/health", None).await.map(|r| r.count())
    }

    /// Status.DbSize, which the apiserver reports as the storage size.
    pub async fn db_size(&mut self) -> Result<i64> {
        self.client.status().await.map(|s| s.db_size())
    }

    /// The store's current revision (a linearizable read's header).
    pub async fn revision(&mut self) -> Result<i64> {
        self.client.get("/registry/health", None).await.map(|r| r.header().map_or(0, |h| h.revision()))
    }

    pub async fn get(&mut self, key: &str) -> Result<Option<Object>> {
        self.client.get(key, None).await.map(|r| object_of(&r))
    }

    /// Create: the revision it was written at, or None when the key exists.
    pub async fn create(&mut self, key: &str, value: &[u8], ttl: Option<i64>) -> Result<Option<i64>> {
        let options = self.ttl_options(ttl).await?;
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, options)]);
        let response = self.client.txn(txn).await?;
        Ok(response.succeeded().then(|| header_revision(&response.op_responses())))
    }

    /// GuaranteedUpdate from `cached` (possibly stale): applies `update` to
    /// the value until the write lands; the new object and how many times
    /// the write found another in its place.
    pub async fn guaranteed_update(
        &mut self,
        key: &str,
        cached: Option<Object>,
        update: impl Fn(&[u8]) -> Vec<u8>,
    ) -> Result<(Object, u32)> {
        let mut current = match cached {
            Some(object) => Some(object),
            None => self.get(key).await?,
        };
        let mut conflicts = 0;
        loop {
            let (value, rev) = current.as_ref().map_or((&[][..], 0), |o| (&o.value[..], o.rev));
            let new_value = update(value);
            let txn = Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                .and_then([TxnOp::put(key, new_value.clone(), None)])
                .or_else([TxnOp::get(key, None)]);
            let response = self.client.txn(txn).await?;
            let responses = response.op_responses();
            if response.succeeded() {
                return Ok((Object { value: new_value, rev: header_revision(&responses) }, conflicts));
            }
            conflicts += 1;
            current = else_read(&responses);
        }
    }

    /// The conditional delete: the revision of the delete, None when the
    /// key is gone, and the conflicts it met.
    pub async fn delete(&mut self, key: &str, cached: Option<Object>) -> Result<(Option<i64>, u32)> {
        let mut current = match cached {
            Some(object) => Some(object),
            None => self.get(key).await?,
        };
        let mut conflicts = 0;
        while let Some(object) = current {
            let txn = Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, object.rev)])
                .and_then([TxnOp::delete(key, None)])
                .or_else([TxnOp::get(key, None)]);
            let response = self.client.txn(txn).await?;
            let responses = response.op_responses();
            if response.succeeded() {
                return Ok((Some(header_revision(&responses)), conflicts));
            }
            conflicts += 1;
            current = else_read(&responses);
        }
        Ok((None, conflicts))
    }

    /// A recursive list in pages of `limit`: the first at the current
    /// revision, the rest at that revision from the last key + "\0".
    pub async fn list(&mut self, prefix: &str, limit: i64) -> Result<List> {
        let mut list = List { items: Vec::new(), revision: 0, pages: Vec::new() };
        let mut start = prefix.as_bytes().to_vec();
        loop {
            let page = self.list_page(prefix, start, limit, list.revision).await?;
            if list.revision == 0 {
                list.revision = page.header().map_or(0, |h| h.revision());
            }
            list.pages.push((page.count(), page.more()));
            for kv in page.kvs() {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                list.items.push((key, Object { value: kv.value().to_vec(), rev: kv.mod_revision() }));
            }
            match continue_key(&page) {
                Some(next) => start = next,
                None => return Ok(list),
            }
        }
    }

    /// One page of a list under `prefix` from `start`; at `revision`
    /// unless it is 0 (the first page).
    pub async fn list_page(&mut self, prefix: &str, start: Vec<u8>, limit: i64, revision: i64) -> Result<GetResponse> {
        let mut options = GetOptions::new().with_range(prefix_end(prefix)).with_limit(limit);
        if revision != 0 {
            options = options.with_revision(revision);
        }
        self.client.get(start, Some(options)).await
    }

    /// How many keys are under `prefix` (the apiserver's object count).
    pub async fn count(&mut self, prefix: &str) -> Result<i64> {
        let options = GetOptions::new().with_range(prefix_end(prefix)).with_count_only();
        self.client.get(prefix, Some(options)).await.map(|r| r.count())
    }

    /// A watch of everything under `prefix` after resourceVersion `rv`.
    pub async fn watch(&mut self, prefix: &str, rv: i64) -> Result<WatchStream> {
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(rv + 1)
            .with_prev_key()
            .with_progress_notify();
        self.client.watch(prefix, Some(options)).await
    }

    /// One round of the compactor: `time` is the version of the compact
    /// key this apiserver last saw, `rev` the revision it recorded then.
    /// Only the apiserver whose Txn wins compacts, to `rev`. Returns the
    /// new (time, revision to compact next round) and whether it compacted.
    pub async fn compact(&mut self, time: i64, rev: i64) -> Result<(i64, i64, bool)> {
        let txn = Txn::new()
            .when([Compare::version(COMPACT_REV_KEY, CompareOp::Equal, time)])
            .and_then([TxnOp::put(COMPACT_REV_KEY, rev.to_string(), None)])
            .or_else([TxnOp::get(COMPACT_REV_KEY, None)]);
        let response = self.client.txn(txn).await?;
        let current = response.header().map_or(0, |h| h.revision());
        if !response.succeeded() {
            let seen = match response.op_responses().first() {
                Some(TxnOpResponse::Get(get)) => get.kvs().first().map_or(0, |kv| kv.version()),
                _ => 0,
            };
            return Ok((seen, current, false));
        }
        if rev != 0 {
            self.client.compact(rev, None).await?;
        }
        Ok((time + 1, current, rev != 0))
    }

    /// The put options for an object with a TTL: a lease the manager
    /// reuses while it outlives the TTL by less than the reuse window.
    async fn ttl_options(&mut self, ttl: Option<i64>) -> Result<Option<PutOptions>> {
        let Some(ttl) = ttl else { return Ok(None) };
        let now = Instant::now();
        let reuse = ((LEASE_REUSE_PERCENT * ttl as f64) as i64).min(LEASE_REUSE_MAX_SECONDS);
        let seconds = |s: i64| Duration::from_secs(s.max(0) as u64);
        let leases = &mut self.leases;
        leases.attached += 1;
        let reusable =
            leases.expires.is_some_and(|expires| now + seconds(ttl) < expires && now + seconds(ttl + reuse) > expires)
                && leases.attached <= LEASE_MAX_OBJECTS;
        if !reusable {
            let granted = self.client.lease_grant(ttl + reuse, None).await?;
            let leases = &mut self.leases;
            leases.id = granted.id();
            leases.expires = Some(now + seconds(ttl + reuse));
            leases.attached = 1;
        }
        Ok(Some(PutOptions::new().with_lease(self.leases.id)))
    }
}
