//! Any bytes a client sends, decoded as an etcd request and validated, and
//! any bytes in a Raft log entry, decoded as a command: never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use shoal_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};
use shoal_store::api::validate;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    match kind % 5 {
        0 => {
            if let Ok(r) = PutRequest::decode(body) {
                let _ = validate::check_put(&r);
            }
        }
        1 => {
            if let Ok(r) = RangeRequest::decode(body) {
                let _ = validate::check_range(&r);
            }
        }
        2 => {
            if let Ok(r) = DeleteRangeRequest::decode(body) {
                let _ = validate::check_delete(&r);
            }
        }
        3 => {
            if let Ok(r) = TxnRequest::decode(body) {
                let _ = validate::check_txn(&r, 128);
                let _ = validate::is_read_only(&r);
                let _ = validate::is_serializable(&r);
            }
        }
        _ => {
            let _ = shoal_store::storage::decode_bincode::<shoal_store::raft::Command>("fuzz", body);
        }
    }
});
