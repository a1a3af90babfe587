//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn and Compact.

use std::sync::Arc;

use prost::Message;
use shoal_proto::etcdserverpb::kv_server::Kv;
use shoal_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use shoal_proto::peerpb::{internal_request, internal_response, InternalRequest};
use tonic::{Request, Response, Status};

use super::validate::{self, check_delete, check_put, check_range, check_size, check_txn};
use super::{access, blocking, unpack};
use crate::auth::Caller;
use crate::error::EtcdError;
use crate::server::Node;

pub struct KvService {
    node: Arc<Node>,
}

impl KvService {
    pub fn new(node: Arc<Node>) -> KvService {
        KvService { node }
    }

    async fn propose(
        &self,
        request: internal_request::Request,
        caller: &Caller,
    ) -> Result<(internal_response::Response, u64), EtcdError> {
        self.node.ensure_space(&request).await?;
        let request =
            InternalRequest { request: Some(request), auth_revision: caller.checked_at(), ..Default::default() };
        check_size(request.encoded_len(), self.node.limits.max_request_bytes)?;
        let (response, index) = self.node.propose(request).await?;
        Ok((unpack(response)?, index))
    }
}

fn unexpected() -> Status {
    Status::internal("etcdserver: unexpected response type from the state machine")
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        check_range(request.get_ref())?;
        // Permissions are checked after the read barrier, as etcd does, so a
        // linearizable read never runs under permissions already revoked.
        if !request.get_ref().serializable {
            self.node.linearizable_barrier().await?;
        }
        let caller = access::caller(&self.node, &request).await?;
        let req = request.into_inner();
        caller.state.check_get(&caller.user, &req)?;
        let kv = self.node.kv.clone();
        let mut resp = blocking(move || kv.range(&req)).await?;
        self.node.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let caller = access::caller(&self.node, &request).await?;
        let req = request.into_inner();
        check_put(&req)?;
        access::put(&self.node, &caller, &req).await?;
        match self.propose(internal_request::Request::Put(req), &caller).await? {
            (internal_response::Response::Put(mut resp), _) => {
                self.node.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected()),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let caller = access::caller(&self.node, &request).await?;
        let req = request.into_inner();
        check_delete(&req)?;
        caller.state.check_delete(&caller.user, &req)?;
        match self.propose(internal_request::Request::DeleteRange(req), &caller).await? {
            (internal_response::Response::DeleteRange(mut resp), _) => {
                self.node.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected()),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        check_txn(request.get_ref(), self.node.limits.max_txn_ops)?;
        let read_only = validate::is_read_only(request.get_ref());
        if read_only && !validate::is_serializable(request.get_ref()) {
            self.node.linearizable_barrier().await?;
        }
        let caller = access::caller(&self.node, &request).await?;
        let req = request.into_inner();
        access::txn(&self.node, &caller, &req).await?;
        if read_only {
            let kv = self.node.kv.clone();
            let mut resp = blocking(move || kv.read_only_txn(&req)).await?;
            self.node.fill_header(&mut resp.header);
            return Ok(Response::new(resp));
        }
        match self.propose(internal_request::Request::Txn(req), &caller).await? {
            (internal_response::Response::Txn(mut resp), _) => {
                self.node.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected()),
        }
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        // etcd asks only for a valid token here, not for a permission.
        let caller = access::caller(&self.node, &request).await?;
        let req = request.into_inner();
        let (revision, physical) = (req.revision, req.physical);
        match self.propose(internal_request::Request::Compaction(req), &caller).await? {
            (internal_response::Response::Compaction(mut resp), index) => {
                if physical {
                    // Like etcd, answer once this member has finished compacting.
                    self.node
                        .raft
                        .wait(Some(self.node.request_timeout))
                        .applied_index_at_least(Some(index), "physical compaction")
                        .await
                        .map_err(|_| EtcdError::Timeout)?;
                    self.node.kv.wait_compacted(revision).await;
                }
                self.node.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected()),
        }
    }
}
