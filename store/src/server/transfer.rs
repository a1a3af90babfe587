//! MoveLeader: handing leadership to a chosen voter.
//!
//! openraft 0.9 has no leadership-transfer message, so the leader does it
//! in steps it does have: it waits until the target holds its whole log,
//! stops sending heartbeats so that the followers' leader lease runs out,
//! then asks the target (over the peer service) to campaign at once. The
//! target, with the newest log and the first to ask, wins the election.
//! Heartbeats resume whatever happens.

use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use shoal_proto::peerpb::CampaignRequest;
use tokio::time::Instant;

use super::node::Node;
use crate::error::EtcdError;

/// How often progress is checked while waiting.
const POLL: Duration = Duration::from_millis(20);

/// Heartbeats stay off while this lives, and resume when it is dropped,
/// even if the request is cancelled half way.
struct PausedHeartbeats<'a>(&'a crate::raft::Raft);

impl<'a> PausedHeartbeats<'a> {
    fn new(raft: &'a crate::raft::Raft) -> Self {
        raft.runtime_config().heartbeat(false);
        PausedHeartbeats(raft)
    }
}

impl Drop for PausedHeartbeats<'_> {
    fn drop(&mut self) {
        self.0.runtime_config().heartbeat(true);
    }
}

impl Node {
    /// Moves leadership from this member, which must lead, to `target`.
    pub async fn move_leader(&self, target: u64) -> Result<(), EtcdError> {
        if self.leader() != Some(self.id) {
            return Err(EtcdError::NotLeader);
        }
        if target == self.id {
            return Ok(());
        }
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        if !membership.voter_ids().any(|id| id == target) {
            return Err(EtcdError::BadLeaderTransferee);
        }
        let url = self
            .member_node(target)
            .and_then(|n| n.peer_urls.first().cloned())
            .ok_or(EtcdError::BadLeaderTransferee)?;
        let deadline = Instant::now() + self.request_timeout;
        self.wait_caught_up(target, deadline).await?;

        let _paused = PausedHeartbeats::new(&self.raft);
        let result = async {
            // Followers refuse to vote until the lease since the last heartbeat runs out.
            let lease = Duration::from_millis(self.raft.config().election_timeout_max);
            tokio::time::sleep(lease + 2 * POLL).await;
            let mut client = self.peers.client(&url).map_err(|_| EtcdError::BadLeaderTransferee)?;
            client.campaign(CampaignRequest {}).await.map_err(|_| EtcdError::LeaderTransferTimeout)?;
            let mut watch = self.raft.metrics();
            let moved =
                tokio::time::timeout_at(deadline, watch.wait_until(move |m| m.current_leader == Some(target))).await;
            match moved {
                Ok(Ok(_)) => Ok(()),
                _ => Err(EtcdError::LeaderTransferTimeout),
            }
        }
        .await;
        if result.is_ok() {
            tracing::info!(target = format_args!("{target:x}"), "leadership transferred");
        }
        result
    }

    /// Waits until `target` has every entry this leader has.
    async fn wait_caught_up(&self, target: u64, deadline: Instant) -> Result<(), EtcdError> {
        loop {
            let metrics = self.metrics();
            let last = metrics.last_log_index;
            let matched = metrics.replication.as_ref().and_then(|r| r.get(&target).cloned().flatten());
            if matched.map(|id| id.index) >= last {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EtcdError::LeaderTransferTimeout);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
