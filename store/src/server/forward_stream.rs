//! `StreamForward`: the writes a follower receives, carried to the leader on
//! one long-lived gRPC stream per peer instead of one call each. Requests
//! carry an id and are answered by id as soon as each is done, so one slow
//! write holds up no other. Many requests share a frame when they queue up,
//! and neither side sets up an HTTP/2 stream, headers or a task per write.
//!
//! A peer that does not know the stream (`Unimplemented`: an older member,
//! during a rolling upgrade) gets unary `Forward` calls from then on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::stream::FuturesUnordered;
use shoal_proto::peerpb::forward_reply::Outcome;
use shoal_proto::peerpb::peer_client::PeerClient;
use shoal_proto::peerpb::{ForwardError, ForwardReply, ForwardRequest, ForwardResponse, InternalRequest};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use super::node::Node;
use crate::error::EtcdError;
use crate::raft::network::PeerClients;

type Answer = Result<ForwardResponse, Status>;

struct Pending {
    request: InternalRequest,
    answer: oneshot::Sender<Answer>,
}

/// The follower's side: one stream per peer URL, opened on first use and
/// again on the first write after it breaks.
#[derive(Default)]
pub struct Forwarder {
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Pending>>>,
}

impl Forwarder {
    /// Has the member at `url` propose `request`. An error is what a unary
    /// `Forward` would have failed with; [`super::propose`] sorts out which
    /// failures are safe to retry.
    pub async fn forward(&self, peers: &PeerClients, url: &str, request: InternalRequest) -> Answer {
        let (answer, answered) = oneshot::channel();
        let mut pending = Pending { request, answer };
        // Twice at most: a queue whose task has ended is replaced once.
        for _ in 0..2 {
            let queue = self.queue(peers, url)?;
            match queue.send(pending) {
                Ok(()) => {
                    return answered.await.unwrap_or_else(|_| Err(Status::unavailable("forwarding stopped")));
                }
                Err(mpsc::error::SendError(back)) => {
                    pending = back;
                    self.lock().remove(url);
                }
            }
        }
        Err(Status::unavailable("forwarding stopped"))
    }

    fn queue(&self, peers: &PeerClients, url: &str) -> Result<mpsc::UnboundedSender<Pending>, Status> {
        let mut queues = self.lock();
        if let Some(queue) = queues.get(url) {
            return Ok(queue.clone());
        }
        let client = peers.client(url).map_err(|e| Status::unavailable(e.to_string()))?;
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(run(client, requests));
        queues.insert(url.to_string(), queue.clone());
        Ok(queue)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Pending>>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Carries the writes queued for one peer until the forwarder is dropped.
async fn run(client: PeerClient<Channel>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut unary = false;
    while let Some(first) = queue.recv().await {
        if unary {
            tokio::spawn(forward_unary(client.clone(), first));
            continue;
        }
        let (outgoing, to_send) = mpsc::unbounded_channel();
        let mut waiting = Waiting::default();
        let first_request = first.request.clone();
        let first_answer = waiting.send(&outgoing, first);
        let mut replies = match client.clone().stream_forward(UnboundedReceiverStream::new(to_send)).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!("the leader does not take forwarded writes on a stream; forwarding them one call each");
                unary = true;
                if let Some(answer) = waiting.take(first_answer) {
                    tokio::spawn(forward_unary(client.clone(), Pending { request: first_request, answer }));
                }
                continue;
            }
            Err(status) => {
                waiting.fail_all(&status);
                continue;
            }
        };
        let ended = loop {
            tokio::select! {
                pending = queue.recv() => match pending {
                    Some(pending) => { waiting.send(&outgoing, pending); }
                    None => return,
                },
                reply = replies.next() => match reply {
                    Some(Ok(reply)) => waiting.answer(reply),
                    Some(Err(status)) => break status,
                    None => break Status::unavailable("the leader closed the forwarding stream"),
                },
            }
        };
        tracing::debug!(%ended, "forwarding stream ended");
        // Sent, but the answer is lost: these may have been applied.
        waiting.fail_all(&Status::unavailable(format!("forwarding stream broke: {}", ended.message())));
    }
}

/// Requests sent on the current stream and not yet answered, by id.
#[derive(Default)]
struct Waiting {
    next_id: u64,
    answers: HashMap<u64, oneshot::Sender<Answer>>,
}

impl Waiting {
    fn send(&mut self, outgoing: &mpsc::UnboundedSender<ForwardRequest>, pending: Pending) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        // The receiving end lives as long as the stream; if it is gone, the
        // answer is failed when the stream's end is seen.
        let _ = outgoing.send(ForwardRequest { id, request: Some(pending.request) });
        self.answers.insert(id, pending.answer);
        id
    }

    fn take(&mut self, id: u64) -> Option<oneshot::Sender<Answer>> {
        self.answers.remove(&id)
    }

    fn answer(&mut self, reply: ForwardReply) {
        let Some(answer) = self.answers.remove(&reply.id) else {
            tracing::warn!(id = reply.id, "the leader answered a forwarded write nobody waits for");
            return;
        };
        let outcome = match reply.outcome {
            Some(Outcome::Done(done)) => Ok(done),
            Some(Outcome::Error(e)) => Err(Status::new(Code::from(e.code), e.message)),
            None => Err(Status::internal("the leader sent an empty answer")),
        };
        // The writer may have given up (its deadline passed).
        let _ = answer.send(outcome);
    }

    fn fail_all(&mut self, status: &Status) {
        for (_, answer) in self.answers.drain() {
            let _ = answer.send(Err(status.clone()));
        }
    }
}

async fn forward_unary(mut client: PeerClient<Channel>, pending: Pending) {
    let answer = client.forward(pending.request).await.map(tonic::Response::into_inner);
    let _ = pending.answer.send(answer);
}

/// The leader's side: proposes each write as it arrives and answers it as
/// soon as it is done. Input that cannot be read ends the input; what was
/// received before it is still answered.
pub fn answer(
    node: Arc<Node>,
    mut requests: Streaming<ForwardRequest>,
) -> UnboundedReceiverStream<Result<ForwardReply, Status>> {
    let (replies, out) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut proposing = FuturesUnordered::new();
        let mut reading = true;
        loop {
            tokio::select! {
                request = requests.next(), if reading => match request {
                    Some(Ok(request)) => proposing.push(propose(&node, request)),
                    Some(Err(status)) => {
                        tracing::warn!(%status, "forwarding stream from a follower ended");
                        reading = false;
                    }
                    None => reading = false,
                },
                Some(reply) = proposing.next(), if !proposing.is_empty() => {
                    if replies.send(Ok(reply)).is_err() {
                        return;
                    }
                }
                else => return,
            }
        }
    });
    UnboundedReceiverStream::new(out)
}

async fn propose(node: &Node, forwarded: ForwardRequest) -> ForwardReply {
    let outcome = match forwarded.request {
        None => Err(Status::invalid_argument("a forwarded write without a request")),
        Some(_) if node.leader() != Some(node.id) => Err(EtcdError::NotLeader.into()),
        Some(request) => node.propose_local(request).await.map_err(Status::from),
    };
    let outcome = match outcome {
        Ok(done) => Outcome::Done(done),
        Err(status) => {
            Outcome::Error(ForwardError { code: status.code() as i32, message: status.message().to_string() })
        }
    };
    ForwardReply { id: forwarded.id, outcome: Some(outcome) }
}

#[cfg(test)]
#[path = "forward_stream_test.rs"]
mod forward_stream_test;
