//! The store against a naive model: random puts, deletes, txns and
//! compactions, then ranges at random revisions must agree with the model.

use std::collections::BTreeMap;

use proptest::prelude::*;
use shoal_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use shoal_proto::etcdserverpb::{
    request_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use shoal_proto::mvccpb::KeyValue;
use shoal_proto::peerpb::internal_request::Request;

use super::store_test::TestStore;
use super::MvccError;

const KEYS: &[&str] = &["a", "a\0", "ab", "b", "c"];

#[derive(Clone, Debug)]
enum Op {
    Put(usize, u8),
    Delete(usize, Option<usize>),
    /// If key's version equals v, put (k1, x) else delete key k2.
    Txn {
        key: usize,
        version: i64,
        put: usize,
        value: u8,
        delete: usize,
    },
    Compact(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    prop_oneof![
        4 => (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (key.clone(), proptest::option::of(0..KEYS.len())).prop_map(|(k, e)| Op::Delete(k, e)),
        2 => (key.clone(), 0i64..3, key.clone(), any::<u8>(), key).prop_map(|(key, version, put, value, delete)| Op::Txn {
            key, version, put, value, delete
        }),
        1 => any::<u8>().prop_map(Op::Compact),
    ]
}

/// Every revision's full state, kept naively.
struct Model {
    states: Vec<BTreeMap<Vec<u8>, KeyValue>>, // states[r - 1] is the state at revision r
    compacted: i64,
}

impl Model {
    fn current(&self) -> i64 {
        self.states.len() as i64
    }

    fn latest(&self) -> BTreeMap<Vec<u8>, KeyValue> {
        self.states.last().cloned().unwrap_or_default()
    }

    fn put(state: &mut BTreeMap<Vec<u8>, KeyValue>, rev: i64, key: &[u8], value: u8) {
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
                let r = i64::from(*r) % (self.current() + 1);
                if r > self.compacted {
                    self.compacted = r;
                }
                return;
            }
        }
        // Every put changes a mod revision, so "changed" is exactly "wrote".
        if next != self.latest() {
            self.states.push(next);
        }
    }
}

fn request(op: &Op) -> Request {
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
        Op::Compact(_) => unreachable!("compactions are built by the test"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn ranges_agree_with_the_model(ops in proptest::collection::vec(op(), 1..40), probes in proptest::collection::vec((any::<u16>(), 0..KEYS.len(), 0..=KEYS.len()), 8)) {
        let store = TestStore::new();
        let mut model = Model { states: vec![BTreeMap::new()], compacted: -1 };
        for op in &ops {
            match op {
                Op::Compact(r) => {
                    let r = i64::from(*r) % (model.current() + 1);
                    store.apply(Request::Compaction(CompactionRequest { revision: r, physical: false }));
                }
                other => { store.apply(request(other)); }
            }
            model.apply(op);
            prop_assert_eq!(store.store.current_revision(), model.current());
        }
        for (rev, start, end) in probes {
            let rev = i64::from(rev) % (model.current() + 1);
            let end_key: Vec<u8> = if end == KEYS.len() { vec![0] } else { KEYS[end].as_bytes().to_vec() };
            let req = RangeRequest { key: KEYS[start].into(), range_end: end_key.clone(), revision: rev, ..Default::default() };
            let got = store.store.range(&req);
            let read_rev = if rev == 0 { model.current() } else { rev };
            if read_rev < model.compacted {
                prop_assert!(matches!(got, Err(MvccError::Compacted)));
                continue;
            }
            let state = &model.states[(read_rev - 1) as usize];
            let expected: Vec<KeyValue> = state
                .values()
                .filter(|kv| kv.key.as_slice() >= KEYS[start].as_bytes() && (end == KEYS.len() || kv.key < end_key))
                .cloned()
                .collect();
            let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got.count, expected.len() as i64);
            prop_assert_eq!(got.kvs, expected);
        }
    }
}
