//! Background duties of a member: auto compaction and learner promotion
//! (both acted on by the leader only, as etcd's compactor is paused on
//! followers), and noticing that this member was removed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use shoal_proto::etcdserverpb::CompactionRequest;
use shoal_proto::peerpb::{internal_request, InternalRequest};
use tokio::sync::watch;
use tokio::time::Instant;

use super::node::Node;
use super::{next_tick, stopped};
use crate::api::unpack;
use crate::config::AutoCompaction;
use crate::error::EtcdError;

/// etcd's periodic compactor never waits more than an hour between runs.
const MAX_COMPACT_INTERVAL: Duration = Duration::from_secs(3600);
/// How often a leader looks for learners to promote.
const PROMOTE_EVERY: Duration = Duration::from_millis(500);

fn leads(node: &Node) -> bool {
    node.leader() == Some(node.id)
}

async fn compact(node: &Node, revision: i64) -> Result<(), EtcdError> {
    let request = CompactionRequest { revision, physical: false };
    let request = InternalRequest {
        request: Some(internal_request::Request::Compaction(request)),
        auth_revision: 0,
        ..Default::default()
    };
    let (response, _) = node.propose(request).await?;
    match unpack(response) {
        // Someone compacted further already: as good as done.
        Ok(_) | Err(EtcdError::Compacted) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs auto compaction as etcd 3.4 does, until `stop`.
///
/// Periodic, keeping `period`: the revision is sampled every tenth of
/// min(period, 1h); the first compaction comes one period after start, then
/// one every min(period, 1h), each to the revision sampled one period
/// earlier. Revision, keeping `n`: every `revision_every`, compact to the
/// current revision minus `n`.
pub async fn auto_compact(
    node: Arc<Node>,
    mode: AutoCompaction,
    revision_every: Duration,
    stop: watch::Receiver<bool>,
) {
    match mode {
        AutoCompaction::Off => {}
        AutoCompaction::Periodic(period) => {
            tokio::select! {
                _ = stopped(stop) => {}
                _ = periodic(&node, period) => {}
            }
        }
        AutoCompaction::Revision(keep) => {
            tokio::select! {
                _ = stopped(stop) => {}
                _ = by_revision(&node, keep, revision_every) => {}
            }
        }
    }
}

async fn periodic(node: &Node, period: Duration) {
    let every = period.min(MAX_COMPACT_INTERVAL);
    let sample = (every / 10).max(Duration::from_millis(10));
    let keep = (period.as_nanos() / sample.as_nanos()) as usize + 1;
    let mut samples: VecDeque<i64> = VecDeque::with_capacity(keep + 1);
    let mut wait = period;
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(sample);
    loop {
        tick.tick().await;
        samples.push_back(node.kv.current_revision());
        if samples.len() > keep {
            samples.pop_front();
        }
        if !leads(node) || last.elapsed() < wait {
            continue;
        }
        let Some(&revision) = samples.front() else { continue };
        tracing::info!(revision, period = ?period, "starting auto periodic compaction");
        match compact(node, revision).await {
            Ok(()) => {
                tracing::info!(revision, "completed auto periodic compaction");
                last = Instant::now();
                wait = every;
            }
            Err(e) => tracing::warn!(revision, error = %e, "auto periodic compaction failed; retrying"),
        }
    }
}

async fn by_revision(node: &Node, keep: i64, every: Duration) {
    let mut previous = 0;
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tick.tick().await;
        let revision = node.kv.current_revision() - keep;
        if !leads(node) || revision <= 0 || revision == previous {
            continue;
        }
        tracing::info!(revision, retention = keep, "starting auto revision compaction");
        match compact(node, revision).await {
            Ok(()) => {
                tracing::info!(revision, "completed auto revision compaction");
                previous = revision;
            }
            Err(e) => tracing::warn!(revision, error = %e, "auto revision compaction failed; retrying"),
        }
    }
}

/// Promotes learners once they have caught up, while this member leads.
pub async fn auto_promote(node: Arc<Node>, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PROMOTE_EVERY);
    while next_tick(&mut tick, &stop).await {
        if !leads(&node) {
            continue;
        }
        let metrics = node.metrics();
        let membership = metrics.membership_config.membership();
        let learners: Vec<u64> = membership.learner_ids().collect();
        for id in learners {
            if !node.learner_ready(id) {
                continue;
            }
            match node.promote_member(id).await {
                Ok(()) => tracing::info!(member_id = format_args!("{id:x}"), "auto-promoted a caught-up learner"),
                Err(e) => tracing::debug!(member_id = format_args!("{id:x}"), error = %e, "learner not promoted yet"),
            }
        }
    }
}

