//! The leader's replication stream against stand-in peers on 127.0.0.1: one
//! that never answers, and one too old to know `StreamAppend`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use openraft::errors::RPCError;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::AppendEntriesRequest;
use shoal_proto::peerpb::peer_server::{Peer, PeerServer};
use shoal_proto::peerpb::RaftMessage;
use tonic::{Request, Response, Status, Streaming};

use crate::raft::network::{PeerClients, PeerNetwork};
use crate::raft::{MemberNode, TypeConfig, Vote};

/// Takes the stream and answers nothing.
struct Silent;

#[tonic::async_trait]
impl Peer for Silent {
    async fn stream_append(
        &self,
        _request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<tonic::codegen::BoxStream<RaftMessage>>, Status> {
        Ok(Response::new(Box::pin(futures::stream::pending())))
    }
}

/// A member from before the stream: every method unimplemented.
struct Old;

#[tonic::async_trait]
impl Peer for Old {}

async fn serve(peer: impl Peer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(tonic::transport::Server::builder().add_service(PeerServer::new(peer)).serve_with_incoming(incoming));
    url
}

async fn connect(url: String) -> crate::raft::network::PeerConnection {
    let mut network = PeerNetwork::new(Arc::new(PeerClients::new(None)));
    network.new_client(2, &MemberNode { name: "m2".into(), peer_urls: vec![url] }).await
}

fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest { vote: Vote::new_committed(1, 1), prev_log_id: None, leader_commit: None, entries: vec![] }
}

const TTL: Duration = Duration::from_millis(200);

#[tokio::test]
async fn a_follower_that_stops_answering_breaks_the_stream_but_an_idle_one_does_not() {
    let mut connection = connect(serve(Silent).await).await;

    // Nothing sent: waiting several timeouts is not an error.
    let mut idle = connection.stream_append(futures::stream::pending(), RPCOption::new(TTL)).await.expect("open");
    let quiet = tokio::time::timeout(TTL * 4, idle.next()).await;
    assert!(quiet.is_err(), "an idle stream ended: {:?}", quiet.map(|a| a.map(|r| r.is_ok())));
    drop(idle);

    // One request left unanswered: the stream reports the follower unreachable.
    let requests = futures::stream::iter(vec![heartbeat()]).chain(futures::stream::pending());
    let started = Instant::now();
    let mut answers = connection.stream_append(Box::pin(requests), RPCOption::new(TTL)).await.expect("open");
    let answer = tokio::time::timeout(Duration::from_secs(10), answers.next()).await.expect("an answer in time");
    assert!(matches!(answer, Some(Err(RPCError::Unreachable(_)))), "got {:?}", answer.map(|a| a.is_ok()));
    assert!(started.elapsed() >= TTL, "broken off before the timeout: {:?}", started.elapsed());
    assert!(answers.next().await.is_none(), "the stream goes on after breaking");
}

#[tokio::test]
async fn a_peer_without_the_stream_gets_appends_one_call_at_a_time() {
    let mut connection = connect(serve(Old).await).await;

    let refused =
        connection.stream_append(futures::stream::iter(vec![heartbeat()]), RPCOption::new(TTL)).await.is_err();
    assert!(refused, "an old peer's refusal is an error");

    // The next session goes through unary AppendEntries, which this peer
    // refuses too: the error now comes from the call, inside the stream.
    let mut answers = connection
        .stream_append(futures::stream::iter(vec![heartbeat()]), RPCOption::new(TTL))
        .await
        .expect("a sequential stream opens without the peer");
    let answer = answers.next().await.expect("one answer");
    assert!(answer.is_err(), "the unary call is refused by the stand-in peer");
}
