//! Membership changes, decided on the leader with etcd's safety rules
//! (`--strict-reconfig-check`, always on): a change that would leave the
//! cluster without a quorum of started, reachable voters is refused, at
//! most one learner exists at a time, a learner is promoted only once it
//! has caught up, and one change is in flight at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::errors::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use shoal_proto::etcdserverpb::Member;
use shoal_proto::peerpb::ClusterInfoRequest;

use super::node::Node;
use crate::error::EtcdError;
use crate::ids;
use crate::raft::{MemberNode, TypeConfig};
use crate::urls;

/// etcd allows one learner at a time.
const MAX_LEARNERS: usize = 1;
/// A learner may be promoted once it holds this share of the leader's log.
const LEARNER_READY_SHARE: f64 = 0.9;
/// How long a voter may take to answer before it counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A view of the membership for checking one change.
struct View {
    voters: BTreeSet<u64>,
    nodes: BTreeMap<u64, MemberNode>,
    /// Members that have published their name, i.e. have started.
    started: BTreeSet<u64>,
}

impl View {
    fn learners(&self) -> usize {
        self.nodes.keys().filter(|id| !self.voters.contains(id)).count()
    }

    fn url_owner(&self, url: &str) -> Option<u64> {
        self.nodes.iter().find(|(_, n)| n.peer_urls.iter().any(|u| u == url)).map(|(id, _)| *id)
    }
}

/// etcd's quorum of `n` members.
fn quorum(n: usize) -> usize {
    n / 2 + 1
}

impl Node {
    fn view(&self) -> Result<View, EtcdError> {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let started = crate::api::cluster::started_members(self)?;
        Ok(View {
            voters: membership.voter_ids().collect(),
            nodes: membership.nodes().map(|(id, n)| (*id, n.clone())).collect(),
            started,
        })
    }

