//! The client side of the peer protocol: openraft's RPCs to other members
//! over gRPC, with snapshots streamed in chunks from their files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{stream_append_sequential, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, VoteRequest, VoteResponse,
};
use shoal_proto::peerpb::peer_client::PeerClient;
use shoal_proto::peerpb::{RaftMessage, SnapshotChunk};
use tonic::transport::{Channel, Endpoint};

use super::{checkpoint, MemberNode, Snapshot, SnapshotFile, TypeConfig, Vote};
use crate::storage;

/// Bytes per snapshot chunk on the wire.
const SNAPSHOT_CHUNK: usize = 1 << 20;

/// Lazily connected gRPC channels to other members, by peer URL. Shared by
/// Raft replication, write forwarding and read-index requests.
#[derive(Default)]
pub struct PeerClients {
    channels: Mutex<HashMap<String, Channel>>,
    /// How https peers are dialed (--peer-* TLS files).
    tls: Option<crate::tls::Connector>,
    /// Signalled when a peer answers that this member was removed.
    pub removed: tokio::sync::Notify,
}

/// What a member answers a removed member that still takes part in Raft.
pub const REMOVED_MESSAGE: &str = "etcdserver: the member has been permanently removed from the cluster";

impl PeerClients {
    pub fn new(tls: Option<crate::tls::Connector>) -> PeerClients {
        PeerClients { tls, ..PeerClients::default() }
    }

    pub fn client(&self, url: &str) -> Result<PeerClient<Channel>, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(url) {
            return Ok(PeerClient::new(channel.clone()).max_decoding_message_size(usize::MAX));
        }
        // tonic refuses https URIs unless it does the TLS itself; the
        // connector does it here, so the channel is given the URL as http.
        let dialed = match (&self.tls, url.strip_prefix("https://")) {
            (Some(_), Some(rest)) => format!("http://{rest}"),
            _ => url.to_string(),
        };
        let endpoint = Endpoint::from_shared(dialed)?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = match (&self.tls, url.starts_with("https://")) {
            (Some(tls), true) => endpoint.connect_with_connector_lazy(tls.clone()),
            _ => endpoint.connect_lazy(),
        };
        channels.insert(url.to_string(), channel.clone());
        Ok(PeerClient::new(channel).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX))
    }
}

#[derive(Clone)]
pub struct PeerNetwork {
    clients: Arc<PeerClients>,
}

impl PeerNetwork {
    pub fn new(clients: Arc<PeerClients>) -> PeerNetwork {
        PeerNetwork { clients }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> PeerConnection {
        PeerConnection {
            target,
            url: node.peer_urls.first().cloned().unwrap_or_default(),
            clients: self.clients.clone(),
            streams: true,
        }
    }
}

pub struct PeerConnection {
    target: u64,
    url: String,
    clients: Arc<PeerClients>,
    /// False once the peer refused `StreamAppend` (an older member): its
    /// appends then go one unary call at a time.
    streams: bool,
}

#[derive(Clone, Copy)]
enum RpcKind {
    AppendEntries,
    Vote,
}

type RpcResult<T> = Result<T, RPCError<TypeConfig>>;

impl PeerConnection {
    fn client(&self) -> Result<PeerClient<Channel>, Unreachable<TypeConfig>> {
        self.clients.client(&self.url).map_err(|e| Unreachable::new(&e))
    }

