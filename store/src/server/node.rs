//! [`Node`]: what every request handler of a member shares.

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use rocksdb::DB;
use shoal_proto::etcdserverpb::ResponseHeader;

use crate::lease::id::LeaseIds;
use crate::lease::Lessor;
use crate::mvcc::KvStore;
use crate::raft::network::PeerClients;
use crate::raft::{MemberNode, Raft, RaftMetrics};
use crate::watch::WatchHub;

/// Request limits, from the command line.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
}

pub struct Node {
    pub id: u64,
    pub cluster_id: u64,
    pub name: String,
    pub client_urls: Vec<String>,
    pub raft: Raft,
    pub kv: Arc<KvStore>,
    pub db: Arc<DB>,
    pub peers: Arc<PeerClients>,
    pub limits: Limits,
    pub request_timeout: Duration,
    pub election_timeout: Duration,
    pub watch_hub: Arc<WatchHub>,
    pub lessor: Arc<Lessor>,
    pub lease_ids: LeaseIds,
    /// etcd's minimum lease TTL: 1.5 election timeouts, in whole seconds.
    pub min_lease_ttl: i64,
    /// Linearizable reads arriving together share one read-index round.
    pub read_batch: super::read_batch::ReadBatch,
    /// Read-index requests from followers, batched the same way on the leader.
    pub peer_read_batch: super::read_batch::ReadBatch,
    /// Writes proposed on this member, grouped into Raft entries.
    pub batcher: super::batcher::Batcher,
    /// Writes this member forwards to the leader, on one stream per peer.
    pub forwarder: super::forward_stream::Forwarder,
    /// Writes this member forwarded, waiting for its own apply to answer them.
    pub local_answers: Arc<super::local_answers::LocalAnswers>,
    /// Held while a membership change is in flight: one at a time.
    pub membership_change: tokio::sync::Mutex<()>,
    /// --quota-backend-bytes: writes beyond it raise NOSPACE. None: no quota.
    pub quota_bytes: Option<u64>,
    /// The backend size, measured at most every few hundred milliseconds.
    pub backend_size: super::quota::SizeCache,
    /// How this member dials other members' https client URLs.
    pub client_dialer: Option<crate::tls::Connector>,
}

impl Node {
    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow_watched().clone()
    }

    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The header every response carries.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader { cluster_id: self.cluster_id, member_id: self.id, revision, raft_term: self.term() }
    }

    /// Fills the member-level fields of a header produced by the state machine.
    pub fn fill_header(&self, header: &mut Option<ResponseHeader>) {
        let revision = header.as_ref().map_or_else(|| self.kv.current_revision(), |h| h.revision);
        *header = Some(self.header(revision));
    }

    /// The Raft node record of member `id`, from the current membership.
    pub fn member_node(&self, id: u64) -> Option<MemberNode> {
        self.raft.metrics().borrow_watched().membership_config.membership().get_node(&id).cloned()
    }

    /// Waits until the known leader differs from `seen`, or `timeout` passes.
    pub async fn leader_change(&self, seen: Option<u64>, timeout: Duration) {
        let mut metrics = self.raft.metrics();
        let _ = tokio::time::timeout(timeout, metrics.wait_until(move |m| m.current_leader != seen)).await;
    }
}