    /// Whether member `id` answers on its peer URLs now.
    async fn reachable(&self, node: &MemberNode) -> bool {
        for url in &node.peer_urls {
            let Ok(mut client) = self.peers.client(url) else { continue };
            if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, client.cluster_info(ClusterInfoRequest {})).await {
                return true;
            }
        }
        false
    }

    /// The voters other than this member that answer now.
    async fn reachable_voters(&self, view: &View) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        for id in view.voters.iter().filter(|id| **id != self.id) {
            if let Some(node) = view.nodes.get(id) {
                if self.reachable(node).await {
                    out.insert(*id);
                }
            }
        }
        out
    }

    fn ensure_leader(&self) -> Result<(), EtcdError> {
        match self.leader() {
            Some(id) if id == self.id => Ok(()),
            Some(_) => Err(EtcdError::NotLeader),
            None => Err(EtcdError::NoLeader),
        }
    }

    fn change_guard(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, EtcdError> {
        self.membership_change.try_lock().map_err(|_| EtcdError::ChangeInProgress)
    }

    /// Adds a member with `peer_urls`, as a learner or a voter. Returns it.
    pub async fn add_member(&self, peer_urls: Vec<String>, learner: bool) -> Result<Member, EtcdError> {
        self.ensure_leader()?;
        let mut peer_urls = checked_urls(peer_urls)?;
        peer_urls.sort();
        let _guard = self.change_guard()?;
        let view = self.view()?;
        if peer_urls.iter().any(|u| view.url_owner(u).is_some()) {
            return Err(EtcdError::PeerUrlExists);
        }
        if learner && view.learners() + 1 > MAX_LEARNERS {
            return Err(EtcdError::TooManyLearners);
        }
        if !learner {
            let members = view.voters.len() + 1;
            let started = view.voters.iter().filter(|id| view.started.contains(id)).count();
            if !(started == 1 && members == 2) && started < quorum(members) {
                return Err(EtcdError::NotEnoughStartedMembers);
            }
        }
        let others = view.voters.iter().filter(|id| **id != self.id).count();
        if self.reachable_voters(&view).await.len() < others {
            return Err(EtcdError::Unhealthy);
        }
        let id = new_member_id(&peer_urls, &self.raft.config().cluster_name);
        if view.nodes.contains_key(&id) {
            return Err(EtcdError::MemberIdExists);
        }
        let node = MemberNode { name: String::new(), peer_urls: peer_urls.clone() };
        let change = if learner {
            ChangeMembers::AddNodes(BTreeMap::from([(id, node)]))
        } else {
            ChangeMembers::AddVoters(BTreeMap::from([(id, node)]))
        };
        self.change(change).await?;
        tracing::info!(member_id = format_args!("{id:x}"), learner, urls = ?peer_urls, "added member");
        Ok(Member { id, name: String::new(), peer_ur_ls: peer_urls, client_ur_ls: Vec::new(), is_learner: learner })
    }

    /// Removes member `id` from the cluster.
    pub async fn remove_member(&self, id: u64) -> Result<(), EtcdError> {
        self.ensure_leader()?;
        let _guard = self.change_guard()?;
        let view = self.view()?;
        let node = view.nodes.get(&id).ok_or(EtcdError::MemberNotFound)?;
        if !view.voters.contains(&id) {
            self.change(ChangeMembers::RemoveNodes(BTreeSet::from([id]))).await?;
            tracing::info!(member_id = format_args!("{id:x}"), "removed learner");
            return Ok(());
        }
        let remaining: Vec<u64> = view.voters.iter().copied().filter(|v| *v != id).collect();
        let started = remaining.iter().filter(|v| view.started.contains(v)).count();
        if started < quorum(remaining.len()) {
            return Err(EtcdError::NotEnoughStartedMembers);
        }
        let target_down = id != self.id && !self.reachable(node).await;
        if !target_down {
            // This member counts itself as active.
            let active = self.reachable_voters(&view).await.len() + 1;
            if active - 1 < 1 + (view.voters.len() - 1) / 2 {
                return Err(EtcdError::Unhealthy);
            }
        }
        self.change(ChangeMembers::RemoveVoters(BTreeSet::from([id]))).await?;
        tracing::info!(member_id = format_args!("{id:x}"), "removed member");
        Ok(())
    }

    /// Replaces the peer URLs of member `id`.
    pub async fn update_member(&self, id: u64, peer_urls: Vec<String>) -> Result<(), EtcdError> {
        self.ensure_leader()?;
        let mut peer_urls = checked_urls(peer_urls)?;
        peer_urls.sort();
        let _guard = self.change_guard()?;
        let view = self.view()?;
        let node = view.nodes.get(&id).ok_or(EtcdError::MemberNotFound)?;
        if peer_urls.iter().any(|u| view.url_owner(u).is_some_and(|owner| owner != id)) {
            return Err(EtcdError::PeerUrlExists);
        }
        let node = MemberNode { name: node.name.clone(), peer_urls };
        self.change(ChangeMembers::SetNodes(BTreeMap::from([(id, node)]))).await?;
        tracing::info!(member_id = format_args!("{id:x}"), "updated member peer URLs");
        Ok(())
    }

    /// Whether learner `id` holds enough of the leader's log to be promoted.
    pub fn learner_ready(&self, id: u64) -> bool {
        let metrics = self.metrics();
        let leader_index = metrics.last_log_index.unwrap_or(0);
        let matched =
            metrics.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map_or(0, |log_id| log_id.index);
        matched as f64 >= leader_index as f64 * LEARNER_READY_SHARE
    }

    /// Makes learner `id` a voter, once it has caught up.
    pub async fn promote_member(&self, id: u64) -> Result<(), EtcdError> {
        self.ensure_leader()?;
        let _guard = self.change_guard()?;
        let view = self.view()?;
        if !view.nodes.contains_key(&id) {
            return Err(EtcdError::MemberNotFound);
        }
        if view.voters.contains(&id) {
            return Err(EtcdError::MemberNotLearner);
        }
        if !self.learner_ready(id) {
            return Err(EtcdError::LearnerNotReady);
        }
        let members = view.voters.len() + 1;
        let started = 1 + view.voters.iter().filter(|v| view.started.contains(v)).count();
        if started < quorum(members) {
            return Err(EtcdError::NotEnoughStartedMembers);
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await?;
        tracing::info!(member_id = format_args!("{id:x}"), "promoted learner");
        Ok(())
    }

    /// Runs a change to the end. openraft commits a joint configuration and
    /// then the final one; the change runs in its own task so that a caller
    /// that gives up (a timeout, a cancelled request) never leaves the
    /// cluster in the joint configuration.
    async fn change(&self, change: ChangeMembers<u64, MemberNode>) -> Result<(), EtcdError> {
        let raft = self.raft.clone();
        let task = tokio::spawn(async move { raft.change_membership(change, false).await });
        match tokio::time::timeout(self.request_timeout, task).await {
            Err(_) => Err(EtcdError::Timeout),
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(e))) => Err(change_error(e)),
        }
    }
}

fn change_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> EtcdError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => EtcdError::NotLeader,
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => EtcdError::LeaderFail,
        RaftError::APIError(ClientWriteError::PreconditionFailed(e)) => {
            EtcdError::Internal(format!("etcdserver: membership change refused: {e}"))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))) => {
            EtcdError::ChangeInProgress
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::LearnerNotFound(_))) => {
            EtcdError::MemberNotFound
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            EtcdError::Internal(format!("etcdserver: membership change refused: {e}"))
        }
        RaftError::Fatal(_) => EtcdError::Stopped,
    }
}

fn checked_urls(peer_urls: Vec<String>) -> Result<Vec<String>, EtcdError> {
    if peer_urls.is_empty() {
        return Err(EtcdError::MemberBadUrls);
    }
    peer_urls
        .iter()
        .map(|u| urls::Url::parse("peerURLs", u).map(|url| url.to_string()).map_err(|_| EtcdError::MemberBadUrls))
        .collect()
}

/// A fresh member id: like etcd, from the peer URLs and the time, so that a
/// member re-added at the same URLs gets a new id.
fn new_member_id(peer_urls: &[String], token: &str) -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    ids::member_id(peer_urls, &format!("{token}/{nanos}"))
}
