//! The state at one point in time as a bbolt database laid out as etcd 3.5
//! lays out its backend, so that etcd's tools (`etcdctl snapshot status`,
//! `snapshot restore`) and Shoal's restore read what `Maintenance.Snapshot`
//! streams. The inverse of [`super::from_etcd`]:
//!
//! ```text
//! alarm            AlarmMember                      ← meta/alarms
//! auth             authEnabled, authRevision        ← auth enabled, revision
//! authRoles        name → authpb.Role               ← auth role/<name>
//! authUsers        name → authpb.User               ← auth user/<name>
//! cluster          clusterVersion                   ← the version Shoal reports
//! key              main ‖ '_' ‖ sub [‖ 't'] → mvccpb.KeyValue   ← revs, kv
//! lease            id → leasepb.Lease               ← leases
//! members          id (hex) → JSON                  ← the Raft membership, published attributes
//! members_removed  id (hex) → "removed"             ← meta/removed_members
//! meta             consistent_index, finishedCompactRev, scheduledCompactRev, term
//! ```
//!
//! The key bucket is ordered by revision, which is the order of `revs` (one
//! row per stored version); each version is read from `kv` beside it.
//!
//! The meta pages at the front name the root page and the page count, known
//! only once everything is written; so the body goes to a scratch file first
//! (unlinked at once, so nothing is left behind), then the head and the body
//! go out. One pass over the store, memory bounded by a page per tree level.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use prost::Message;
use rocksdb::{Snapshot, DB};
use shoal_proto::etcdserverpb::AlarmMember;
use shoal_proto::peerpb::MemberAttributes;

use super::bbolt_writer::{head, Plan, Tree, Writer};
use super::from_etcd::{revision_key, Lease};
use super::pipeline::{pipelined_batches, Handoff};
use crate::auth::state::{ENABLED, REVISION, ROLE_PREFIX, USER_PREFIX};
use crate::config::ETCD_CLUSTER_VERSION;
use crate::mvcc::{key_codec, Record, Revision};
use crate::raft::snapshot;
use crate::storage::{self, columns, StorageError};

/// The buckets, in the byte order bbolt keeps them.
const BUCKETS: [&str; 10] =
    ["alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease", "members", "members_removed", "meta"];

const WHAT: &str = "snapshot in etcd's format";

/// Bytes read back from the scratch file at a time.
const READ_BYTES: usize = 1 << 20;

/// Receives one entry of the bucket being written (or one row read).
type Put<'f> = &'f mut dyn FnMut(&[u8], &[u8]) -> Result<(), StorageError>;

fn io(e: std::io::Error) -> StorageError {
    StorageError::io(WHAT)(e)
}

/// Writes the state `view` holds to `out` as a bbolt database, through a
/// scratch file in `scratch_dir`; returns `out`.
pub fn write<W: Write>(db: &DB, view: &Snapshot<'_>, scratch_dir: &Path, mut out: W) -> Result<W, StorageError> {
    let started = std::time::Instant::now();
    let body = scratch_file(scratch_dir)?;
    let (plan, mut body) = lay_out(db, view, Writer::new(body))?;
    let laid_out = started.elapsed();
    out.write_all(&head(plan)).map_err(io)?;
    body.seek(SeekFrom::Start(0)).map_err(io)?;
    // io::copy hands a BufReader's own buffer to `out`: 1 MiB reads, no second buffer.
    std::io::copy(&mut BufReader::with_capacity(READ_BYTES, body), &mut out).map_err(io)?;
    tracing::info!(
        pages = plan.pages,
        laid_out_ms = laid_out.as_millis() as u64,
        sent_ms = (started.elapsed() - laid_out).as_millis() as u64,
        "snapshot in etcd's format written"
    );
    Ok(out)
}

/// A new file in `dir` that no name points to: it goes when it is closed.
fn scratch_file(dir: &Path) -> Result<File, StorageError> {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let path = dir.join(format!("snapshot-{}-{millis}.tmp", std::process::id()));
    let file = File::options().read(true).write(true).create_new(true).open(&path).map_err(StorageError::io(&path))?;
    std::fs::remove_file(&path).map_err(StorageError::io(&path))?;
    Ok(file)
}

