//! Checks what watchers received against the cluster's complete event log,
//! for etcd's watch guarantees:
//! - ordered: events arrive in revision order;
//! - unique: no event arrives twice;
//! - reliable and resumable: a watcher that started at revision 1 and
//!   resumed after every disconnect from its last revision + 1 has seen
//!   exactly a prefix of the event log, with no gap;
//! - atomic: the events of one revision arrive in one response;
//! - prev_kv: each event carries the key's previous value.

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub revision: i64,
    pub key: Vec<u8>,
    /// None for a delete.
    pub value: Option<Vec<u8>>,
}

/// An event as a watcher received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub event: Event,
    /// The value `prev_kv` carried, if any.
    pub prev: Option<Vec<u8>>,
    /// Which response of this watcher it came in (counting from 0).
    pub response: u64,
}

/// Everything wrong with one watcher's view; empty when it is right.
pub fn check(log: &[Event], received: &[Received]) -> Vec<String> {
    let mut problems = Vec::new();
    // The previous value of each event in the log.
    let mut last: HashMap<&[u8], Option<&Vec<u8>>> = HashMap::new();
    let mut prevs = Vec::with_capacity(log.len());
    for event in log {
        prevs.push(last.get(event.key.as_slice()).copied().flatten());
        last.insert(&event.key, event.value.as_ref());
    }
    for window in received.windows(2) {
        if window[1].event.revision < window[0].event.revision {
            problems.push(format!(
                "out of order: revision {} after {}",
                window[1].event.revision, window[0].event.revision
            ));
        }
    }
    let mut response_of: HashMap<i64, u64> = HashMap::new();
    for (i, got) in received.iter().enumerate() {
        let Some(expected) = log.get(i) else {
            problems.push(format!("event {i} ({got:?}) is past the end of the log (a duplicate or an invented event)"));
            break;
        };
        if got.event != *expected {
            problems.push(format!(
                "event {i}: got {:?}, the log has {expected:?} (a gap, duplicate or reorder)",
                got.event
            ));
            break;
        }
        if got.prev.as_ref() != prevs[i] {
            problems.push(format!(
                "event {i} at revision {}: prev_kv {:?}, expected {:?}",
                got.event.revision, got.prev, prevs[i]
            ));
        }
        match response_of.insert(got.event.revision, got.response) {
            Some(other) if other != got.response => {
                problems.push(format!(
                    "revision {} split across responses {other} and {}",
                    got.event.revision, got.response
                ));
            }
            _ => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(revision: i64, key: &str, value: &str) -> Event {
        Event { revision, key: key.into(), value: Some(value.into()) }
    }

    fn got(event: &Event, prev: Option<&str>, response: u64) -> Received {
        Received { event: event.clone(), prev: prev.map(Into::into), response }
    }

    fn log() -> Vec<Event> {
        vec![
            put(2, "a", "1"),
            put(3, "a", "2"),
            put(4, "a", "3"),
            put(4, "b", "3"),
            Event { revision: 5, key: "a".into(), value: None },
        ]
    }

    #[test]
    fn a_complete_prefix_is_right() {
        let log = log();
        let received =
            vec![got(&log[0], None, 0), got(&log[1], Some("1"), 0), got(&log[2], Some("2"), 1), got(&log[3], None, 1)];
        assert!(check(&log, &received).is_empty());
        assert!(check(&log, &[]).is_empty());
    }

    #[test]
    fn gaps_duplicates_and_reorders_are_caught() {
        let log = log();
        let gap = vec![got(&log[0], None, 0), got(&log[2], Some("2"), 1)];
        assert_eq!(check(&log, &gap).len(), 1);
        let duplicate = vec![got(&log[0], None, 0), got(&log[0], None, 1)];
        assert!(!check(&log, &duplicate).is_empty());
        let reordered = vec![got(&log[1], Some("1"), 0), got(&log[0], None, 0)];
        assert!(check(&log, &reordered).iter().any(|p| p.contains("out of order")));
    }

    #[test]
    fn wrong_prev_kv_and_split_revisions_are_caught() {
        let log = log();
        let wrong_prev = vec![got(&log[0], Some("0"), 0)];
        assert_eq!(check(&log, &wrong_prev).len(), 1);
        let split =
            vec![got(&log[0], None, 0), got(&log[1], Some("1"), 0), got(&log[2], Some("2"), 1), got(&log[3], None, 2)];
        assert!(check(&log, &split).iter().any(|p| p.contains("split")));
    }
}
