//! The leader's side of `StreamAppend`: one long-lived gRPC stream per
//! follower carrying AppendEntries requests in log order, the next sent
//! without waiting for the answer to the previous one (the follower's log
//! writer then groups them into fewer fsyncs). Answers come back in the same
//! order. A stream with requests outstanding and no answer for the RPC
//! timeout is broken off, as a unary call would time out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use openraft::errors::{Fatal, NetworkError, RPCError, Unreachable};
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use shoal_proto::peerpb::peer_client::PeerClient;
use shoal_proto::peerpb::RaftMessage;
use tonic::transport::Channel;
use tonic::Streaming;

use super::TypeConfig;
use crate::storage;

/// Answers to the leader's requests, in order, until the stream ends or breaks.
pub type Answers = futures::stream::BoxStream<'static, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>;

/// When each unanswered request was sent, oldest first.
type Outstanding = Arc<Mutex<VecDeque<Instant>>>;

/// Opens the stream to `client`'s member and feeds it `requests`. A refused
/// stream is returned as its gRPC status, for the caller to classify.
pub async fn open<S>(
    mut client: PeerClient<Channel>,
    target: u64,
    requests: S,
    timeout: Duration,
) -> Result<Answers, tonic::Status>
where
    S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    let outstanding: Outstanding = Arc::default();
    let sent = outstanding.clone();
    let outgoing = requests.map(move |rpc| {
        let message = RaftMessage { payload: storage::encode_bincode(&rpc) };
        lock(&sent).push_back(Instant::now());
        message
    });
    let answers = match tokio::time::timeout(timeout, client.stream_append(outgoing)).await {
        Err(_) => return Err(tonic::Status::deadline_exceeded("no answer to the replication stream")),
        Ok(opened) => opened?.into_inner(),
    };
    let state = Some(Receiving { answers, outstanding, target, timeout });
    Ok(futures::stream::unfold(state, |state| async move {
        let mut state = state?;
        let answer = state.next().await?;
        let go_on = matches!(answer, Ok(Ok(_)));
        Some((answer, go_on.then_some(state)))
    })
    .boxed())
}

struct Receiving {
    answers: Streaming<RaftMessage>,
    outstanding: Outstanding,
    target: u64,
    timeout: Duration,
}

impl Receiving {
    /// The next answer, `None` when the follower closed the stream cleanly.
    async fn next(&mut self) -> Option<Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>> {
        loop {
            let waiting = !lock(&self.outstanding).is_empty();
            let message = match tokio::time::timeout(self.timeout, self.answers.message()).await {
                Err(elapsed) if waiting && !lock(&self.outstanding).is_empty() => {
                    return Some(Err(RPCError::Unreachable(Unreachable::new(&elapsed))));
                }
                Err(_) => continue,
                Ok(Ok(Some(message))) => message,
                Ok(Ok(None)) => return None,
                Ok(Err(status)) => return Some(Err(super::network::status_to_rpc_error(&status))),
            };
            if let Some(sent) = lock(&self.outstanding).pop_front() {
                crate::metrics::peer_round_trip(self.target, sent.elapsed());
            }
            let answer: Result<StreamAppendResult<TypeConfig>, Fatal<TypeConfig>> =
                match storage::decode_bincode("replication answer", &message.payload) {
                    Ok(answer) => answer,
                    Err(e) => return Some(Err(RPCError::Network(NetworkError::new(&e)))),
                };
            // The follower's Raft failed (it is stopping): as good as unreachable.
            return Some(answer.map_err(|fatal| RPCError::Unreachable(Unreachable::new(&fatal))));
        }
    }
}

fn lock(outstanding: &Outstanding) -> std::sync::MutexGuard<'_, VecDeque<Instant>> {
    outstanding.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[path = "replication_stream_test.rs"]
mod replication_stream_test;
