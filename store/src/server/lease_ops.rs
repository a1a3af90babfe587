//! Lease operations that only the leader can answer (keep-alive, time to
//! live), and the leader's expiry duty.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use shoal_proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use shoal_proto::peerpb::{internal_request, InternalRequest};
use tokio::sync::watch;

use super::node::Node;
use crate::error::EtcdError;
use crate::mvcc::lease_keys;
use crate::mvcc::reader::KvReader;

const RETRY_WAIT: Duration = Duration::from_millis(50);
/// How often the leader looks for expired leases.
const EXPIRY_CHECK: Duration = Duration::from_millis(250);
/// How long before a revocation that has not been applied is proposed again.
const REVOKE_RETRY: Duration = Duration::from_secs(3);

enum Answer<T> {
    Done(T),
    Retry,
}

impl Node {
    /// Runs `local` on the leader (waiting until its lease clocks run) or
    /// `remote` against it, retrying across elections until the request timeout.
    async fn on_leader<T, L, R, Fut>(&self, local: L, remote: R) -> Result<T, EtcdError>
    where
        L: Fn() -> T,
        R: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Answer<T>, EtcdError>>,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        loop {
            let leader = self.leader();
            let answer = match leader {
                Some(id) if id == self.id && self.lessor.is_primary() => Answer::Done(local()),
                Some(id) if id == self.id => Answer::Retry,
                Some(id) => match self.member_node(id).and_then(|n| n.peer_urls.first().cloned()) {
                    Some(url) => remote(url).await?,
                    None => Answer::Retry,
                },
                None => Answer::Retry,
            };
            if let Answer::Done(value) = answer {
                return Ok(value);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(if self.leader().is_none() { EtcdError::NoLeader } else { EtcdError::Timeout });
            }
            self.leader_change(leader, RETRY_WAIT.min(deadline - now)).await;
        }
    }

    /// Keeps lease `id` alive; its TTL, or 0 when it does not exist.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, EtcdError> {
        self.on_leader(
            || self.lessor.renew(id).unwrap_or(0),
            |url| async move {
                let mut client = self.peers.client(&url).map_err(|_| EtcdError::ConnectionLost)?;
                match client.lease_renew(LeaseKeepAliveRequest { id }).await {
                    Ok(reply) => Ok(Answer::Done(reply.into_inner().ttl)),
                    Err(status) => forwarded_error(&status),
                }
            },
        )
        .await
    }

    /// etcd's `LeaseTimeToLive`, answered from the leader's clocks.
    pub async fn lease_time_to_live(&self, req: LeaseTimeToLiveRequest) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        let mut resp = self
            .on_leader(
                || self.local_time_to_live(&req),
                |url| async move {
                    let mut client = self.peers.client(&url).map_err(|_| EtcdError::ConnectionLost)?;
                    match client.lease_time_to_live(req).await {
                        Ok(reply) => Ok(Answer::Done(reply.into_inner())),
                        Err(status) => forwarded_error(&status),
                    }
                },
            )
            .await?;
        self.fill_header(&mut resp.header);
        Ok(resp)
    }

    /// The answer of this member as leader.
    pub fn local_time_to_live(&self, req: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        let Some(ttl) = self.lessor.time_to_live(req.id) else {
            return LeaseTimeToLiveResponse { id: req.id, ttl: -1, ..Default::default() };
        };
        let keys = if req.keys {
            lease_keys::attached(&KvReader::new(&self.db, None), req.id).unwrap_or_else(|e| {
                tracing::error!(error = %e, "reading lease keys");
                Vec::new()
            })
        } else {
            Vec::new()
        };
        LeaseTimeToLiveResponse { id: req.id, ttl: ttl.remaining, granted_ttl: ttl.granted, keys, ..Default::default() }
    }
}

fn forwarded_error<T>(status: &tonic::Status) -> Result<Answer<T>, EtcdError> {
    match EtcdError::from_status(status) {
        Some(EtcdError::NotLeader | EtcdError::NoLeader) | None => Ok(Answer::Retry),
        Some(e) => Err(e),
    }
}

/// Starts and stops the lease clocks with leadership, and proposes the
/// revocation of expired leases while this member leads.
pub async fn keep_leases(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    // Leadership and membership changes only: the full metrics change with
    // every write, and waking on each would cost a thread switch per write.
    let mut server = node.raft.server_metrics();
    let mut data = node.raft.data_metrics();
    let mut tick = tokio::time::interval(EXPIRY_CHECK);
    let mut revoking: HashMap<i64, Instant> = HashMap::new();
    let mut awaiting_own_entry = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            changed = server.changed() => if changed.is_err() {
                // Raft has stopped.
                return;
            },
            // Only while a new leader waits for its first own entry to apply.
            changed = data.changed(), if awaiting_own_entry => if changed.is_err() {
                return;
            },
            _ = tick.tick() => {}
        }
        let (leading, caught_up) = {
            let m = node.raft.metrics();
            let m = m.borrow_watched();
            let leading = m.state == ServerState::Leader && m.current_leader == Some(node.id);
            // Lease clocks start once the leader has applied an entry of its
            // own term, so that every grant committed before is known.
            (leading, m.last_applied.is_some_and(|id| id.leader_id.term == m.current_term))
        };
        awaiting_own_entry = leading && !caught_up && !node.lessor.is_primary();
        if leading && caught_up && !node.lessor.is_primary() {
            tracing::info!("leading: lease clocks start with full TTLs");
            node.lessor.promote(node.election_timeout);
        } else if !leading && node.lessor.is_primary() {
            node.lessor.demote();
            revoking.clear();
        }
        if !node.lessor.is_primary() {
            continue;
        }
        let now = Instant::now();
        revoking.retain(|_, since| now.duration_since(*since) < REVOKE_RETRY);
        for id in node.lessor.expired() {
            if revoking.contains_key(&id) {
                continue;
            }
            revoking.insert(id, now);
            let node = node.clone();
            tokio::spawn(async move {
                let request = InternalRequest {
                    request: Some(internal_request::Request::LeaseRevoke(LeaseRevokeRequest { id })),
                    auth_revision: 0,
                    ..Default::default()
                };
                match node.propose(request).await {
                    Ok(_) => tracing::info!(lease = format_args!("{id:016x}"), "lease expired and was revoked"),
                    Err(e) => {
                        tracing::warn!(lease = format_args!("{id:016x}"), error = %e, "revoking an expired lease failed")
                    }
                }
            });
        }
    }
}