    async fn call<Req, Resp>(&self, kind: RpcKind, request: &Req, option: &RPCOption) -> RpcResult<Resp>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        let mut client = self.client().map_err(RPCError::Unreachable)?;
        let message = RaftMessage { payload: storage::encode_bincode(request) };
        let send = async {
            match kind {
                RpcKind::AppendEntries => client.append_entries(message).await,
                RpcKind::Vote => client.vote(message).await,
            }
        };
        let reply = match tokio::time::timeout(option.hard_ttl(), send).await {
            Err(elapsed) => return Err(RPCError::Unreachable(Unreachable::new(&elapsed))),
            Ok(Err(status)) => {
                if status.code() == tonic::Code::FailedPrecondition && status.message() == REMOVED_MESSAGE {
                    self.clients.removed.notify_one();
                }
                return Err(status_to_rpc_error(&status));
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<Resp, RaftError<TypeConfig>> = storage::decode_bincode("raft reply", &reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // The peer's Raft failed (it is stopping): as good as unreachable.
        result.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

pub(super) fn status_to_rpc_error(status: &tonic::Status) -> RPCError<TypeConfig> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(status))
        }
        _ => RPCError::Network(NetworkError::new(status)),
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<TypeConfig>> {
        let started = std::time::Instant::now();
        let reply = self.call(RpcKind::AppendEntries, &rpc, &option).await;
        if reply.is_ok() {
            crate::metrics::peer_round_trip(self.target, started.elapsed());
        }
        reply
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, RpcResult<BoxStream<'s, RpcResult<StreamAppendResult<TypeConfig>>>>>
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + openraft::OptionalSend + Unpin + 'static,
    {
        if !self.streams {
            return stream_append_sequential(self, input, option);
        }
        Box::pin(async move {
            let client = self.client().map_err(RPCError::Unreachable)?;
            match super::replication_stream::open(client, self.target, input, option.hard_ttl()).await {
                Ok(answers) => Ok(answers),
                Err(status) => {
                    if status.code() == tonic::Code::Unimplemented {
                        tracing::info!(peer = %self.url, "peer has no replication stream; sending appends one by one");
                        self.streams = false;
                    }
                    Err(status_to_rpc_error(&status))
                }
            }
        })
    }

    async fn vote(&mut self, rpc: VoteRequest<TypeConfig>, option: RPCOption) -> RpcResult<VoteResponse<TypeConfig>> {
        self.call(RpcKind::Vote, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self.client()?;
        let path = snapshot.snapshot.path.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(4);
        let header = storage::encode_bincode(&(vote, snapshot.meta.clone()));
        // A file is sent as it is; a checkpoint is read into the same format.
        let reader = tokio::task::spawn_blocking(move || {
            let mut out = ChunkSender { tx, header, buf: Vec::with_capacity(SNAPSHOT_CHUNK) };
            if checkpoint::is_checkpoint(&path) {
                out = checkpoint::dump(&path, out).map_err(std::io::Error::other)?;
            } else {
                std::io::copy(&mut std::fs::File::open(&path)?, &mut out)?;
            }
            out.finish()
        });
        let call = client.install_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx));
        let reply = tokio::select! {
            reply = call => reply,
            closed = cancel => {
                reader.abort();
                return Err(StreamingError::Closed(closed));
            }
        };
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StreamingError::Network(NetworkError::new(&e))),
            Err(e) => return Err(StreamingError::Network(NetworkError::new(&e))),
        }
        let reply = reply.map_err(|status| StreamingError::from(status_to_rpc_error(&status)))?;
        let result: Result<SnapshotResponse<TypeConfig>, Fatal<TypeConfig>> =
            storage::decode_bincode("snapshot reply", &reply.into_inner().payload)
                .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))
    }

    fn backoff(&self) -> Option<openraft::network::Backoff> {
        Some(openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200))))
    }
}

/// Sends what is written to it as snapshot chunks of [`SNAPSHOT_CHUNK`]
/// bytes, the first carrying `header`; fails once the receiver is gone.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<SnapshotChunk>,
    header: Vec<u8>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send(&mut self) -> std::io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(SNAPSHOT_CHUNK));
        let chunk = SnapshotChunk { meta: std::mem::take(&mut self.header), data };
        self.tx.blocking_send(chunk).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }

    /// Sends what is left (the header at least).
    fn finish(mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() || !self.header.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(SNAPSHOT_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == SNAPSHOT_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
