//! Catching up the unsynced watchers from the revision log, in batches of at
//! most [`MAX_REVISIONS_PER_RESPONSE`](super::MAX_REVISIONS_PER_RESPONSE)
//! revisions, then moving them back to the synced set.

use std::sync::Arc;

use shoal_proto::etcdserverpb::{ResponseHeader, WatchResponse};

use super::hub::WatchHub;
use super::stream::Sent;
use super::MAX_REVISIONS_PER_RESPONSE;
use crate::storage::StorageError;

/// One round over the unsynced watchers whose streams have room. Returns
/// whether there may be more to do right away.
pub fn sync_once(hub: &Arc<WatchHub>) -> Result<bool, StorageError> {
    let (candidates, notified) = {
        let state = hub.lock();
        let candidates: Vec<(u64, i64)> = state
            .unsynced
            .iter()
            .filter_map(|key| state.watchers.get(key).map(|w| (*key, w.next_rev, w.stream.has_room())))
            .filter(|(_, _, room)| *room)
            .map(|(key, next, _)| (key, next))
            .collect();
        (candidates, state.notified)
    };
    let Some(from) = candidates.iter().map(|(_, next)| *next).min() else { return Ok(false) };
    let to = notified.min(from.saturating_add(MAX_REVISIONS_PER_RESPONSE - 1));
    let (events, compacted) = hub.read_history(from, to)?;

    let mut state = hub.lock();
    let mut more = false;
    for (key, _) in candidates {
        if !state.unsynced.contains(&key) {
            continue;
        }
        let Some(w) = state.watchers.get_mut(&key) else { continue };
        if w.next_rev < compacted {
            // History it still needs is gone: cancel, as etcd does.
            let response = WatchResponse {
                header: Some(ResponseHeader::default()),
                watch_id: w.watch_id,
                compact_revision: compacted,
                canceled: true,
                ..Default::default()
            };
            w.stream.send_control(response);
            let stream = w.stream.id;
            state.remove(key);
            state.answer_progress(stream);
            continue;
        }
        let last = to.min(w.next_rev.saturating_add(MAX_REVISIONS_PER_RESPONSE - 1));
        let evs: Vec<_> = events
            .iter()
            .filter(|e| e.revision >= w.next_rev && e.revision <= last && w.wants(&e.event))
            .map(|e| e.event.clone())
            .collect();
        if !evs.is_empty() {
            let response = WatchResponse {
                header: Some(ResponseHeader { revision: notified, ..Default::default() }),
                watch_id: w.watch_id,
                events: evs,
                ..Default::default()
            };
            match w.stream.send_events(response, w.prev_kv, w.fragment) {
                Sent::Queued => w.got_events = true,
                Sent::Full => continue,
                Sent::Closed => {
                    state.remove(key);
                    continue;
                }
            }
        }
        if last >= w.next_rev {
            w.next_rev = last + 1;
        }
        let stream = w.stream.id;
        if w.next_rev > state.notified {
            state.mark_synced(key);
            state.answer_progress(stream);
        } else {
            more = true;
        }
    }
    Ok(more)
}
