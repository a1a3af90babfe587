//! The MVCC store on a real RocksDB against the naive model: any sequence
//! of puts, deletes, txns and compactions, then ranges at any revision, must
//! agree with the model (or be refused as compacted where the model says so).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_store::mvcc::model::{self, Op, Probe};
use shoal_store::mvcc::KvStore;

fuzz_target!(|data: &[u8]| {
    // The first byte says how many operations; the rest are operations, then probes.
    let Some((&count, mut rest)) = data.split_first() else { return };
    let ops: Vec<Op> = std::iter::from_fn(|| Op::take(&mut rest)).take(usize::from(count % 64)).collect();
    let probes: Vec<Probe> = std::iter::from_fn(|| Probe::take(&mut rest)).take(16).collect();
    let Ok(dir) = tempfile::tempdir() else { return };
    let db = shoal_store::storage::open(dir.path()).expect("open a fresh RocksDB");
    let store = KvStore::open(db).expect("open the store");
    if let Err(difference) = model::check(&store, &ops, &probes) {
        panic!("the store disagrees with the model: {difference}");
    }
});
