//! The follower's forwarding stream against stand-in leaders on 127.0.0.1:
//! one that answers out of order, one whose stream breaks, one too old to
//! know `StreamForward`, and none at all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use shoal_proto::etcdserverpb::PutRequest;
use shoal_proto::peerpb::forward_reply::Outcome;
use shoal_proto::peerpb::internal_request::Request as Command;
use shoal_proto::peerpb::peer_server::{Peer, PeerServer};
use shoal_proto::peerpb::{ForwardError, ForwardReply, ForwardRequest, ForwardResponse, InternalRequest};
use tonic::{Request, Response, Status, Streaming};

use super::Forwarder;
use crate::error::EtcdError;
use crate::raft::network::PeerClients;

fn put(key: &str) -> InternalRequest {
    InternalRequest {
        request: Some(Command::Put(PutRequest { key: key.as_bytes().to_vec(), ..Default::default() })),
        ..Default::default()
    }
}

fn key_of(request: &InternalRequest) -> String {
    match &request.request {
        Some(Command::Put(put)) => String::from_utf8_lossy(&put.key).into_owned(),
        _ => String::new(),
    }
}

/// Answers each put with its key's length as the log index; a key starting
/// with `slow` only after the next request has been answered; a key starting
/// with `refuse` with etcd's "not leader"; a key starting with `break` by
/// ending the stream with an error. Counts the streams opened.
#[derive(Default)]
struct Leader {
    streams: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Peer for Leader {
    async fn stream_forward(
        &self,
        request: Request<Streaming<ForwardRequest>>,
    ) -> Result<Response<tonic::codegen::BoxStream<ForwardReply>>, Status> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let mut requests = request.into_inner();
        let (replies, out) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = None;
            while let Some(Ok(forwarded)) = requests.next().await {
                let request = forwarded.request.unwrap_or_default();
                let key = key_of(&request);
                let outcome = if key.starts_with("refuse") {
                    let (code, message) = EtcdError::NotLeader.code_and_message();
                    Outcome::Error(ForwardError { code: code as i32, message: message.to_string() })
                } else if key.starts_with("break") {
                    let _ = replies.send(Err(Status::internal("stand-in leader broke the stream")));
                    return;
                } else {
                    Outcome::Done(ForwardResponse { response: None, log_index: key.len() as u64 })
                };
                let reply = ForwardReply { id: forwarded.id, outcome: Some(outcome) };
                if key.starts_with("slow") {
                    held = Some(reply);
                    continue;
                }
                let _ = replies.send(Ok(reply));
                if let Some(held) = held.take() {
                    let _ = replies.send(Ok(held));
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(out))))
    }
}

/// A member from before the stream: only the unary call.
struct Old;

#[tonic::async_trait]
impl Peer for Old {
    async fn forward(&self, request: Request<InternalRequest>) -> Result<Response<ForwardResponse>, Status> {
        let index = key_of(request.get_ref()).len() as u64;
        Ok(Response::new(ForwardResponse { response: None, log_index: index }))
    }
}

async fn serve(peer: impl Peer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(tonic::transport::Server::builder().add_service(PeerServer::new(peer)).serve_with_incoming(incoming));
    url
}

const DEADLINE: Duration = Duration::from_secs(10);

async fn forward(forwarder: &Forwarder, peers: &PeerClients, url: &str, key: &str) -> Result<u64, Status> {
    let answer = tokio::time::timeout(DEADLINE, forwarder.forward(peers, url, put(key))).await.expect("an answer");
    answer.map(|done| done.log_index)
}

#[tokio::test]
async fn answers_arrive_by_id_in_any_order_on_one_stream() {
    let leader = Leader::default();
    let streams = leader.streams.clone();
    let url = serve(leader).await;
    let (forwarder, peers) = (Forwarder::default(), PeerClients::new(None));

    let (slow, quick) = tokio::join!(forward(&forwarder, &peers, &url, "slow-key"), async {
        // The slow one goes first; the quick one releases it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        forward(&forwarder, &peers, &url, "k").await
    });
    assert_eq!((slow.expect("slow"), quick.expect("quick")), (8, 1));

    let refused = forward(&forwarder, &peers, &url, "refuse").await.expect_err("refused");
    assert_eq!(EtcdError::from_status(&refused), Some(EtcdError::NotLeader), "{refused:?}");
    let keys: Vec<String> = (1..=100).map(|n| "x".repeat(n)).collect();
    let many = futures::future::join_all(keys.iter().map(|key| forward(&forwarder, &peers, &url, key))).await;
    let indexes: Vec<u64> = many.into_iter().map(|r| r.expect("answered")).collect();
    assert_eq!(indexes, (1..=100).collect::<Vec<u64>>());
    assert_eq!(streams.load(Ordering::SeqCst), 1, "every write went on the one stream");
}

#[tokio::test]
async fn a_broken_stream_fails_what_it_carried_and_the_next_write_opens_another() {
    let leader = Leader::default();
    let streams = leader.streams.clone();
    let url = serve(leader).await;
    let (forwarder, peers) = (Forwarder::default(), PeerClients::new(None));

    let (slow, broke) = tokio::join!(forward(&forwarder, &peers, &url, "slow-key"), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        forward(&forwarder, &peers, &url, "break").await
    });
    for lost in [slow.expect_err("unanswered"), broke.expect_err("unanswered")] {
        // Sent, answer lost: neither a known etcd error nor safe to retry.
        assert_eq!(EtcdError::from_status(&lost), None, "{lost:?}");
        assert!(!super::super::propose::never_sent(&lost), "{lost:?}");
    }
    assert_eq!(forward(&forwarder, &peers, &url, "abc").await.expect("a new stream"), 3);
    assert_eq!(streams.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_old_leader_gets_one_call_per_write() {
    let url = serve(Old).await;
    let (forwarder, peers) = (Forwarder::default(), PeerClients::new(None));
    for key in ["a", "bb", "ccc"] {
        assert_eq!(forward(&forwarder, &peers, &url, key).await.expect("answered by the unary call"), key.len() as u64);
    }
}

#[tokio::test]
async fn a_leader_that_is_not_listening_was_never_sent_anything() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let (forwarder, peers) = (Forwarder::default(), PeerClients::new(None));
    let refused = forward(&forwarder, &peers, &url, "k").await.expect_err("nobody listens");
    assert!(super::super::propose::never_sent(&refused), "{refused:?}");
}
