//! The replicated state machine: applies committed commands to the MVCC
//! store, and builds and installs snapshots.

use std::path::PathBuf;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{ApplyResponder, EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use prost::Message;
use rocksdb::{WriteBatch, DB};
use shoal_proto::peerpb::{
    internal_request, internal_response, ApplyErrorCode, AuthApplied, InternalRequest, InternalResponse, ResponseBatch,
};

use super::checkpoint;
use super::snapshot::{self, SnapshotFile};
use super::{io_error, CommandResponse, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::metrics::stages::{self, Stamp};
use crate::mvcc::{Applied, KvStore};
use crate::storage::{self, columns, StorageError};

/// Told about what the state machine does, after it is on disk, in log order.
pub trait ApplyListener: Send + Sync {
    /// A command was applied.
    fn applied(&self, applied: &Applied);
    /// The whole state was replaced by a snapshot.
    fn reset(&self);
    /// A command that `origin_member` forwarded to the leader (its request
    /// `origin_id`) was applied at `index`, answered with `response`.
    fn forwarded_applied(&self, origin_member: u64, origin_id: u64, response: &InternalResponse, index: u64);
}

pub type Listener = Arc<dyn ApplyListener>;

pub struct StateMachine {
    db: Arc<DB>,
    kv: Arc<KvStore>,
    snap_dir: PathBuf,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// Whether the progress of a batched entry may be on disk (see
    /// [`apply_batch`]): after a restart or a snapshot install, until the
    /// next batched entry finishes.
    progress_recorded: bool,
    listener: Option<Listener>,
}

impl StateMachine {
    /// Opens the state machine on `db`, finishing a snapshot install that a
    /// crash interrupted.
    pub fn open(db: Arc<DB>, snap_dir: PathBuf) -> Result<(StateMachine, Arc<KvStore>), StorageError> {
        snapshot::remove_partial(&snap_dir);
        if let Some(path) = snapshot::interrupted_install(&db)? {
            tracing::warn!(path = %path.display(), "finishing an interrupted snapshot install");
            snapshot::install(&db, &path)?;
        }
        let kv = KvStore::open(db.clone())?;
        let last_applied = storage::get_bincode(&db, columns::META, columns::LAST_APPLIED)?;
        let last_membership = storage::get_bincode(&db, columns::META, columns::LAST_MEMBERSHIP)?.unwrap_or_default();
        let sm = StateMachine {
            db,
            kv: kv.clone(),
            snap_dir,
            last_applied,
            last_membership,
            progress_recorded: true,
            listener: None,
        };
        Ok((sm, kv))
    }

    pub fn set_listener(&mut self, listener: Listener) {
        self.listener = Some(listener);
    }
}

/// Applies `entries` in order; each one's changes and `last_applied` go to
/// disk in one batch. Whoever proposed an entry here is answered as soon as
/// it is applied, not at the end of the whole group.
fn apply_blocking(
    db: &DB,
    kv: &KvStore,
    listener: Option<&Listener>,
    entries: Vec<EntryResponder<TypeConfig>>,
    membership: &mut StoredMembership,
    progress_recorded: &mut bool,
) -> Result<Option<LogId>, StorageError> {
    let meta = storage::cf(db, columns::META);
    let mut last = None;
    stages::APPLY_BATCH_ENTRIES.observe_count(entries.len() as u64);
    for (entry, responder) in entries {
        let mut batch = WriteBatch::default();
        let applied = match &entry.payload {
            EntryPayload::Blank => Applied { revision: kv.current_revision(), ..Applied::default() },
            EntryPayload::Membership(m) => {
                record_removed(db, membership, m, &mut batch)?;
                *membership = StoredMembership::new(Some(entry.log_id), m.clone());
                batch.put_cf(meta, columns::LAST_MEMBERSHIP, storage::encode_bincode(&*membership));
                Applied { revision: kv.current_revision(), ..Applied::default() }
            }
            EntryPayload::Normal(command) => match &command.0.request {
                Some(internal_request::Request::Batch(requests)) => {
                    let response = apply_batch(db, kv, listener, entry.log_id, &requests.requests, progress_recorded)?;
                    stages::stamp(entry.log_id.index, Stamp::Applied);
                    last = Some(entry.log_id);
                    answer(responder, response);
                    continue;
                }
                _ => {
                    let applied = execute(db, kv, &command.0, &mut batch)?;
                    kv.stage_revision(&mut batch, std::slice::from_ref(&applied));
                    applied
                }
            },
        };
        batch.put_cf(meta, columns::LAST_APPLIED, storage::encode_bincode(&entry.log_id));
        commit(db, batch)?;
        published(kv, listener, &applied);
        if let EntryPayload::Normal(command) = &entry.payload {
            let origin = (command.0.origin_member, command.0.origin_id);
            tell_forwarded(listener, origin, &applied.response, entry.log_id.index);
        }
        stages::stamp(entry.log_id.index, Stamp::Applied);
        last = Some(entry.log_id);
        answer(responder, applied.response);
    }
    Ok(last)
}

fn answer(responder: Option<ApplyResponder<TypeConfig>>, response: InternalResponse) {
    if let Some(responder) = responder {
        responder.send(CommandResponse(response));
    }
}

/// Writes an applied batch, timed as etcd times its backend commits.
fn commit(db: &DB, batch: WriteBatch) -> Result<(), StorageError> {
    let started = std::time::Instant::now();
    let written = storage::write_buffered(db, batch);
    crate::metrics::BACKEND_COMMIT.observe(started.elapsed());
    written
}

/// Remembers the members that `next` drops, as etcd does, so that a removed
/// member that still speaks Raft can be told so.
fn record_removed(
    db: &DB,
    current: &StoredMembership,
    next: &openraft::Membership<u64, super::MemberNode>,
    batch: &mut WriteBatch,
) -> Result<(), StorageError> {
    let gone: Vec<u64> =
        current.membership().nodes().map(|(id, _)| *id).filter(|id| next.get_node(id).is_none()).collect();
    if gone.is_empty() {
        return Ok(());
    }
    let mut removed = removed_members(db)?;
    removed.extend(gone);
    batch.put_cf(storage::cf(db, columns::META), columns::REMOVED_MEMBERS, storage::encode_bincode(&removed));
    Ok(())
}

/// Ids of the members removed from the cluster so far.
pub fn removed_members(db: &DB) -> Result<std::collections::BTreeSet<u64>, StorageError> {
    Ok(storage::get_bincode(db, columns::META, columns::REMOVED_MEMBERS)?.unwrap_or_default())
}

fn execute(db: &DB, kv: &KvStore, request: &InternalRequest, batch: &mut WriteBatch) -> Result<Applied, StorageError> {
    execute_at(db, kv, request, batch, kv.current_revision())
}

/// [`execute`] after revision `base` (see [`KvStore::execute_at`]).
fn execute_at(
    db: &DB,
    kv: &KvStore,
    request: &InternalRequest,
    batch: &mut WriteBatch,
    base: i64,
) -> Result<Applied, StorageError> {
    if let Some(internal_request::Request::Publish(member)) = &request.request {
        batch.put_cf(storage::cf(db, columns::MEMBERS), member.id.to_be_bytes(), member.encode_to_vec());
    }
    let auth = kv.auth();
    let verdict = if auth.is_stale(request.auth_revision) {
        Some(Err(ApplyErrorCode::AuthOldRevision))
    } else {
        auth.apply(db, request, batch)
    };
    match verdict {
        None => kv.execute_at(request, batch, base),
        Some(verdict) => {
            let response = match verdict {
                Ok(()) => internal_response::Response::Auth(AuthApplied {}),
                Err(code) => internal_response::Response::Error(code as i32),
            };
            let response = InternalResponse { response: Some(response) };
            Ok(Applied { response, revision: base, ..Applied::default() })
        }
    }
}

/// Tells the listener about a command applied at `index`, if a member
/// forwarded it: `origin` is that member and its request id (0: nobody).
fn tell_forwarded(listener: Option<&Listener>, origin: (u64, u64), response: &InternalResponse, index: u64) {
    if let (Some(listener), (member, id)) = (listener, origin) {
        if id != 0 {
            listener.forwarded_applied(member, id, response, index);
        }
    }
}

fn published(kv: &KvStore, listener: Option<&Listener>, applied: &Applied) {
    kv.committed(applied);
    if let Some(listener) = listener {
        listener.applied(applied);
    }
}

/// Applies the commands of one batched entry, each at its own revision.
/// Runs of plain puts to distinct keys share one write: a put reads nothing
/// from the disk but the key index, which is ahead of it. Anything else (and
/// a put to a key already in the run, which may read that key's value) is
/// written on its own. Progress within the entry is written with each write,
/// so an entry cut short by a crash (or captured mid-way by a snapshot)
/// resumes after its last written command instead of applying any twice.
/// `progress_recorded` says whether such progress may be on disk; while it
/// is false, an entry written in one piece neither reads nor clears it.
pub(super) fn apply_batch(
    db: &DB,
    kv: &KvStore,
    listener: Option<&Listener>,
    log_id: LogId,
    requests: &[InternalRequest],
    progress_recorded: &mut bool,
) -> Result<InternalResponse, StorageError> {
    let done: Option<(u64, u64)> = match progress_recorded {
        true => storage::get_bincode(db, columns::META, columns::APPLY_PROGRESS)?,
        false => None,
    };
    let skip = match done {
        Some((index, count)) if index == log_id.index => count as usize,
        _ => 0,
    };
    let mut responses = vec![InternalResponse::default(); skip.min(requests.len())];
    let mut run = Run::new(log_id, requests.len(), *progress_recorded);
    for (i, request) in requests.iter().enumerate().skip(skip) {
        let put_key = match &request.request {
            Some(internal_request::Request::Put(put)) => Some(&put.key),
            _ => None,
        };
        if put_key.is_none_or(|key| run.keys.contains(key)) {
            run.write(db, kv, listener, i, &mut responses)?;
        }
        let base = run.applied.last().map_or_else(|| kv.current_revision(), |a| a.revision);
        let applied = execute_at(db, kv, request, &mut run.batch, base)?;
        run.applied.push(applied);
        run.origins.push((request.origin_member, request.origin_id));
        match put_key {
            Some(key) => {
                run.keys.insert(key.clone());
            }
            None => run.write(db, kv, listener, i + 1, &mut responses)?,
        }
    }
    run.write(db, kv, listener, requests.len(), &mut responses)?;
    *progress_recorded = run.progress_recorded;
    if requests.is_empty() {
        let mut batch = WriteBatch::default();
        batch.put_cf(storage::cf(db, columns::META), columns::LAST_APPLIED, storage::encode_bincode(&log_id));
        commit(db, batch)?;
    }
    Ok(InternalResponse { response: Some(internal_response::Response::Batch(ResponseBatch { responses })) })
}

/// Commands of a batched entry executed into one write, not yet written.
struct Run {
    /// The entry, and how many commands it has.
    log_id: LogId,
    total: usize,
    batch: WriteBatch,
    applied: Vec<Applied>,
    /// Who forwarded each command in `applied` (member, request id), if anyone.
    origins: Vec<(u64, u64)>,
    keys: std::collections::HashSet<Vec<u8>>,
    /// Whether a progress record may be on disk, to be cleared at the end.
    progress_recorded: bool,
}

impl Run {
    fn new(log_id: LogId, total: usize, progress_recorded: bool) -> Run {
        let (batch, applied, origins, keys) = (WriteBatch::default(), Vec::new(), Vec::new(), Default::default());
        Run { log_id, total, batch, applied, origins, keys, progress_recorded }
    }

    /// Writes the run, with the entry's progress (`done` of its commands
    /// applied), then publishes each command in order.
    fn write(
        &mut self,
        db: &DB,
        kv: &KvStore,
        listener: Option<&Listener>,
        done: usize,
        responses: &mut Vec<InternalResponse>,
    ) -> Result<(), StorageError> {
        if self.applied.is_empty() {
            return Ok(());
        }
        let meta = storage::cf(db, columns::META);
        let mut batch = std::mem::take(&mut self.batch);
        kv.stage_revision(&mut batch, &self.applied);
        if done == self.total {
            batch.put_cf(meta, columns::LAST_APPLIED, storage::encode_bincode(&self.log_id));
            if self.progress_recorded {
                batch.delete_cf(meta, columns::APPLY_PROGRESS);
                self.progress_recorded = false;
            }
        } else {
            batch.put_cf(meta, columns::APPLY_PROGRESS, storage::encode_bincode(&(self.log_id.index, done as u64)));
            self.progress_recorded = true;
        }
        commit(db, batch)?;
        for (applied, origin) in self.applied.drain(..).zip(self.origins.drain(..)) {
            published(kv, listener, &applied);
            tell_forwarded(listener, origin, &applied.response, self.log_id.index);
            responses.push(applied.response);
        }
        self.keys.clear();
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| Err(StorageError::io("state machine task")(std::io::Error::other(join.to_string()))))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), std::io::Error> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), std::io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, std::io::Error>> + Unpin + OptionalSend,
    {
        let entries: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        let (db, kv, listener) = (self.db.clone(), self.kv.clone(), self.listener.clone());
        let (mut membership, mut progress_recorded) = (self.last_membership.clone(), self.progress_recorded);
        let (last, membership, progress_recorded) = blocking(move || {
            let last = apply_blocking(&db, &kv, listener.as_ref(), entries, &mut membership, &mut progress_recorded)?;
            Ok((last, membership, progress_recorded))
        })
        .await
        .map_err(io_error)?;
        self.progress_recorded = progress_recorded;
        if last.is_some() {
            self.last_applied = last;
        }
        self.last_membership = membership;
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder { db: self.db.clone(), kv: self.kv.clone(), snap_dir: self.snap_dir.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotFile) -> Result<(), std::io::Error> {
        let (db, kv, dir, listener) = (self.db.clone(), self.kv.clone(), self.snap_dir.clone(), self.listener.clone());
        let name = snapshot::file_name(meta);
        let installed = blocking(move || {
            std::fs::create_dir_all(&dir).map_err(StorageError::io(&dir))?;
            // A snapshot already in place (found at startup) is installed
            // where it is, and so is another member's checkpoint (only the
            // storage suite hands one over); a received file is moved here.
            let in_place = snapshot.path.parent() == Some(dir.as_path()) && snapshot::is_snapshot(&snapshot.path);
            let foreign_checkpoint = !in_place && checkpoint::is_checkpoint(&snapshot.path);
            let mut path =
                if in_place || foreign_checkpoint { snapshot.path.clone() } else { snapshot::file_path(&dir, &name) };
            if snapshot.path != path {
                // On disk for good before the install marker can point at it.
                snapshot::place(&snapshot.path, &path)?;
            }
            let meta = {
                let _exclusive = kv.exclusive();
                let meta = snapshot::install(&db, &path)?;
                kv.reload()?;
                if foreign_checkpoint {
                    path = checkpoint::build(&db, &dir)?.1;
                }
                meta
            };
            if let Some(listener) = listener {
                listener.reset();
            }
            snapshot::remove_older(&dir, &path);
            Ok(meta)
        })
        .await
        .map_err(io_error)?;
        tracing::info!(last_log_id = ?installed.last_log_id, "installed snapshot");
        self.last_applied = installed.last_log_id;
        self.last_membership = installed.last_membership;
        // A snapshot taken in the middle of a batched entry carries its progress.
        self.progress_recorded = true;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, std::io::Error> {
        let dir = self.snap_dir.clone();
        let latest = blocking(move || snapshot::latest(&dir)).await.map_err(io_error)?;
        Ok(latest.map(|(meta, path)| Snapshot { meta, snapshot: SnapshotFile { path } }))
    }
}

pub struct SnapshotBuilder {
    db: Arc<DB>,
    kv: Arc<KvStore>,
    snap_dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, std::io::Error> {
        let (db, kv, dir) = (self.db.clone(), self.kv.clone(), self.snap_dir.clone());
        let started = std::time::Instant::now();
        // Never while a received snapshot replaces the state.
        let (meta, path) = blocking(move || {
            let _shared = kv.shared();
            let built = checkpoint::build(&db, &dir)?;
            snapshot::remove_older(&dir, &built.1);
            Ok(built)
        })
        .await
        .map_err(io_error)?;
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            path = %path.display(),
            took_ms = started.elapsed().as_millis() as u64,
            "built snapshot"
        );
        Ok(Snapshot { meta, snapshot: SnapshotFile { path } })
    }
}

/// Reads the attributes every member has published, by member id.
pub fn published_members(db: &DB) -> Result<Vec<shoal_proto::peerpb::MemberAttributes>, StorageError> {
    let mut it = db.raw_iterator_cf(storage::cf(db, columns::MEMBERS));
    it.seek_to_first();
    let mut out = Vec::new();
    while let Some(value) = it.value() {
        out.push(
            shoal_proto::peerpb::MemberAttributes::decode(value)
                .map_err(|e| StorageError::corrupt("member attributes", e))?,
        );
        it.next();
    }
    it.status().map_err(StorageError::rocks("read members"))?;
    Ok(out)
}
