//! Group commit of client writes: writes that arrive while earlier ones are
//! being replicated are proposed together, as one Raft entry.
//!
//! Each Raft entry carries fixed costs: a round through Raft's core, a log
//! record, a replication message and an apply. Under load the batcher turns
//! many concurrent writes into one entry: it keeps at most [`MAX_IN_FLIGHT`]
//! entries in flight and gathers whatever arrived meanwhile into the next
//! one. A lone write goes out at once, unbatched. Each write of a batch is
//! still applied on its own, at its own revision.

use std::sync::Arc;
use std::time::Instant;

use openraft::errors::{ClientWriteError, RaftError};
use prost::Message;
use shoal_proto::peerpb::{internal_request, internal_response, InternalRequest, InternalResponse, RequestBatch};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::EtcdError;
use crate::metrics::stages;
use crate::raft::{Command, Raft};

/// Entries proposed and not yet applied.
const MAX_IN_FLIGHT: usize = 4;
/// Most writes in one entry.
const MAX_BATCH: usize = 1024;
/// Most encoded bytes in one entry.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// What became of one proposed write.
pub enum Outcome {
    /// Applied: the state machine's answer and the entry's log index.
    Done(InternalResponse, u64),
    /// This member is not the leader; nothing was appended.
    NotLeader,
    Failed(EtcdError),
}

struct Proposal {
    request: InternalRequest,
    reply: oneshot::Sender<Outcome>,
    queued: Instant,
}

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Proposal>,
}

impl Batcher {
    /// Starts the batching task; it ends when every `Batcher` is dropped.
    pub fn start(raft: Raft) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Batcher { tx }
    }

    /// Proposes `request` and waits for its outcome.
    pub async fn propose(&self, request: InternalRequest) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        if self.tx.send(Proposal { request, reply, queued: Instant::now() }).is_err() {
            return Outcome::Failed(EtcdError::Stopped);
        }
        outcome.await.unwrap_or(Outcome::Failed(EtcdError::Stopped))
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Proposal>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Waiting for a slot is what lets the next batch fill up.
        let Ok(slot) = in_flight.clone().acquire_owned().await else { return };
        let mut bytes = first.request.encoded_len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += next.request.encoded_len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            submit(&raft, batch).await;
            drop(slot);
        });
    }
}

async fn submit(raft: &Raft, batch: Vec<Proposal>) {
    let queued: Vec<Instant> = batch.iter().map(|p| p.queued).collect();
    let (mut requests, replies): (Vec<InternalRequest>, Vec<oneshot::Sender<Outcome>>) =
        batch.into_iter().map(|p| (p.request, p.reply)).unzip();
    let single = requests.len() == 1;
    let command = match requests.pop() {
        Some(only) if single => only,
        Some(last) => {
            requests.push(last);
            InternalRequest {
                request: Some(internal_request::Request::Batch(RequestBatch { requests })),
                auth_revision: 0,
                ..Default::default()
            }
        }
        None => return,
    };
    let proposed = Instant::now();
    let answers: Vec<Outcome> = match raft.client_write(Command(command)).await {
        Ok(written) => {
            let index = written.log_id.index;
            stages::leader_wrote(index, &queued, proposed, Instant::now());
            match written.data.0 {
                response if single => vec![Outcome::Done(response, index)],
                InternalResponse { response: Some(internal_response::Response::Batch(batch)) } => {
                    batch.responses.into_iter().map(|r| Outcome::Done(r, index)).collect()
                }
                _ => Vec::new(),
            }
        }
        // openraft answers ForwardToLeader only for entries it never
        // appended, so a retry cannot apply twice.
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
            replies.iter().map(|_| Outcome::NotLeader).collect()
        }
        // Appended, then dropped for another leader's log: the next leader
        // may still commit it, so it must not be retried.
        Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
            replies.iter().map(|_| Outcome::Failed(EtcdError::LeaderFail)).collect()
        }
        Err(RaftError::APIError(e)) => {
            replies.iter().map(|_| Outcome::Failed(EtcdError::Internal(e.to_string()))).collect()
        }
        Err(RaftError::Fatal(_)) => replies.iter().map(|_| Outcome::Failed(EtcdError::Stopped)).collect(),
    };
    let mut answers = answers.into_iter();
    for reply in replies {
        let answer = answers
            .next()
            .unwrap_or_else(|| Outcome::Failed(EtcdError::Internal("etcdserver: batch answer missing".into())));
        let _ = reply.send(answer);
    }
}
