//! Any bytes as an etcd snapshot (a bbolt database): the reader walks every
//! bucket it can reach or refuses the file, and the restore's mapping of
//! etcd's buckets onto Shoal's rows converts it or refuses it; neither
//! panics, loops, or reads past the bytes it was given. Inputs that start as bbolt's
//! meta pages get a valid checksum patched in, so that the tree behind the
//! meta pages is reached.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_store::backup::bbolt::{Bucket, Db, Item};
use shoal_store::backup::from_etcd;

/// FNV-1a 64 of the meta page's fields, written where bbolt keeps it.
fn patch_meta(data: &mut [u8], page: usize) {
    let meta = page + 16;
    if data.len() < meta + 64 {
        return;
    }
    let hash = data[meta..meta + 56]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    data[meta + 56..meta + 64].copy_from_slice(&hash.to_le_bytes());
}

fuzz_target!(|input: &[u8]| {
    let mut data = input.to_vec();
    patch_meta(&mut data, 0);
    patch_meta(&mut data, 4096);
    let len = data.len() as u64;
    let Ok(db) = Db::open(data.into_boxed_slice(), len) else { return };
    let _ = from_etcd::rows(&db, &mut |_, _, _| Ok(()), &mut |_| {});
    let mut pending = vec![db.root()];
    let mut visited = 0usize;
    while let Some(bucket) = pending.pop() {
        visited += 1;
        if visited > 10_000 {
            return;
        }
        let mut nested: Vec<Bucket> = Vec::new();
        let _ = db.for_each(&bucket, &mut |_, item| {
            if let Item::Bucket(b) = item {
                nested.push(b);
            }
            Ok(())
        });
        pending.extend(nested);
    }
});
