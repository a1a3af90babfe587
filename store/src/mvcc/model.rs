//! A naive model of the MVCC store, and a checker that drives a real store
//! and the model with the same operations, then compares ranges at any
//! revision. The model keeps every revision's full state, so it is obviously
//! right and slow. The property test and the fuzz target both use it.

use std::collections::BTreeMap;

use rocksdb::WriteBatch;
use shoal_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use shoal_proto::etcdserverpb::{
    request_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use shoal_proto::mvccpb::KeyValue;
use shoal_proto::peerpb::internal_request::Request;
use shoal_proto::peerpb::InternalRequest;

use super::{KvStore, MvccError};
use crate::storage;

/// The keys the operations touch: close neighbours in byte order, including
/// a key and the same key with a NUL appended.
pub const KEYS: &[&str] = &["a", "a\0", "ab", "b", "c"];

#[derive(Clone, Debug)]
pub enum Op {
    Put(usize, u8),
    /// Delete a key, or the range from it to another key.
    Delete(usize, Option<usize>),
    /// If `key`'s version equals `version`, put (`put`, `value`), else
    /// delete `delete`.
    Txn {
        key: usize,
        version: i64,
        put: usize,
        value: u8,
        delete: usize,
    },
    /// Compact at this revision, modulo the current one plus one.
    Compact(u8),
}

impl Op {
    /// Reads one operation off the front of `bytes`: fuzz input as operations.
    pub fn take(bytes: &mut &[u8]) -> Option<Op> {
        let (&[kind, a, b, c], rest) = bytes.split_first_chunk::<4>()?;
        *bytes = rest;
        let key = |byte: u8| usize::from(byte) % KEYS.len();
        Some(match kind % 9 {
            0..=3 => Op::Put(key(a), b),
            4 | 5 => Op::Delete(key(a), (b % 2 == 1).then(|| key(c))),
            6 | 7 => Op::Txn { key: key(a), version: i64::from(b % 3), put: key(b / 3), value: c, delete: key(c) },
            _ => Op::Compact(a),
        })
    }
}

/// A range to compare: at `revision` (modulo the current one plus one; 0 is
/// the latest), from key `start` to key `end` (`KEYS.len()`: to the end).
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub revision: u16,
    pub start: usize,
    pub end: usize,
}

impl Probe {
    /// Reads one probe off the front of `bytes`.
    pub fn take(bytes: &mut &[u8]) -> Option<Probe> {
        let (&[r0, r1, start, end], rest) = bytes.split_first_chunk::<4>()?;
        *bytes = rest;
        Some(Probe {
            revision: u16::from_le_bytes([r0, r1]),
            start: usize::from(start) % KEYS.len(),
            end: usize::from(end) % (KEYS.len() + 1),
        })
    }
}

type State = BTreeMap<Vec<u8>, KeyValue>;

/// Every revision's full state.
struct Model {
    /// `states[r - 1]` is the state at revision `r`.
    states: Vec<State>,
    compacted: i64,
}

impl Model {
    fn current(&self) -> i64 {
        self.states.len() as i64
    }

    fn latest(&self) -> State {
        self.states.last().cloned().unwrap_or_default()
    }

    fn put(state: &mut State, rev: i64, key: &[u8], value: u8) {
        let prev = state.get(key).cloned();
        state.insert(
            key.to_vec(),
            KeyValue {
                key: key.to_vec(),
                create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                mod_revision: rev,
                version: prev.as_ref().map_or(1, |p| p.version + 1),
                value: vec![value],
                lease: 0,
            },
        );
    }

    fn in_range(key: &[u8], start: &[u8], end: Option<&[u8]>) -> bool {
        match end {
            None => key == start,
            Some(end) => key >= start && key < end,
        }
    }

    fn compaction_target(&self, r: u8) -> i64 {
        i64::from(r) % (self.current() + 1)
    }