fn lay_out<W: Write>(db: &DB, view: &Snapshot<'_>, mut writer: Writer<W>) -> Result<(Plan, W), StorageError> {
    let mut roots = Vec::with_capacity(BUCKETS.len());
    for name in BUCKETS {
        let mut tree = Tree::default();
        let mut put = |key: &[u8], value: &[u8]| tree.put(&mut writer, key, value).map_err(io);
        if name == "key" {
            // Reading the store and writing pages take a core each.
            pipelined_batches(|send| versions(db, view, send), &mut |batch: Versions| batch.each(&mut put))?;
        } else {
            entries(db, view, name, &mut put)?;
        }
        roots.push((name.as_bytes(), tree.finish(&mut writer).map_err(io)?));
    }
    writer.finish(&roots).map_err(io)
}

fn entries(db: &DB, view: &Snapshot<'_>, bucket: &str, put: Put<'_>) -> Result<(), StorageError> {
    let get = |family: &'static str, key: &[u8]| view.get_cf(storage::cf(db, family), key).map_err(rocks);
    match bucket {
        "alarm" => {
            let alarms: Vec<(u64, i32)> = get(columns::META, columns::ALARMS)?
                .map(|b| storage::decode_bincode("alarms", &b))
                .transpose()?
                .unwrap_or_default();
            let keys: BTreeSet<Vec<u8>> =
                alarms.into_iter().map(|(member_id, alarm)| AlarmMember { member_id, alarm }.encode_to_vec()).collect();
            keys.iter().try_for_each(|key| put(key, &[]))
        }
        "auth" => {
            let enabled = get(columns::AUTH, ENABLED)?.is_some_and(|v| v == [1]);
            put(b"authEnabled", &[u8::from(enabled)])?;
            let revision = get(columns::AUTH, REVISION)?.unwrap_or_else(|| 0u64.to_be_bytes().to_vec());
            put(b"authRevision", &revision)
        }
        "authRoles" => prefixed(db, view, ROLE_PREFIX, put),
        "authUsers" => prefixed(db, view, USER_PREFIX, put),
        "cluster" => put(b"clusterVersion", ETCD_CLUSTER_VERSION.as_bytes()),
        "lease" => each_row(db, view, columns::LEASES, &mut |id, ttl| {
            let (id, ttl) = (int(id, "lease id")?, int(ttl, "lease ttl")?);
            put(&id.to_be_bytes(), &Lease { id, ttl, remaining_ttl: 0 }.encode_to_vec())
        }),
        "members" => members(db, view, put),
        "members_removed" => {
            let removed: BTreeSet<u64> = get(columns::META, columns::REMOVED_MEMBERS)?
                .map(|b| storage::decode_bincode("removed members", &b))
                .transpose()?
                .unwrap_or_default();
            let keys: BTreeSet<String> = removed.iter().map(|id| format!("{id:x}")).collect();
            keys.iter().try_for_each(|id| put(id.as_bytes(), b"removed"))
        }
        "meta" => {
            let applied = snapshot::meta_of(db, view)?.last_log_id;
            put(b"consistent_index", &applied.map_or(0, |id| id.index).to_be_bytes())?;
            let finished = int_at(get(columns::META, columns::COMPACT_DONE)?)?;
            let scheduled = int_at(get(columns::META, columns::COMPACT_REVISION)?)?;
            if finished > 0 {
                put(b"finishedCompactRev", &revision_key(Revision::new(finished, 0), false))?;
            }
            if scheduled > 0 {
                put(b"scheduledCompactRev", &revision_key(Revision::new(scheduled, 0), false))?;
            }
            put(b"term", &applied.map_or(0, |id| id.leader_id.term).to_be_bytes())
        }
        _ => Ok(()),
    }
}

