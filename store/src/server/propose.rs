//! Getting a write through Raft from any member: proposed locally on the
//! leader, forwarded to the leader from a follower, retried across elections
//! only when it certainly was not appended.

use std::time::Duration;

use shoal_proto::peerpb::{ForwardResponse, InternalRequest, InternalResponse};
use tokio::time::Instant;

use super::batcher::Outcome;
use super::node::Node;
use crate::error::EtcdError;
use crate::metrics::stages::{self, Stage};

/// Longest wait between attempts while there is no usable leader.
const RETRY_WAIT: Duration = Duration::from_millis(100);

enum Attempt {
    Done(InternalResponse, u64),
    /// Certainly not appended anywhere: safe to try again.
    Retry,
    Failed(EtcdError),
}

impl Node {
    /// Replicates `request` and returns the state machine's answer and the log
    /// index it was applied at.
    pub async fn propose(&self, request: InternalRequest) -> Result<(InternalResponse, u64), EtcdError> {
        let _pending = crate::metrics::PendingProposal::start();
        let proposed = self.propose_until_done(request).await;
        if proposed.is_err() {
            crate::metrics::PROPOSALS_FAILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        proposed
    }

    async fn propose_until_done(&self, request: InternalRequest) -> Result<(InternalResponse, u64), EtcdError> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let leader = self.leader();
            let attempt = match leader {
                Some(id) if id == self.id => self.propose_as_leader(request.clone(), deadline).await,
                Some(id) => self.forward_and_answer(id, &request, deadline).await,
                None => Attempt::Retry,
            };
            match attempt {
                Attempt::Done(response, index) => return Ok((response, index)),
                Attempt::Failed(e) => return Err(e),
                Attempt::Retry => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(if self.leader().is_none() { EtcdError::NoLeader } else { EtcdError::Timeout });
            }
            self.leader_change(leader, RETRY_WAIT.min(deadline - now)).await;
        }
    }

    /// Proposes on this member, which must be the leader. Used for local
    /// writes and for writes forwarded by followers.
    pub async fn propose_local(&self, request: InternalRequest) -> Result<ForwardResponse, EtcdError> {
        match self.propose_as_leader(request, Instant::now() + self.request_timeout).await {
            Attempt::Done(response, index) => Ok(ForwardResponse { response: Some(response), log_index: index }),
            Attempt::Retry => Err(EtcdError::NotLeader),
            Attempt::Failed(e) => Err(e),
        }
    }

    async fn propose_as_leader(&self, request: InternalRequest, deadline: Instant) -> Attempt {
        match tokio::time::timeout_at(deadline, self.batcher.propose(request)).await {
            Err(_) => Attempt::Failed(EtcdError::Timeout),
            Ok(Outcome::Done(response, index)) => Attempt::Done(response, index),
            Ok(Outcome::NotLeader) => Attempt::Retry,
            Ok(Outcome::Failed(e)) => Attempt::Failed(e),
        }
    }

    /// Forwards `request` to `leader` and answers it as soon as this member
    /// has applied it (as etcd's followers do), or, if the leader's answer
    /// comes first, once this member has applied it too, so that its own
    /// reads and watches see it.
    async fn forward_and_answer(&self, leader: u64, request: &InternalRequest, deadline: Instant) -> Attempt {
        let forwarded = std::time::Instant::now();
        let mut waiter = self.local_answers.register();
        let tagged = InternalRequest { origin_member: self.id, origin_id: waiter.id, ..request.clone() };
        let from_leader = self.forward(leader, tagged, deadline);
        tokio::pin!(from_leader);
        let attempt = tokio::select! {
            biased;
            Ok((response, index)) = &mut waiter.answer => {
                stages::observe(Stage::Forwarded, forwarded.elapsed());
                return Attempt::Done(response, index);
            }
            attempt = &mut from_leader => attempt,
        };
        let Attempt::Done(_, index) = &attempt else { return attempt };
        let answered = std::time::Instant::now();
        stages::observe(Stage::Forwarded, answered - forwarded);
        if let Some(applied) = stages::stamps(*index).applied {
            stages::observe(Stage::AppliedHereBeforeAnswer, answered.saturating_duration_since(applied));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let applied = self.raft.wait(Some(left)).applied_index_at_least(Some(*index), "forwarded write").await;
        if applied.is_err() {
            tracing::debug!(index, "forwarded write committed but not yet applied here");
        }
        let applied_here = answered.elapsed();
        stages::observe(Stage::ForwardedToAppliedHere, applied_here);
        stages::warn_if_slow_forward(*index, answered - forwarded, applied_here);
        attempt
    }

    async fn forward(&self, leader: u64, request: InternalRequest, deadline: Instant) -> Attempt {
        let Some(url) = self.member_node(leader).and_then(|n| n.peer_urls.first().cloned()) else {
            return Attempt::Retry;
        };
        let forwarded = self.forwarder.forward(&self.peers, &url, request);
        match tokio::time::timeout_at(deadline, forwarded).await {
            Err(_) => Attempt::Failed(EtcdError::Timeout),
            Ok(Ok(reply)) => match reply.response {
                Some(response) => Attempt::Done(response, reply.log_index),
                None => Attempt::Failed(EtcdError::Internal("leader sent an empty reply".into())),
            },
            Ok(Err(status)) => match EtcdError::from_status(&status) {
                Some(EtcdError::NotLeader | EtcdError::NoLeader) => Attempt::Retry,
                Some(e) => Attempt::Failed(e),
                // A request that never reached the leader is safe to retry;
                // one that was lost on the way back may have been applied.
                None if never_sent(&status) => Attempt::Retry,
                None => Attempt::Failed(EtcdError::ConnectionLost),
            },
        }
    }
}

/// Whether a transport failure happened before the request left this member.
pub(super) fn never_sent(status: &tonic::Status) -> bool {
    use std::error::Error;
    let mut source: Option<&(dyn Error + 'static)> = status.source();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        let text = err.to_string();
        if text.contains("tcp connect error") || text.contains("Connection refused") {
            return true;
        }
        source = err.source();
    }
    status.message().contains("tcp connect error")
}
