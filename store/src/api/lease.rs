//! `etcdserverpb.Lease`: grant and revoke through Raft; keep-alive and time
//! to live answered by the leader (forwarded from any member).

use std::sync::Arc;

use shoal_proto::etcdserverpb::lease_server::Lease;
use shoal_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use shoal_proto::peerpb::{internal_request, internal_response, InternalRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{access, unpack};
use crate::auth::Access;
use crate::error::EtcdError;
use crate::lease::MAX_TTL;
use crate::server::Node;

pub struct LeaseService {
    node: Arc<Node>,
}

impl LeaseService {
    pub fn new(node: Arc<Node>) -> LeaseService {
        LeaseService { node }
    }

    async fn propose(
        &self,
        request: internal_request::Request,
        checked_at: u64,
    ) -> Result<internal_response::Response, EtcdError> {
        self.node.ensure_space(&request).await?;
        let request = InternalRequest { request: Some(request), auth_revision: checked_at, ..Default::default() };
        let (response, _) = self.node.propose(request).await?;
        unpack(response)
    }
}

type KeepAliveStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

fn unexpected() -> Status {
    Status::internal("etcdserver: unexpected response type from the state machine")
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let checked_at = access::caller(&self.node, &request).await?.checked_at();
        let mut req = request.into_inner();
        if req.ttl > MAX_TTL {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        if req.id == 0 {
            req.id = self.node.lease_ids.next();
        }
        // etcd's minimum TTL, fixed by the proposer so that every member stores the same.
        req.ttl = req.ttl.max(self.node.min_lease_ttl);
        match self.propose(internal_request::Request::LeaseGrant(req), checked_at).await? {
            internal_response::Response::LeaseGrant(mut resp) => {
                self.node.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected()),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        // Revoking deletes the lease's keys: the caller must be able to write each.
        let caller = access::caller(&self.node, &request).await?;
        access::lease_keys(&self.node, &caller, request.get_ref().id, Access::Write).await?;
        let checked_at = caller.checked_at();
        match self.propose(internal_request::Request::LeaseRevoke(request.into_inner()), checked_at).await? {
            internal_response::Response::LeaseRevoke(mut resp) => {
                self.node.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected()),
        }
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        access::caller(&self.node, &request).await?;
        let mut requests = request.into_inner();
        let node = self.node.clone();
        let (out, responses) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok(Some(req)) = requests.message().await {
                let reply = match node.lease_renew(req.id).await {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: Some(node.header(node.kv.current_revision())),
                        id: req.id,
                        ttl,
                    }),
                    Err(e) => Err(Status::from(e)),
                };
                let failed = reply.is_err();
                if out.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        // Listing the keys reads them.
        let caller = access::caller(&self.node, &request).await?;
        if request.get_ref().keys {
            access::lease_keys(&self.node, &caller, request.get_ref().id, Access::Read).await?;
        }
        Ok(Response::new(self.node.lease_time_to_live(request.into_inner()).await?))
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        access::caller(&self.node, &request).await?;
        self.node.linearizable_barrier().await?;
        let leases = self.node.lessor.ids().into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.node.header(self.node.kv.current_revision())),
            leases,
        }))
    }
}
