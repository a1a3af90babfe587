//! `etcdserverpb.Cluster`: listing members and changing the membership.
//! Changes are decided on the leader (see `server::membership`); a member
//! that is not the leader passes the request on to the leader's client URL.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::etcdserverpb::cluster_client::ClusterClient;
use shoal_proto::etcdserverpb::cluster_server::Cluster;
use shoal_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
    ResponseHeader,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::access;
use crate::error::EtcdError;
use crate::raft::state_machine::published_members;
use crate::server::Node;

/// How often a member waiting for the leader's client URL looks again.
const LEADER_POLL: Duration = Duration::from_millis(20);

pub struct ClusterService {
    node: Arc<Node>,
}

impl ClusterService {
    pub fn new(node: Arc<Node>) -> ClusterService {
        ClusterService { node }
    }

    /// A client of the leader's Cluster service, when another member leads.
    async fn leader_client(&self) -> Result<Option<ClusterClient<Channel>>, EtcdError> {
        let Some(url) = self.leader_url().await? else { return Ok(None) };
        // With TLS, the connector dials it; tonic is given the URL as http.
        let tls = url.starts_with("https://") && self.node.client_dialer.is_some();
        let url = if tls { url.replacen("https://", "http://", 1) } else { url };
        let endpoint = tonic::transport::Endpoint::from_shared(url)
            .map_err(|_| EtcdError::NoLeader)?
            .connect_timeout(self.node.election_timeout);
        let channel = match (&self.node.client_dialer, tls) {
            (Some(dialer), true) => endpoint.connect_with_connector(dialer.clone()).await,
            _ => endpoint.connect().await,
        }
        .map_err(|_| EtcdError::ConnectionLost)?;
        Ok(Some(ClusterClient::new(channel)))
    }

    /// The leader's client URL, or `None` when this member leads. A leader
    /// that has just started may not have published its URLs yet: wait for
    /// them, as etcd waits for a leader, up to the request timeout.
    async fn leader_url(&self) -> Result<Option<String>, EtcdError> {
        let deadline = tokio::time::Instant::now() + self.node.request_timeout;
        loop {
            match self.node.leader() {
                Some(id) if id == self.node.id => return Ok(None),
                Some(leader) => {
                    let published = published_members(&self.node.db).map_err(internal)?;
                    let url =
                        published.into_iter().find(|m| m.id == leader).and_then(|m| m.client_urls.into_iter().next());
                    if url.is_some() {
                        return Ok(url);
                    }
                }
                None => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EtcdError::NoLeader);
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    /// The header of a membership response: etcd leaves the revision out.
    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader { revision: 0, ..self.node.header(0) })
    }
}

fn internal(e: impl std::fmt::Display) -> EtcdError {
    EtcdError::Internal(format!("etcdserver: reading members: {e}"))
}

/// Members that have published their attributes, i.e. have started.
pub fn started_members(node: &Node) -> Result<BTreeSet<u64>, EtcdError> {
    Ok(published_members(&node.db).map_err(internal)?.into_iter().map(|m| m.id).collect())
}

/// The members of the current Raft membership with what they published
/// about themselves, sorted by id as etcd lists them. A member that has not
/// started yet has no name and no client URLs.
pub fn members(node: &Node) -> Result<Vec<Member>, EtcdError> {
    let metrics = node.metrics();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let published: BTreeMap<u64, _> =
        published_members(&node.db).map_err(internal)?.into_iter().map(|m| (m.id, m)).collect();
    let mut members: Vec<Member> = membership
        .nodes()
        .map(|(id, raft_node)| {
            let attrs = published.get(id);
            Member {
                id: *id,
                name: attrs.map(|a| a.name.clone()).unwrap_or_default(),
                peer_ur_ls: raft_node.peer_urls.clone(),
                client_ur_ls: attrs.map(|a| a.client_urls.clone()).unwrap_or_default(),
                is_learner: !voters.contains(id),
            }
        })
        .collect();
    members.sort_by_key(|m| m.id);
    Ok(members)
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        access::admin(&self.node, &request).await?;
        if let Some(mut leader) = self.leader_client().await? {
            return leader.member_add(access::forwarded(request)).await;
        }
        let req = request.into_inner();
        let member = self.node.add_member(req.peer_ur_ls, req.is_learner).await?;
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: Some(member),
            members: members(&self.node)?,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        access::admin(&self.node, &request).await?;
        if let Some(mut leader) = self.leader_client().await? {
            return leader.member_remove(access::forwarded(request)).await;
        }
        self.node.remove_member(request.get_ref().id).await?;
        Ok(Response::new(MemberRemoveResponse { header: self.header(), members: members(&self.node)? }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        access::admin(&self.node, &request).await?;
        if let Some(mut leader) = self.leader_client().await? {
            return leader.member_update(access::forwarded(request)).await;
        }
        let req = request.into_inner();
        self.node.update_member(req.id, req.peer_ur_ls).await?;
        Ok(Response::new(MemberUpdateResponse { header: self.header(), members: members(&self.node)? }))
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        access::caller(&self.node, &request).await?;
        if request.get_ref().linearizable {
            self.node.linearizable_barrier().await?;
        }
        Ok(Response::new(MemberListResponse { header: self.header(), members: members(&self.node)? }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        access::admin(&self.node, &request).await?;
        if let Some(mut leader) = self.leader_client().await? {
            return leader.member_promote(access::forwarded(request)).await;
        }
        self.node.promote_member(request.get_ref().id).await?;
        Ok(Response::new(MemberPromoteResponse { header: self.header(), members: members(&self.node)? }))
    }
}
