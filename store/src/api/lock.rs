//! `v3lockpb.Lock`: etcd's distributed mutex as a service. A caller's key is
//! `name/<lease in hex>`, put with the caller's lease; the holder is the key
//! under `name/` created first, and a caller waits until every key created
//! before its own is gone. Unlock deletes the key.
//!
//! A Lock call that ends while waiting (cancelled, or the client gone)
//! deletes the key it put, as etcd's does.

use std::sync::Arc;

use shoal_proto::etcdserverpb::{response_op, TxnRequest};
use shoal_proto::v3lockpb::lock_server::Lock;
use shoal_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::concurrency::{self, created_at, exactly, first_created, get_op, owned_key, prefix_of, put_op, Abandoned};
use super::in_process::{Client, Credentials};
use crate::server::Node;

pub struct LockService {
    node: Arc<Node>,
}

impl LockService {
    pub fn new(node: Arc<Node>) -> LockService {
        LockService { node }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let client = Client::new(self.node.clone(), Credentials::of(&request));
        let req = request.into_inner();
        let lease = concurrency::session_lease(&client, req.lease).await?;
        let prefix = prefix_of(&req.name);
        let key = owned_key(&prefix, lease);
        // Put the key unless this lease already has it; either way, look up
        // the holder in the same revision.
        let txn = TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![put_op(&key, b"", lease), get_op(first_created(&prefix))],
            failure: vec![get_op(exactly(&key)), get_op(first_created(&prefix))],
        };
        let answer = client.txn(txn).await?;
        let header = answer.header;
        let revision = header.as_ref().map_or(0, |h| h.revision);
        let ranges: Vec<_> = answer
            .responses
            .into_iter()
            .map(|op| match op.response {
                Some(response_op::Response::ResponseRange(range)) => range.kvs,
                _ => Vec::new(),
            })
            .collect();
        let my_revision = if answer.succeeded {
            revision
        } else {
            ranges.first().and_then(|kvs| kvs.first()).map_or(revision, |kv| kv.create_revision)
        };
        let holder = ranges.get(1).and_then(|kvs| kvs.first());
        if holder.is_none_or(|kv| kv.create_revision == my_revision) {
            return Ok(Response::new(LockResponse { header, key }));
        }
        let abandoned = Abandoned::new(&client, key.clone(), None);
        concurrency::wait_deletes(&client, &prefix, my_revision - 1).await?;
        // The lease may have expired while waiting, taking the key with it.
        let mine = client.range(exactly(&key)).await?;
        abandoned.keep();
        if mine.kvs.is_empty() {
            return Err(Status::unknown(concurrency::SESSION_EXPIRED));
        }
        Ok(Response::new(LockResponse { header: mine.header, key }))
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let client = Client::new(self.node.clone(), Credentials::of(&request));
        let deleted = client.delete(request.into_inner().key).await?;
        Ok(Response::new(UnlockResponse { header: deleted.header }))
    }
}
