//! Put, range and compare-and-swap.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use shoal_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use shoal_proto::etcdserverpb::kv_client::KvClient;
use shoal_proto::etcdserverpb::{request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::transport::Channel;

use crate::cli::{PutArgs, RangeArgs};
use crate::keys::{self, KeyGen};
use crate::runner::Op;

pub struct PutOp {
    kv: KvClient<Channel>,
    keys: KeyGen,
    value: Vec<u8>,
}

impl PutOp {
    pub fn new(channel: Channel, args: &PutArgs, counter: Arc<AtomicU64>, seed: u64) -> PutOp {
        let sequential = args.sequential.then_some(counter);
        PutOp {
            kv: KvClient::new(channel),
            keys: KeyGen::new(args.key_size, args.key_space, sequential, seed + 1),
            value: keys::value(args.val_size, seed + 7),
        }
    }
}

impl Op for PutOp {
    async fn run(&mut self, _index: u64) -> Result<(), tonic::Status> {
        let req = PutRequest { key: self.keys.next_key(), value: self.value.clone(), ..Default::default() };
        self.kv.put(req).await.map(|_| ())
    }
}

pub struct RangeOp {
    kv: KvClient<Channel>,
    keys: KeyGen,
    serializable: bool,
}

impl RangeOp {
    pub fn new(channel: Channel, args: &RangeArgs, seed: u64) -> RangeOp {
        RangeOp {
            kv: KvClient::new(channel),
            keys: KeyGen::new(args.key_size, args.key_space, None, seed + 3),
            serializable: args.serializable,
        }
    }
}

impl Op for RangeOp {
    async fn run(&mut self, _index: u64) -> Result<(), tonic::Status> {
        let req = RangeRequest { key: self.keys.next_key(), serializable: self.serializable, ..Default::default() };
        self.kv.range(req).await.map(|_| ())
    }
}

/// Compare-and-swap on a key of its own: put if the mod revision is the one
/// last seen, else read the new one.
pub struct TxnPutOp {
    kv: KvClient<Channel>,
    key: Vec<u8>,
    value: Vec<u8>,
    seen: i64,
}

impl TxnPutOp {
    pub fn new(channel: Channel, args: &PutArgs, seed: u64) -> TxnPutOp {
        let mut key = b"cas/".to_vec();
        key.extend(keys::key(seed, args.key_size));
        TxnPutOp { kv: KvClient::new(channel), key, value: keys::value(args.val_size, seed + 11), seen: 0 }
    }
}

impl Op for TxnPutOp {
    async fn run(&mut self, _index: u64) -> Result<(), tonic::Status> {
        let put = PutRequest { key: self.key.clone(), value: self.value.clone(), ..Default::default() };
        let get = RangeRequest { key: self.key.clone(), ..Default::default() };
        let txn = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                key: self.key.clone(),
                target_union: Some(TargetUnion::ModRevision(self.seen)),
                range_end: vec![],
            }],
            success: vec![RequestOp { request: Some(request_op::Request::RequestPut(put)) }],
            failure: vec![RequestOp { request: Some(request_op::Request::RequestRange(get)) }],
        };
        let resp = self.kv.txn(txn).await?.into_inner();
        self.seen = if resp.succeeded {
            resp.header.map_or(0, |h| h.revision)
        } else {
            resp.responses
                .first()
                .and_then(|r| match &r.response {
                    Some(shoal_proto::etcdserverpb::response_op::Response::ResponseRange(range)) => {
                        range.kvs.first().map(|kv| kv.mod_revision)
                    }
                    _ => None,
                })
                .unwrap_or(0)
        };
        Ok(())
    }
}
