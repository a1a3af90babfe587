//! `etcdserverpb.Cluster`. MemberList for now; membership changes come later
//! and answer Unimplemented until then.

use std::collections::BTreeMap;
use std::sync::Arc;

use shoal_proto::etcdserverpb::cluster_server::Cluster;
use shoal_proto::etcdserverpb::{Member, MemberListRequest, MemberListResponse};
use tonic::{Request, Response, Status};

use crate::error::EtcdError;
use crate::raft::state_machine::published_members;
use crate::server::Node;

pub struct ClusterService {
    node: Arc<Node>,
}

impl ClusterService {
    pub fn new(node: Arc<Node>) -> ClusterService {
        ClusterService { node }
    }
}

/// The members of the current Raft membership with what they published
/// about themselves, sorted by id as etcd lists them.
pub fn members(node: &Node) -> Result<Vec<Member>, EtcdError> {
    let metrics = node.metrics();
    let membership = metrics.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let published: BTreeMap<u64, _> = published_members(&node.db)
        .map_err(|e| EtcdError::Internal(format!("etcdserver: reading members: {e}")))?
        .into_iter()
        .map(|m| (m.id, m))
        .collect();
    let mut members: Vec<Member> = membership
        .nodes()
        .map(|(id, raft_node)| {
            let attrs = published.get(id);
            Member {
                id: *id,
                name: attrs.map_or_else(|| raft_node.name.clone(), |a| a.name.clone()),
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
    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if request.get_ref().linearizable {
            self.node.linearizable_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: Some(self.node.header(self.node.kv.current_revision())),
            members: members(&self.node)?,
        }))
    }
}
