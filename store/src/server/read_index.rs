//! Linearizable reads on any member (etcd's ReadIndex): the leader confirms
//! its leadership with a quorum and names its commit index; the member that
//! serves the read waits until it has applied that far, then reads locally.

use std::time::Duration;

use openraft::errors::{LinearizableReadError, RaftError};
use tokio::time::Instant;

use super::node::Node;
use crate::error::EtcdError;

const RETRY_WAIT: Duration = Duration::from_millis(100);

impl Node {
    /// Returns once a read on this member sees every write committed before the call.
    pub async fn linearizable_barrier(&self) -> Result<(), EtcdError> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let leader = self.leader();
            let index = self
                .read_batch
                .read_index(|| async {
                    match leader {
                        Some(id) if id == self.id => self.local_read_index(deadline).await,
                        Some(id) => Ok(self.remote_read_index(id).await),
                        None => Ok(None),
                    }
                })
                .await?;
            if let Some(index) = index {
                let remaining = deadline.saturating_duration_since(Instant::now());
                return self
                    .raft
                    .wait(Some(remaining))
                    .applied_index_at_least(Some(index), "linearizable read")
                    .await
                    .map(|_| ())
                    .map_err(|_| EtcdError::Timeout);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(if self.leader().is_none() { EtcdError::NoLeader } else { EtcdError::Timeout });
            }
            self.leader_change(leader, RETRY_WAIT.min(deadline - now)).await;
        }
    }

    /// The leader's read index, confirmed by a quorum. `None` when this
    /// member turned out not to be the leader.
    pub async fn local_read_index(&self, deadline: Instant) -> Result<Option<u64>, EtcdError> {
        match tokio::time::timeout_at(deadline, self.raft.get_read_log_id(openraft::ReadPolicy::ReadIndex)).await {
            Err(_) => Err(EtcdError::Timeout),
            Ok(Ok((read_log_id, _applied))) => Ok(Some(read_log_id.index())),
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_)))) => Ok(None),
            Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)))) => Ok(None),
            Ok(Err(RaftError::Fatal(_))) => Err(EtcdError::Stopped),
        }
    }

    async fn remote_read_index(&self, leader: u64) -> Option<u64> {
        let url = self.member_node(leader)?.peer_urls.first().cloned()?;
        let mut client = self.peers.client(&url).ok()?;
        let request = tonic::Request::new(shoal_proto::peerpb::ReadIndexRequest {});
        match tokio::time::timeout(self.request_timeout, client.read_index(request)).await {
            Ok(Ok(reply)) => Some(reply.into_inner().index),
            _ => None,
        }
    }
}
