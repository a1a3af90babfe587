//! `snapshot restore`: the data dir of one member of a new cluster, built
//! from a saved snapshot, Shoal's or etcd's. Every key, value, revision,
//! lease, user and role is kept; Raft starts empty, with the new cluster's
//! members, and the cluster gets an id of its own.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{WriteBatch, DB};

use super::from_etcd::{self, ConvertError};
use super::pipeline::pipelined;
use super::{bbolt, check_trailer, etcd_digest, open_etcd, BackupError, Format};
use crate::ids;
use crate::raft::{checkpoint, snapshot};
use crate::raft::{LeaderId, LogId, MemberNode, StoredMembership};
use crate::storage::{self, columns, StorageError};
use crate::urls;

/// Flush the restore batch into RocksDB at this size.
const BATCH_BYTES: usize = 4 << 20;

/// etcd's `snapshot restore` flags.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub name: String,
    pub initial_cluster: String,
    pub initial_advertise_peer_urls: String,
    pub initial_cluster_token: String,
    pub data_dir: PathBuf,
}

/// What a restore wrote.
#[derive(Debug, Clone)]
pub struct Restored {
    pub member_id: u64,
    pub cluster_id: u64,
    pub records: u64,
}

/// Members of the new cluster (id → node) and this member's id, checked as
/// the server checks its own flags.
fn new_members(options: &RestoreOptions) -> Result<(BTreeMap<u64, MemberNode>, u64), BackupError> {
    let bad = |e: urls::UrlError| BackupError::Options(e.to_string());
    let cluster = urls::parse_initial_cluster(&options.initial_cluster).map_err(bad)?;
    let advertised =
        urls::parse_list("--initial-advertise-peer-urls", &options.initial_advertise_peer_urls).map_err(bad)?;
    let mut advertised: Vec<String> = advertised.iter().map(ToString::to_string).collect();
    advertised.sort();
    let mut members = BTreeMap::new();
    let mut own = None;
    for (name, member_urls) in &cluster {
        let mut peer_urls: Vec<String> = member_urls.iter().map(ToString::to_string).collect();
        peer_urls.sort();
        let id = ids::member_id(&peer_urls, &options.initial_cluster_token);
        if *name == options.name {
            if peer_urls != advertised {
                return Err(BackupError::Options(format!(
                    "--initial-cluster has {name}={} but --initial-advertise-peer-urls is {} (the URLs must match)",
                    peer_urls.join(","),
                    advertised.join(",")
                )));
            }
            own = Some(id);
        }
        members.insert(id, MemberNode { name: name.clone(), peer_urls });
    }
    let own = own.ok_or_else(|| {
        BackupError::Options(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            options.name
        ))
    })?;
    Ok((members, own))
}

/// Keys of `meta` that belong to the old cluster's Raft, not to the data.
fn belongs_to_old_raft(family: &str, key: &[u8]) -> bool {
    family == columns::MEMBERS
        || (family == columns::META
            && [
                columns::LAST_APPLIED,
                columns::LAST_MEMBERSHIP,
                columns::APPLY_PROGRESS,
                columns::ALARMS,
                columns::REMOVED_MEMBERS,
            ]
            .contains(&key))
}

/// Restores the snapshot at `file` (Shoal's, or a bbolt database etcd
/// saved) into `options.data_dir`. `progress` is told the bytes checked and
/// then the bytes restored, out of the total.
pub fn restore(
    file: &Path,
    options: &RestoreOptions,
    mut progress: impl FnMut(&'static str, u64, u64),
) -> Result<Restored, BackupError> {
    let format = super::format_of(file)?;
    let (members, member_id) = new_members(options)?;
    let member_ids: Vec<u64> = members.keys().copied().collect();
    let data_dir = &options.data_dir;
    if data_dir.exists() && std::fs::read_dir(data_dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(BackupError::DataDirExists { path: data_dir.clone() });
    }
    let (digest, body) = match format {
        Format::Shoal => check_trailer(file, |done| progress("verifying", done, 0))?,
        Format::Etcd => etcd_digest(file, |done| progress("verifying", done, 0))?,
    };
    progress("verifying", body, body);
    // The cluster id depends on the file too: a restored cluster is a new
    // cluster, even with the old cluster's flags.
    let cluster_id = ids::restored_cluster_id(&member_ids, &digest);

    let staging = staging_dir(data_dir);
    let _ = std::fs::remove_dir_all(&staging);
    let identity = Identity { member_id, cluster_id, members };
    let written = match format {
        Format::Shoal => write_member(&staging, &identity, |sink| shoal_rows(file, sink, body, &mut progress)),
        Format::Etcd => {
            let db = open_etcd(file, body)?;
            write_member(&staging, &identity, |sink| etcd_rows(file, &db, sink, body, &mut progress))
        }
    };
    let records = match written {
        Ok(records) => records,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if data_dir.exists() {
        std::fs::remove_dir(data_dir).map_err(StorageError::io(data_dir))?;
    }
    std::fs::rename(&staging, data_dir).map_err(StorageError::io(data_dir))?;
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(StorageError::io(parent))?;
    }
    progress("restoring", body, body);
    Ok(Restored { member_id, cluster_id, records })
}

fn staging_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".restoring");
    data_dir.with_file_name(name)
}