    fn apply(&mut self, op: &Op) {
        let rev = self.current() + 1;
        let mut next = self.latest();
        match op {
            Op::Put(k, v) => Self::put(&mut next, rev, KEYS[*k].as_bytes(), *v),
            Op::Delete(k, end) => {
                let end = end.map(|e| KEYS[e].as_bytes());
                next.retain(|key, _| !Self::in_range(key, KEYS[*k].as_bytes(), end));
            }
            Op::Txn { key, version, put, value, delete } => {
                let actual = next.get(KEYS[*key].as_bytes()).map_or(0, |kv| kv.version);
                if actual == *version {
                    Self::put(&mut next, rev, KEYS[*put].as_bytes(), *value);
                } else {
                    next.remove(KEYS[*delete].as_bytes());
                }
            }
            Op::Compact(r) => {
                self.compacted = self.compacted.max(self.compaction_target(*r));
                return;
            }
        }
        // Every put changes a mod revision, so "changed" is exactly "wrote".
        if next != self.latest() {
            self.states.push(next);
        }
    }

    /// What a range should return, or None where it must be refused as compacted.
    fn range(&self, probe: Probe) -> Option<Vec<KeyValue>> {
        let rev = i64::from(probe.revision) % (self.current() + 1);
        let rev = if rev == 0 { self.current() } else { rev };
        if rev < self.compacted {
            return None;
        }
        let start = KEYS[probe.start].as_bytes();
        let end = KEYS.get(probe.end).map(|e| e.as_bytes());
        let state = &self.states[(rev - 1) as usize];
        Some(
            state
                .values()
                .filter(|kv| kv.key.as_slice() >= start && end.is_none_or(|e| kv.key.as_slice() < e))
                .cloned()
                .collect(),
        )
    }
}

fn request(op: &Op, model: &Model) -> Request {
    let put = |k: usize, v: u8| PutRequest { key: KEYS[k].into(), value: vec![v], ..Default::default() };
    match op {
        Op::Put(k, v) => Request::Put(put(*k, *v)),
        Op::Delete(k, end) => Request::DeleteRange(DeleteRangeRequest {
            key: KEYS[*k].into(),
            // An end at or below the start deletes nothing, as in etcd.
            range_end: end.map(|e| KEYS[e].as_bytes().to_vec()).unwrap_or_default(),
            prev_kv: false,
        }),
        Op::Txn { key, version, put: p, value, delete } => Request::Txn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Version as i32,
                key: KEYS[*key].into(),
                target_union: Some(TargetUnion::Version(*version)),
                range_end: vec![],
            }],
            success: vec![RequestOp { request: Some(request_op::Request::RequestPut(put(*p, *value))) }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    key: KEYS[*delete].into(),
                    ..Default::default()
                })),
            }],
        }),
        Op::Compact(r) => {
            Request::Compaction(CompactionRequest { revision: model.compaction_target(*r), physical: false })
        }
    }
}

/// Applies `ops` to `store` (which must be empty) and to the model, then
/// compares every probe; says what differs first.
pub fn check(store: &KvStore, ops: &[Op], probes: &[Probe]) -> Result<(), String> {
    let mut model = Model { states: vec![State::new()], compacted: -1 };
    for op in ops {
        let mut batch = WriteBatch::default();
        let request = InternalRequest { request: Some(request(op, &model)), auth_revision: 0, ..Default::default() };
        let applied = store.execute(&request, &mut batch).map_err(|e| format!("execute {op:?}: {e}"))?;
        storage::write_buffered(store.db(), batch).map_err(|e| format!("write: {e}"))?;
        store.committed(&applied);
        model.apply(op);
        if store.current_revision() != model.current() {
            return Err(format!(
                "after {op:?}: revision {} but the model is at {}",
                store.current_revision(),
                model.current()
            ));
        }
    }
    for &probe in probes {
        let rev = i64::from(probe.revision) % (model.current() + 1);
        let end: Vec<u8> = KEYS.get(probe.end).map_or(vec![0], |e| e.as_bytes().to_vec());
        let req = RangeRequest { key: KEYS[probe.start].into(), range_end: end, revision: rev, ..Default::default() };
        let got = store.range(&req);
        match (model.range(probe), got) {
            (None, Err(MvccError::Compacted)) => {}
            (Some(expected), Ok(got)) if got.count == expected.len() as i64 && got.kvs == expected => {}
            (expected, got) => return Err(format!("{probe:?}: expected {expected:?}, got {got:?}")),
        }
    }
    Ok(())
}