fn rocks(e: rocksdb::Error) -> StorageError {
    StorageError::rocks("snapshot read")(e)
}

fn int(bytes: &[u8], what: &'static str) -> Result<i64, StorageError> {
    Ok(i64::from_be_bytes(bytes.try_into().map_err(|_| StorageError::corrupt(what, "not 8 bytes"))?))
}

/// A stored revision number; 0 when absent (or never compacted: -1).
fn int_at(stored: Option<Vec<u8>>) -> Result<i64, StorageError> {
    stored.map_or(Ok(0), |b| int(&b, "revision").map(|r| r.max(0)))
}

/// Calls `row` for every row of `family` in `view`, in key order.
fn each_row(db: &DB, view: &Snapshot<'_>, family: &'static str, row: Put<'_>) -> Result<(), StorageError> {
    let mut it = view.raw_iterator_cf(storage::cf(db, family));
    it.seek_to_first();
    while let (Some(key), Some(value)) = (it.key(), it.value()) {
        row(key, value)?;
        it.next();
    }
    it.status().map_err(rocks)
}

/// The `auth` rows under `prefix`, named without it.
fn prefixed(db: &DB, view: &Snapshot<'_>, prefix: &[u8], put: Put<'_>) -> Result<(), StorageError> {
    each_row(db, view, columns::AUTH, &mut |key, value| match key.strip_prefix(prefix) {
        Some(name) if !name.is_empty() => put(name, value),
        _ => Ok(()),
    })
}

/// Revisions taken from `revs` at a time. Their versions are looked up in
/// key order, so that one iterator over `kv` finds them moving forward
/// (mostly a step or two, not a seek), then given out in revision order.
const LOOKUP_BATCH: usize = 1 << 15;
/// Steps an iterator over `kv` takes towards a version before it seeks.
const STEPS_BEFORE_SEEK: usize = 16;

type KvIterator<'a> = rocksdb::DBRawIteratorWithThreadMode<'a, DB>;

/// Versions in revision order as etcd's key bucket holds them, encoded in
/// one buffer: each one's revision, whether it is a deletion, and where its
/// value is in `encoded`.
pub(super) struct Versions {
    encoded: Vec<u8>,
    spans: Vec<(Revision, bool, usize, usize)>,
}

impl Versions {
    /// Calls `put` with each version's key and value, in revision order.
    pub(super) fn each(&self, put: Put<'_>) -> Result<(), StorageError> {
        for &(revision, tombstone, start, end) in &self.spans {
            put(&revision_key(revision, tombstone), &self.encoded[start..end])?;
        }
        Ok(())
    }
}

/// A revision taken from `revs`, with where its key and the key of its
/// version in `kv` are in the batch's buffer.
struct Lookup {
    revision: Revision,
    key: std::ops::Range<usize>,
    wanted: std::ops::Range<usize>,
}

/// Every stored version, in revision order, as etcd's key bucket holds it.
fn versions(db: &DB, view: &Snapshot<'_>, send: Handoff<'_, Versions>) -> Result<(), StorageError> {
    versions_by(db, view, LOOKUP_BATCH, send)
}