/// A restore writes a data dir nobody uses yet, and one it deletes if it
/// fails, so its bulk writes skip the WAL; the flush at the end makes them
/// durable before the directory is renamed into place.
fn write_unlogged(db: &rocksdb::DB, batch: WriteBatch) -> Result<(), StorageError> {
    let mut opts = rocksdb::WriteOptions::default();
    opts.disable_wal(true);
    db.write_opt(batch, &opts).map_err(StorageError::rocks("restore write"))
}

/// Who the restored member is, and the cluster it starts.
struct Identity {
    member_id: u64,
    cluster_id: u64,
    members: BTreeMap<u64, MemberNode>,
}

/// A fixed key of `meta` and its value.
type MetaRow = (&'static [u8], Vec<u8>);

/// The new cluster's Raft starts as if it had applied and purged one entry
/// holding the restored data and its membership, as etcd's restore does:
/// every member restored from the same file agrees on it, and a member added
/// later gets the data by snapshot, since no log holds it. Returns the `meta`
/// rows that say so (the last applied entry first).
fn seed(members: &BTreeMap<u64, MemberNode>) -> [MetaRow; 2] {
    let first = members.keys().next().copied().unwrap_or(0);
    let seed = LogId::new(LeaderId { term: 1, node_id: first }, 1);
    // Every restored member is a voter.
    let membership = StoredMembership::new(Some(seed), openraft::Membership::from(members.clone()));
    [
        (columns::LAST_APPLIED, storage::encode_bincode(&seed)),
        (columns::LAST_MEMBERSHIP, storage::encode_bincode(&membership)),
    ]
}

/// Where restored rows go: the new member's database, in batches.
struct Sink<'a> {
    db: &'a DB,
    batch: WriteBatch,
    records: u64,
}

impl Sink<'_> {
    /// Adds one row; returns whether the rows so far were written out.
    fn put(&mut self, family: &'static str, key: &[u8], value: &[u8]) -> Result<bool, StorageError> {
        self.batch.put_cf(storage::cf(self.db, family), key, value);
        self.records += 1;
        if self.batch.size_in_bytes() < BATCH_BYTES {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        write_unlogged(self.db, std::mem::take(&mut self.batch))
    }
}

/// Writes the member's database, then takes its Raft snapshot as a
/// checkpoint of it (hard links, no second copy of the data); `fill` puts
/// the rows of the data. Returns how many rows it put.
fn write_member(
    dir: &Path,
    identity: &Identity,
    fill: impl FnOnce(&mut Sink<'_>) -> Result<(), BackupError>,
) -> Result<u64, BackupError> {
    let db_dir = dir.join("member").join("db");
    std::fs::create_dir_all(&db_dir).map_err(StorageError::io(&db_dir))?;
    let db = storage::open(&db_dir)?;
    let seed_rows = seed(&identity.members);
    let mut sink = Sink { db: &db, batch: WriteBatch::default(), records: 0 };
    fill(&mut sink)?;
    let records = sink.records;
    for (key, value) in &seed_rows {
        sink.put(columns::META, key, value)?;
    }
    sink.flush()?;
    // The data skipped the WAL: on disk once the memtables are flushed.
    storage::flush_all(&db)?;
    checkpoint::build(&db, &dir.join("member").join("snap"))?;
    let mut ids = WriteBatch::default();
    let state = storage::cf(&db, columns::RAFT_STATE);
    ids.put_cf(state, columns::MEMBER_ID, (identity.member_id as i64).to_be_bytes());
    ids.put_cf(state, columns::CLUSTER_ID, (identity.cluster_id as i64).to_be_bytes());
    ids.put_cf(state, columns::LAST_PURGED, &seed_rows[0].1);
    storage::write_synced(&db, ids)?;
    Ok(records)
}

/// The rows of a Shoal snapshot, without the old cluster's Raft state.
fn shoal_rows(
    file: &Path,
    sink: &mut Sink<'_>,
    total: u64,
    progress: &mut impl FnMut(&'static str, u64, u64),
) -> Result<(), BackupError> {
    let mut done = 0u64;
    snapshot::scan(file, |family, key, value| {
        done += (key.len() + value.len() + 9) as u64;
        if !belongs_to_old_raft(family, &key) && sink.put(family, &key, &value)? {
            progress("restoring", done, total);
        }
        Ok(())
    })
    .map_err(|source| BackupError::Corrupt { path: file.to_path_buf(), source })?;
    Ok(())
}

/// The rows of a snapshot etcd saved, read and converted on a thread of its
/// own while this one writes them.
fn etcd_rows(
    file: &Path,
    db: &bbolt::Db<File>,
    sink: &mut Sink<'_>,
    total: u64,
    progress: &mut impl FnMut(&'static str, u64, u64),
) -> Result<(), BackupError> {
    let read = AtomicU64::new(0);
    let converted = pipelined(
        |row| from_etcd::rows(db, row, &mut |bytes| read.store(bytes, Ordering::Relaxed)),
        &mut |family, key, value| {
            if sink.put(family, key, value)? {
                progress("restoring", read.load(Ordering::Relaxed).min(total), total);
            }
            Ok(())
        },
    );
    converted.map_err(|e| match e {
        ConvertError::Storage(e) => BackupError::Storage(e),
        ConvertError::NotEtcd(bucket) => BackupError::NotEtcdBackend { path: file.to_path_buf(), bucket },
        ConvertError::Damaged(what) => BackupError::Damaged { path: file.to_path_buf(), what },
    })?;
    sink.flush()?;
    Ok(())
}
