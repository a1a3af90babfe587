//! One watch: what it covers, what it wants, and how far it has got.

use std::sync::Arc;

use shoal_proto::etcdserverpb::watch_create_request::FilterType;
use shoal_proto::etcdserverpb::WatchCreateRequest;
use shoal_proto::mvccpb::{event::EventType, Event};

use super::stream::StreamHandle;

/// The keys a watch covers, in etcd's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    Single(Vec<u8>),
    /// `[start, end)`, or every key `>= start` when `end` is `None`.
    Range {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

impl Keys {
    /// etcd's reading of a create request: an empty key is `"\0"`, an empty
    /// `range_end` one key, `"\0"` every key from the start.
    pub fn from_request(key: &[u8], range_end: &[u8]) -> Keys {
        let key = if key.is_empty() { vec![0] } else { key.to_vec() };
        match range_end {
            [] => Keys::Single(key),
            [0] => Keys::Range { start: key, end: None },
            end => Keys::Range { start: key, end: Some(end.to_vec()) },
        }
    }

    /// Whether the range is empty (`key >= range_end`), which etcd refuses.
    pub fn is_empty(&self) -> bool {
        matches!(self, Keys::Range { start, end: Some(end) } if start >= end)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            Keys::Single(k) => k == key,
            Keys::Range { start, end } => key >= start.as_slice() && end.as_ref().is_none_or(|e| key < e.as_slice()),
        }
    }
}

pub struct Watcher {
    pub stream: Arc<StreamHandle>,
    pub watch_id: i64,
    pub keys: Keys,
    /// Unsynced: the next revision to deliver. Synced: the first revision to
    /// deliver (later than now for a watch that starts in the future).
    pub next_rev: i64,
    pub prev_kv: bool,
    pub fragment: bool,
    pub progress_notify: bool,
    no_put: bool,
    no_delete: bool,
    /// Whether events went out since the last progress tick.
    pub got_events: bool,
}

impl Watcher {
    pub fn new(
        stream: Arc<StreamHandle>,
        watch_id: i64,
        keys: Keys,
        next_rev: i64,
        req: &WatchCreateRequest,
    ) -> Watcher {
        let has = |f: FilterType| req.filters.contains(&(f as i32));
        Watcher {
            stream,
            watch_id,
            keys,
            next_rev,
            prev_kv: req.prev_kv,
            fragment: req.fragment,
            progress_notify: req.progress_notify,
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            got_events: false,
        }
    }

    /// Whether the watcher wants this event, after its filters.
    pub fn wants(&self, event: &Event) -> bool {
        let key = event.kv.as_ref().map_or(&[][..], |kv| kv.key.as_slice());
        if !self.keys.contains(key) {
            return false;
        }
        let is_put = event.r#type == EventType::Put as i32;
        !(is_put && self.no_put || !is_put && self.no_delete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_etcd() {
        assert_eq!(Keys::from_request(b"", b""), Keys::Single(vec![0]));
        assert!(Keys::from_request(b"a", b"\0").contains(b"zzz"));
        assert!(Keys::from_request(b"b", b"a").is_empty());
        assert!(Keys::from_request(b"a", b"a").is_empty());
        let range = Keys::from_request(b"a", b"c");
        assert!(range.contains(b"b") && !range.contains(b"c"));
    }
}
