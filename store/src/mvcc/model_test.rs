//! The store against the naive model: random puts, deletes, txns and
//! compactions, then ranges at random revisions must agree with the model.

use proptest::prelude::*;

use super::model::{self, Op, Probe, KEYS};
use super::store_test::TestStore;

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

fn probe() -> impl Strategy<Value = Probe> {
    (any::<u16>(), 0..KEYS.len(), 0..=KEYS.len()).prop_map(|(revision, start, end)| Probe { revision, start, end })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn ranges_agree_with_the_model(ops in proptest::collection::vec(op(), 1..40), probes in proptest::collection::vec(probe(), 8)) {
        let store = TestStore::new();
        model::check(&store.store, &ops, &probes).map_err(TestCaseError::fail)?;
    }
}
