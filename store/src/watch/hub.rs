//! [`WatchHub`]: every watcher of this member, split into synced and
//! unsynced, and live delivery of applied changes.
//!
//! Lock order: the hub's one mutex is taken by the applier (notify), the
//! syncer, and the gRPC handlers; nothing that can block (disk reads, a full
//! stream) happens under it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use shoal_proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};

use super::event::{self, RevEvent};
use super::stream::{self, Sent, StreamHandle, StreamReceiver};
use super::watcher::{Keys, Watcher};
use crate::mvcc::{Applied, KvStore};

/// etcd's answers to a watch it cannot create.
const EMPTY_RANGE: &str = "mvcc: watcher range is empty";
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

type WatcherKey = u64;

#[derive(Default)]
pub(super) struct HubState {
    /// The newest revision handed to the synced watchers.
    pub(super) notified: i64,
    next_key: WatcherKey,
    next_stream: u64,
    pub(super) watchers: HashMap<WatcherKey, Watcher>,
    /// Per stream: its watch ids, and the next id to assign.
    streams: HashMap<u64, StreamWatches>,
    synced_keys: HashMap<Vec<u8>, Vec<WatcherKey>>,
    synced_ranges: HashSet<WatcherKey>,
    pub(super) unsynced: HashSet<WatcherKey>,
    /// Streams waiting for a progress answer until all their watchers are synced.
    progress_wanted: HashSet<u64>,
}

#[derive(Default)]
struct StreamWatches {
    ids: HashMap<i64, WatcherKey>,
    next_id: i64,
    handle: Option<Arc<StreamHandle>>,
}

pub struct WatchHub {
    pub(super) state: Mutex<HubState>,
    pub(super) kv: Arc<KvStore>,
    /// Wakes the syncer when a watcher falls behind.
    pub(super) wake: Condvar,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..ResponseHeader::default() })
}

impl HubState {
    fn add_synced(&mut self, key: WatcherKey) {
        let Some(w) = self.watchers.get(&key) else { return };
        match &w.keys {
            Keys::Single(k) => self.synced_keys.entry(k.clone()).or_default().push(key),
            Keys::Range { .. } => {
                self.synced_ranges.insert(key);
            }
        }
    }

    fn remove_synced(&mut self, key: WatcherKey) {
        let Some(w) = self.watchers.get(&key) else { return };
        match &w.keys {
            Keys::Single(k) => {
                if let Some(list) = self.synced_keys.get_mut(k) {
                    list.retain(|x| *x != key);
                    if list.is_empty() {
                        self.synced_keys.remove(k);
                    }
                }
            }
            Keys::Range { .. } => {
                self.synced_ranges.remove(&key);
            }
        }
    }

    /// Moves a synced watcher to the catch-up path, from revision `next_rev`.
    fn fall_behind(&mut self, key: WatcherKey, next_rev: i64) {
        self.remove_synced(key);
        if let Some(w) = self.watchers.get_mut(&key) {
            w.next_rev = next_rev;
            self.unsynced.insert(key);
        }
    }

    pub(super) fn mark_synced(&mut self, key: WatcherKey) {
        if self.unsynced.remove(&key) {
            self.add_synced(key);
        }
    }

    pub(super) fn remove(&mut self, key: WatcherKey) -> Option<Watcher> {
        self.remove_synced(key);
        self.unsynced.remove(&key);
        let w = self.watchers.remove(&key)?;
        if let Some(stream) = self.streams.get_mut(&w.stream.id) {
            stream.ids.remove(&w.watch_id);
        }
        Some(w)
    }

    fn stream_synced(&self, stream: u64) -> bool {
        self.streams.get(&stream).is_none_or(|s| s.ids.values().all(|k| !self.unsynced.contains(k)))
    }