/// [`versions`], looking up `batch_len` of them at a time; each batch is
/// sent as it is done.
pub(super) fn versions_by(
    db: &DB,
    view: &Snapshot<'_>,
    batch_len: usize,
    send: Handoff<'_, Versions>,
) -> Result<(), StorageError> {
    let mut kv = view.raw_iterator_cf_opt(storage::cf(db, columns::KV), scan_options());
    let mut revs = view.raw_iterator_cf_opt(storage::cf(db, columns::REVS), scan_options());
    revs.seek_to_first();
    let capacity = batch_len.min(LOOKUP_BATCH);
    let mut batch: Vec<Lookup> = Vec::with_capacity(capacity);
    let mut keys = Vec::new();
    let mut by_key: Vec<usize> = Vec::with_capacity(capacity);
    loop {
        batch.clear();
        keys.clear();
        while let (Some(rev), Some(key), true) = (revs.key(), revs.value(), batch.len() < batch_len) {
            let revision = Revision::from_bytes(rev).ok_or_else(|| StorageError::corrupt("revs", "revision"))?;
            let start = keys.len();
            keys.extend_from_slice(key);
            let key_end = keys.len();
            key_codec::version_key_into(&mut keys, key, revision);
            batch.push(Lookup { revision, key: start..key_end, wanted: key_end..keys.len() });
            revs.next();
        }
        revs.status().map_err(rocks)?;
        if batch.is_empty() {
            return Ok(());
        }
        by_key.clear();
        by_key.extend(0..batch.len());
        by_key.sort_unstable_by(|&a, &b| keys[batch[a].wanted.clone()].cmp(&keys[batch[b].wanted.clone()]));
        // Encoded in key order, as found; given out in revision order.
        let mut versions =
            Versions { encoded: Vec::new(), spans: vec![(Revision::new(0, 0), false, 0, 0); batch.len()] };
        for &at in &by_key {
            let Lookup { revision, key, wanted } = &batch[at];
            let start = versions.encoded.len();
            let stored = find(&mut kv, &keys[wanted.clone()])?;
            let tombstone = Record::encode_key_value(stored, &keys[key.clone()], revision.main, &mut versions.encoded)
                .ok_or_else(|| StorageError::corrupt("kv record", "too short"))?;
            versions.spans[at] = (*revision, tombstone, start, versions.encoded.len());
        }
        send(versions)?;
    }
}

/// Reads for one pass over a family: blocks read ahead in large steps and
/// kept out of the block cache, where they would only push out what the
/// member's clients read.
fn scan_options() -> rocksdb::ReadOptions {
    let mut options = rocksdb::ReadOptions::default();
    options.fill_cache(false);
    options.set_readahead_size(1 << 20);
    options
}

/// The stored version at `wanted`, moving `kv` forward to it: a few steps
/// when it is near (the keys wanted come in order), else a seek.
fn find<'a>(kv: &'a mut KvIterator<'_>, wanted: &[u8]) -> Result<&'a [u8], StorageError> {
    let mut steps = 0;
    while steps < STEPS_BEFORE_SEEK && kv.key().is_some_and(|at| at < wanted) {
        kv.next();
        steps += 1;
    }
    if kv.key() != Some(wanted) {
        kv.seek(wanted);
    }
    match (kv.key(), kv.value()) {
        (Some(at), Some(stored)) if at == wanted => Ok(stored),
        _ => {
            kv.status().map_err(rocks)?;
            Err(StorageError::corrupt("revs", "a version missing from kv"))
        }
    }
}

/// The members of the Raft membership, with what each has published, as
/// etcd stores a member: its id in hex, and JSON.
fn members(db: &DB, view: &Snapshot<'_>, put: Put<'_>) -> Result<(), StorageError> {
    let membership = snapshot::meta_of(db, view)?.last_membership;
    let membership = membership.membership();
    let learners: BTreeSet<u64> = membership.learner_ids().collect();
    let mut published = std::collections::HashMap::new();
    each_row(db, view, columns::MEMBERS, &mut |_, value| {
        let member = MemberAttributes::decode(value).map_err(|e| StorageError::corrupt("member attributes", e))?;
        published.insert(member.id, member);
        Ok(())
    })?;
    let mut rows = std::collections::BTreeMap::new();
    for (id, node) in membership.nodes() {
        let attributes = published.get(id);
        let mut member = serde_json::json!({
            "id": id,
            "peerURLs": node.peer_urls,
            "name": attributes.map_or("", |a| a.name.as_str()),
            "clientURLs": attributes.map(|a| a.client_urls.clone()).unwrap_or_default(),
        });
        if learners.contains(id) {
            member["isLearner"] = serde_json::Value::Bool(true);
        }
        rows.insert(format!("{id:x}"), member.to_string());
    }
    rows.iter().try_for_each(|(id, json)| put(id.as_bytes(), json.as_bytes()))
}
