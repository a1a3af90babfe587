//! `etcdserverpb.Maintenance`: Status, Alarm, Defragment, Hash, HashKV,
//! MoveLeader, Snapshot and Downgrade (see `downgrade`).

use std::sync::Arc;
use std::time::Instant;

use shoal_proto::etcdserverpb::alarm_request::AlarmAction;
use shoal_proto::etcdserverpb::maintenance_server::Maintenance;
use shoal_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse,
    SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use shoal_proto::peerpb::{internal_request, internal_response, InternalRequest};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::{access, blocking, downgrade, unpack};
use crate::backup;
use crate::config::ETCD_SERVER_VERSION;
use crate::server::{quota, Node};
use crate::storage::{columns, StorageError};

pub struct MaintenanceService {
    node: Arc<Node>,
}

impl MaintenanceService {
    pub fn new(node: Arc<Node>) -> MaintenanceService {
        MaintenanceService { node }
    }
}

/// How etcd prints an alarm in Status.errors and `alarm list`.
pub fn alarm_text(alarm: &AlarmMember) -> String {
    let name = AlarmType::try_from(alarm.alarm).map_or("UNKNOWN", |a| a.as_str_name());
    format!("memberID:{} alarm:{} ", alarm.member_id, name)
}

/// Compacts every column family in full: RocksDB drops deleted and
/// compacted versions and rewrites the files, while reads and writes go on.
fn defragment(node: &Node) -> Result<(), StorageError> {
    let db = &node.db;
    crate::storage::flush_all(db)?;
    for name in columns::ALL {
        let Some(cf) = db.cf_handle(name) else { continue };
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        db.compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &opts);
    }
    Ok(())
}

type SnapshotStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        access::caller(&self.node, &request).await?;
        let req = request.into_inner();
        if req.action == AlarmAction::Get as i32 {
            // etcd answers through Raft: a list sees every alarm raised before it.
            self.node.linearizable_barrier().await?;
            return Ok(Response::new(AlarmResponse { header: None, alarms: self.node.kv.alarms().list(req.alarm) }));
        }
        let request = InternalRequest {
            request: Some(internal_request::Request::Alarm(req)),
            auth_revision: 0,
            ..Default::default()
        };
        let (response, _) = self.node.propose(request).await?;
        match unpack(response)? {
            internal_response::Response::Alarm(mut resp) => {
                resp.header = None;
                Ok(Response::new(resp))
            }
            _ => Err(Status::internal("etcdserver: unexpected response type from the state machine")),
        }
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        access::caller(&self.node, &request).await?;
        let metrics = self.node.metrics();
        let db = self.node.db.clone();
        let (db_size, in_use) = tokio::task::spawn_blocking(move || {
            let total = quota::backend_size(&db);
            (total, quota::backend_size_in_use(&db, total))
        })
        .await
        .unwrap_or((0, 0));
        let is_learner = !metrics.membership_config.membership().voter_ids().any(|id| id == self.node.id);
        let mut errors = Vec::new();
        if metrics.current_leader.is_none() {
            errors.push("etcdserver: no leader".to_string());
        }
        errors.extend(self.node.kv.alarms().list(AlarmType::None as i32).iter().map(alarm_text));
        Ok(Response::new(StatusResponse {
            header: Some(self.node.header(self.node.kv.current_revision())),
            version: ETCD_SERVER_VERSION.to_string(),
            db_size: db_size as i64,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |id| id.index),
            errors,
            db_size_in_use: in_use as i64,
            is_learner,
            db_size_quota: self.node.quota_bytes.map_or(0, |q| q as i64),
            ..Default::default()
        }))
    }

    async fn defragment(&self, request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        access::maintenance_admin(&self.node, &request).await?;
        let node = self.node.clone();
        let started = Instant::now();
        tokio::task::spawn_blocking(move || defragment(&node))
            .await
            .map_err(|e| Status::unknown(format!("defragment: {e}")))?
            .map_err(|e| Status::unknown(e.to_string()))?;
        self.node.backend_size.invalidate();
        tracing::info!(took = ?started.elapsed(), "defragmented");
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        access::maintenance_admin(&self.node, &request).await?;
        let kv = self.node.kv.clone();
        let (hash, revision) = blocking(move || kv.hash_all()).await?;
        Ok(Response::new(HashResponse { header: Some(self.node.header(revision)), hash }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        access::maintenance_admin(&self.node, &request).await?;
        let rev = request.get_ref().revision;
        let kv = self.node.kv.clone();
        let hashed = blocking(move || kv.hash_kv(rev)).await?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.node.header(hashed.current_revision)),
            hash: hashed.hash,
            compact_revision: hashed.compact_revision,
            hash_revision: hashed.revision,
        }))
    }

    async fn snapshot(&self, request: Request<SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        access::maintenance_admin(&self.node, &request).await?;
        let estimate = quota::backend_size_in_use(&self.node.db, u64::MAX);
        let chunks = backup::stream(self.node.kv.clone());
        let mut sent = 0u64;
        let stream = ReceiverStream::new(chunks).map(move |chunk| {
            let (blob, last) = chunk.map_err(|e| Status::internal(format!("etcdserver: snapshot: {e}")))?;
            sent += blob.len() as u64;
            // The total is known only at the end; the last message (the
            // checksum) says 0, as etcd's does.
            let remaining = if last { 0 } else { estimate.saturating_sub(sent).max(1) };
            Ok(SnapshotResponse { header: None, remaining_bytes: remaining, blob, version: String::new() })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        access::maintenance_admin(&self.node, &request).await?;
        self.node.move_leader(request.get_ref().target_id).await?;
        Ok(Response::new(MoveLeaderResponse { header: Some(self.node.header(self.node.kv.current_revision())) }))
    }

    async fn downgrade(&self, request: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        // etcd 3.6 keeps it to root under auth, with the gRPC errors of the KV API.
        access::admin(&self.node, &request).await?;
        downgrade::answer(&self.node, request.get_ref()).await.map(Response::new)
    }
}