/// How often a leader checks its own log writes.
const DISK_CHECK_EVERY: Duration = Duration::from_millis(100);

/// A leader whose log write has stalled for longer than an election
/// timeout hands leadership to the most caught-up voter: its followers
/// still commit without it (two of three fsyncs are a quorum), but every
/// proposal and reply waits on the leader, and a follower with a healthy
/// disk serves better. The stalled member goes on as a follower.
pub async fn leave_a_stalled_disk(node: Arc<Node>, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(DISK_CHECK_EVERY);
    while next_tick(&mut tick, &stop).await {
        let Some(stalled) = crate::raft::log_writer::stalled_for() else { continue };
        if stalled < node.election_timeout || !leads(&node) {
            continue;
        }
        let metrics = node.metrics();
        let matched = |id: &u64| metrics.replication.as_ref().and_then(|r| r.get(id).cloned().flatten());
        let voters = metrics.membership_config.membership().voter_ids().filter(|id| *id != node.id);
        let Some(target) = voters.max_by_key(|id| matched(id).map(|m| m.index)) else { continue };
        tracing::warn!(
            stalled_ms = stalled.as_millis() as u64,
            target = format_args!("{target:x}"),
            "raft log write stalled; handing leadership on"
        );
        if let Err(e) = node.move_leader(target).await {
            tracing::warn!(error = %e, "could not hand leadership on");
        }
    }
}

/// Resolves once this member has been removed from the cluster: it was in
/// the membership and no longer is, or a peer says so (a removed follower
/// may never receive the entry that removes it).
pub async fn removed(node: Arc<Node>) {
    tokio::select! {
        _ = left_membership(&node) => {}
        _ = node.peers.removed.notified() => {}
    }
    tracing::warn!("the member has been permanently removed from the cluster; shutting down");
    // Leave time for the change to be acknowledged to its proposer.
    tokio::time::sleep(node.election_timeout).await;
}

async fn left_membership(node: &Node) {
    // Membership changes only; whether one is applied is read when checking.
    let mut metrics = node.raft.server_metrics();
    let mut was_member = false;
    let mut left_at: Option<tokio::time::Instant> = None;
    // A membership that drops this member counts once it is applied. A
    // removed member may never learn that it was committed (the leader stops
    // replicating to it), so one that stays appended for a few election
    // timeouts counts too; a new leader would have truncated it by then.
    let grace = node.election_timeout * 3;
    loop {
        {
            let membership = metrics.borrow_and_update().membership_config.clone();
            let is_member = membership.membership().get_node(&node.id).is_some();
            let last_applied = node.raft.metrics().borrow_watched().last_applied;
            let applied = membership.log_id().is_some() && membership.log_id() <= &last_applied;
            if is_member {
                left_at = None;
            } else if was_member {
                let since = *left_at.get_or_insert_with(tokio::time::Instant::now);
                if applied || since.elapsed() >= grace {
                    break;
                }
            }
            was_member |= is_member;
        }
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    // Raft stopped: shutdown is under way anyway.
                    std::future::pending::<()>().await;
                }
            }
            _ = tokio::time::sleep(node.election_timeout / 10), if left_at.is_some() => {}
        }
    }
}
