//! The server side of the peer protocol (`peerpb.Peer`), on --listen-peer-urls.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use openraft::raft::AppendEntriesRequest;
use shoal_proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use shoal_proto::peerpb::peer_server::Peer;
use shoal_proto::peerpb::{
    CampaignRequest, CampaignResponse, ClusterInfoRequest, ClusterInfoResponse, ForwardReply, ForwardRequest,
    ForwardResponse, InternalRequest, RaftMessage, ReadIndexRequest, ReadIndexResponse, SnapshotChunk,
};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::node::Node;
use crate::error::EtcdError;
use crate::raft::{SnapshotFile, SnapshotMeta, TypeConfig, Vote};
use crate::storage;

pub struct PeerService {
    node: Arc<Node>,
    snap_dir: PathBuf,
}

impl PeerService {
    pub fn new(node: Arc<Node>, snap_dir: PathBuf) -> PeerService {
        PeerService { node, snap_dir }
    }

    /// Whether this member leads and runs the lease clocks.
    fn leads(&self) -> bool {
        self.node.leader() == Some(self.node.id) && self.node.lessor.is_primary()
    }
}

fn decode<T: serde::de::DeserializeOwned>(msg: &RaftMessage) -> Result<T, Status> {
    storage::decode_bincode("raft message", &msg.payload).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    Ok(Response::new(RaftMessage { payload: storage::encode_bincode(value) }))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let received = Instant::now();
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request.get_ref())?;
        let last = rpc.entries.last().map(|e| e.log_id.index);
        let answer = self.node.raft.append_entries(rpc).await;
        if let (Some(last), Ok(_)) = (last, &answer) {
            crate::metrics::stages::follower_appended(last, received);
        }
        reply(&answer)
    }

    async fn stream_append(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<tonic::codegen::BoxStream<RaftMessage>>, Status> {
        // When each request arrived, by its last index, for the stage histograms.
        let received = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::<(u64, Instant)>::new()));
        let arrivals = received.clone();
        // A broken or undecodable message ends the input; what was sent before it is still answered.
        let input = request.into_inner().map_while(move |message| {
            let rpc: AppendEntriesRequest<TypeConfig> = match message.map(|m| decode(&m)) {
                Ok(Ok(rpc)) => rpc,
                Ok(Err(status)) | Err(status) => {
                    tracing::warn!(%status, "replication stream from the leader ended");
                    return None;
                }
            };
            if let Some(last) = rpc.entries.last() {
                arrivals.lock().unwrap_or_else(|p| p.into_inner()).push_back((last.log_id.index, Instant::now()));
            }
            Some(rpc)
        });
        let answers = self.node.raft.stream_append(input).map(move |answer| {
            if let Ok(Ok(Some(matching))) = &answer {
                let mut received = received.lock().unwrap_or_else(|p| p.into_inner());
                while received.front().is_some_and(|(last, _)| *last <= matching.index) {
                    if let Some((last, at)) = received.pop_front() {
                        crate::metrics::stages::follower_appended(last, at);
                    }
                }
            }
            Ok(RaftMessage { payload: storage::encode_bincode(&answer) })
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: openraft::raft::VoteRequest<TypeConfig> = decode(request.get_ref())?;
        let candidate = Some(rpc.vote.leader_id().node_id);
        let removed =
            crate::raft::state_machine::removed_members(&self.node.db).map_err(|e| Status::internal(e.to_string()))?;
        if candidate.is_some_and(|id| removed.contains(&id)) {
            return Err(Status::failed_precondition(crate::raft::network::REMOVED_MESSAGE));
        }
        reply(&self.node.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        let mut chunks = request.into_inner();
        let first = chunks.next().await.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let (vote, meta): (Vote, SnapshotMeta) = storage::decode_bincode("snapshot header", &first.meta)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tokio::fs::create_dir_all(&self.snap_dir).await.map_err(|e| Status::internal(e.to_string()))?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = self.snap_dir.join(format!("receiving-{nanos}.tmp"));
        let received = async {
            let mut file = tokio::fs::File::create(&path).await?;
            file.write_all(&first.data).await?;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(std::io::Error::other)?;
                file.write_all(&chunk.data).await?;
            }
            file.sync_all().await
        }
        .await;
        if let Err(e) = received {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(Status::unavailable(format!("receiving snapshot: {e}")));
        }
        let snapshot = openraft::Snapshot { meta, snapshot: SnapshotFile { path: path.clone() } };
        let result = self.node.raft.install_full_snapshot(vote, snapshot).await;
        // Installed snapshots are moved into place; anything left is stale.
        let _ = tokio::fs::remove_file(&path).await;
        reply(&result)
    }

    async fn forward(&self, request: Request<InternalRequest>) -> Result<Response<ForwardResponse>, Status> {
        if self.node.leader() != Some(self.node.id) {
            return Err(EtcdError::NotLeader.into());
        }
        Ok(Response::new(self.node.propose_local(request.into_inner()).await?))
    }

    async fn stream_forward(
        &self,
        request: Request<Streaming<ForwardRequest>>,
    ) -> Result<Response<tonic::codegen::BoxStream<ForwardReply>>, Status> {
        Ok(Response::new(Box::pin(super::forward_stream::answer(self.node.clone(), request.into_inner()))))
    }

    async fn read_index(&self, _request: Request<ReadIndexRequest>) -> Result<Response<ReadIndexResponse>, Status> {
        let deadline = tokio::time::Instant::now() + self.node.request_timeout;
        let node = &self.node;
        match node.peer_read_batch.read_index(|| node.local_read_index(deadline)).await? {
            Some(index) => Ok(Response::new(ReadIndexResponse { index })),
            None => Err(EtcdError::NotLeader.into()),
        }
    }

    async fn lease_renew(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        if !self.leads() {
            return Err(EtcdError::NotLeader.into());
        }
        let id = request.into_inner().id;
        let ttl = self.node.lessor.renew(id).unwrap_or(0);
        Ok(Response::new(LeaseKeepAliveResponse { header: None, id, ttl }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        if !self.leads() {
            return Err(EtcdError::NotLeader.into());
        }
        Ok(Response::new(self.node.local_time_to_live(request.get_ref())))
    }

    async fn cluster_info(
        &self,
        _request: Request<ClusterInfoRequest>,
    ) -> Result<Response<ClusterInfoResponse>, Status> {
        Ok(Response::new(ClusterInfoResponse {
            cluster_id: self.node.cluster_id,
            members: crate::api::cluster::members(&self.node)?,
        }))
    }

    async fn campaign(&self, _request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        tracing::info!("starting an election, as the leader asked (leadership transfer)");
        self.node.raft.trigger().elect(false).await.map_err(|_| Status::from(EtcdError::Stopped))?;
        Ok(Response::new(CampaignResponse {}))
    }
}