    /// Answers a pending progress request once the stream has caught up.
    pub(super) fn answer_progress(&mut self, stream: u64) {
        if !self.progress_wanted.contains(&stream) || !self.stream_synced(stream) {
            return;
        }
        self.progress_wanted.remove(&stream);
        if let Some(handle) = self.streams.get(&stream).and_then(|s| s.handle.clone()) {
            handle.send_control(WatchResponse { header: header(self.notified), watch_id: -1, ..Default::default() });
        }
    }
}

impl WatchHub {
    pub fn new(kv: Arc<KvStore>) -> Arc<WatchHub> {
        let state = HubState { notified: kv.current_revision(), ..HubState::default() };
        Arc::new(WatchHub { state: Mutex::new(state), kv, wake: Condvar::new() })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new gRPC watch stream.
    pub fn open_stream(&self) -> (Arc<StreamHandle>, StreamReceiver) {
        let mut state = self.lock();
        state.next_stream += 1;
        let (handle, rx) = stream::channel(state.next_stream);
        state.streams.insert(handle.id, StreamWatches { handle: Some(handle.clone()), ..Default::default() });
        (handle, rx)
    }

    /// The stream ended: its watchers go.
    pub fn close_stream(&self, stream: u64) {
        let mut state = self.lock();
        let keys: Vec<WatcherKey> =
            state.streams.get(&stream).map(|s| s.ids.values().copied().collect()).unwrap_or_default();
        for key in keys {
            state.remove(key);
        }
        state.streams.remove(&stream);
        state.progress_wanted.remove(&stream);
    }

    /// Refuses a watch before it exists (permission denied), etcd's way: a
    /// created-and-canceled answer with watch id -1.
    pub fn refuse(&self, stream: &Arc<StreamHandle>, reason: String) {
        let revision = self.lock().notified;
        stream.send_control(WatchResponse {
            header: header(revision),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        });
    }

    /// Creates a watch and queues etcd's `created` answer before any event of it.
    pub fn create(&self, stream: &Arc<StreamHandle>, req: &WatchCreateRequest) {
        let mut state = self.lock();
        let revision = state.notified;
        let refuse = |reason: &str| WatchResponse {
            header: header(revision),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        let keys = Keys::from_request(&req.key, &req.range_end);
        if keys.is_empty() {
            stream.send_control(refuse(EMPTY_RANGE));
            return;
        }
        let Some(watches) = state.streams.get_mut(&stream.id) else { return };
        let watch_id = if req.watch_id == 0 {
            while watches.ids.contains_key(&watches.next_id) {
                watches.next_id += 1;
            }
            watches.next_id += 1;
            watches.next_id - 1
        } else if watches.ids.contains_key(&req.watch_id) {
            stream.send_control(refuse(DUPLICATE_ID));
            return;
        } else {
            req.watch_id
        };
        state.next_key += 1;
        let key = state.next_key;
        // etcd reads a negative start revision as "from now", like 0.
        let start = if req.start_revision <= 0 { revision + 1 } else { req.start_revision };
        if let Some(watches) = state.streams.get_mut(&stream.id) {
            watches.ids.insert(watch_id, key);
        }
        state.watchers.insert(key, Watcher::new(stream.clone(), watch_id, keys, start, req));
        stream.send_control(WatchResponse { header: header(revision), watch_id, created: true, ..Default::default() });
        if start > revision {
            state.add_synced(key);
        } else {
            state.unsynced.insert(key);
            self.wake.notify_all();
        }
    }

    /// Cancels a watch of this stream; an unknown id is ignored, as etcd does.
    pub fn cancel(&self, stream: &Arc<StreamHandle>, watch_id: i64) {
        let mut state = self.lock();
        let Some(key) = state.streams.get(&stream.id).and_then(|s| s.ids.get(&watch_id).copied()) else { return };
        state.remove(key);
        stream.send_control(WatchResponse {
            header: header(state.notified),
            watch_id,
            canceled: true,
            ..Default::default()
        });
        state.answer_progress(stream.id);
    }

    /// A progress request: answered with the current revision as soon as
    /// every watcher of the stream has been handed everything up to it.
    pub fn progress_request(&self, stream: &Arc<StreamHandle>) {
        let mut state = self.lock();
        state.progress_wanted.insert(stream.id);
        state.answer_progress(stream.id);
    }

    /// Hands a committed command's changes to the synced watchers.
    pub fn notify(&self, applied: &Applied) {
        if applied.changes.is_empty() {
            return;
        }
        let revision = applied.revision;
        let mut state = self.lock();
        state.notified = revision;
        if state.watchers.is_empty() {
            return;
        }
        let events: Vec<_> = applied.changes.iter().map(event::from_change).collect();
        let mut targets: HashMap<WatcherKey, Vec<usize>> = HashMap::new();
        for (i, change) in applied.changes.iter().enumerate() {
            if let Some(list) = state.synced_keys.get(&change.key) {
                for key in list {
                    targets.entry(*key).or_default().push(i);
                }
            }
            for key in &state.synced_ranges {
                if state.watchers.get(key).is_some_and(|w| w.keys.contains(&change.key)) {
                    targets.entry(*key).or_default().push(i);
                }
            }
        }
        for (key, indexes) in targets {
            let Some(w) = state.watchers.get_mut(&key) else { continue };
            if revision < w.next_rev {
                continue;
            }
            let evs: Vec<_> = indexes.iter().map(|i| events[*i].clone()).filter(|e| w.wants(e)).collect();
            if evs.is_empty() {
                continue;
            }
            let response =
                WatchResponse { header: header(revision), watch_id: w.watch_id, events: evs, ..Default::default() };
            match w.stream.send_events(response, w.prev_kv, w.fragment) {
                Sent::Queued => w.got_events = true,
                Sent::Full => {
                    state.fall_behind(key, revision);
                    self.wake.notify_all();
                }
                Sent::Closed => {
                    state.remove(key);
                }
            }
        }
    }

    /// The state was replaced by a snapshot: every watcher catches up from
    /// the revision log, from where it was.
    pub fn reset(&self) {
        let mut state = self.lock();
        let next = state.notified + 1;
        state.notified = self.kv.current_revision();
        let synced: Vec<WatcherKey> =
            state.synced_ranges.iter().copied().chain(state.synced_keys.values().flatten().copied()).collect();
        for key in synced {
            let start = state.watchers.get(&key).map_or(next, |w| w.next_rev.max(next));
            state.fall_behind(key, start);
        }
        self.wake.notify_all();
    }

    /// Sends a progress notification to every synced watcher that asked for
    /// them and had no events since the last tick.
    pub fn progress_tick(&self) {
        let mut state = self.lock();
        let revision = state.notified;
        let mut synced: HashSet<WatcherKey> = state.synced_ranges.clone();
        synced.extend(state.synced_keys.values().flatten().copied());
        for (key, w) in state.watchers.iter_mut() {
            if w.progress_notify && !w.got_events && synced.contains(key) {
                let response = WatchResponse { header: header(revision), watch_id: w.watch_id, ..Default::default() };
                let _ = w.stream.send_events(response, false, false);
            }
            w.got_events = false;
        }
    }

    pub fn wake_syncer(&self) {
        self.wake.notify_all();
    }

    /// Runs the catch-up loop until `stop` says so; see [`super::syncer`].
    pub fn run_syncer(self: &Arc<Self>, stop: Arc<std::sync::atomic::AtomicBool>) {
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            match super::syncer::sync_once(self) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "watch catch-up failed; retrying"),
            }
            let state = self.lock();
            let _ = self.wake.wait_timeout(state, Duration::from_millis(100));
        }
    }

    /// Events for a catching-up batch, for the syncer.
    pub(super) fn read_history(
        &self,
        from: i64,
        to: i64,
    ) -> Result<(Vec<RevEvent>, i64), crate::storage::StorageError> {
        let db = self.kv.db();
        let snapshot = db.snapshot();
        let events = event::history(db, &snapshot, from, to)?;
        // Read after the snapshot: anything below it may be missing from the batch.
        Ok((events, self.kv.compact_revision()))
    }
}
