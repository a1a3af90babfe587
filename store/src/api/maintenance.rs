//! `etcdserverpb.Maintenance`. Status for now; the rest comes later and
//! answers Unimplemented until then.

use std::path::Path;
use std::sync::Arc;

use shoal_proto::etcdserverpb::maintenance_server::Maintenance;
use shoal_proto::etcdserverpb::{StatusRequest, StatusResponse};
use tonic::{Request, Response, Status};

use crate::config::ETCD_API_VERSION;
use crate::server::Node;
use crate::storage::columns;

pub struct MaintenanceService {
    node: Arc<Node>,
    db_dir: std::path::PathBuf,
}

impl MaintenanceService {
    pub fn new(node: Arc<Node>, db_dir: std::path::PathBuf) -> MaintenanceService {
        MaintenanceService { node, db_dir }
    }
}

/// Bytes the database occupies on disk.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
        })
        .unwrap_or(0)
}

/// Bytes of live data, as RocksDB estimates it, over every column family.
fn live_bytes(node: &Node) -> u64 {
    columns::ALL
        .iter()
        .filter_map(|name| node.db.cf_handle(name))
        .filter_map(|cf| node.db.property_int_value_cf(cf, "rocksdb.estimate-live-data-size").ok().flatten())
        .sum()
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let metrics = self.node.metrics();
        let db_dir = self.db_dir.clone();
        let db_size = tokio::task::spawn_blocking(move || dir_size(&db_dir)).await.unwrap_or(0);
        let is_learner = !metrics.membership_config.membership().voter_ids().any(|id| id == self.node.id);
        Ok(Response::new(StatusResponse {
            header: Some(self.node.header(self.node.kv.current_revision())),
            version: ETCD_API_VERSION.to_string(),
            db_size: db_size as i64,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |id| id.index),
            errors: Vec::new(),
            db_size_in_use: live_bytes(&self.node).min(db_size) as i64,
            is_learner,
            ..Default::default()
        }))
    }
}
