//! The backend quota (`--quota-backend-bytes`), checked as etcd checks it:
//! before a write that could grow the database is proposed, the member
//! compares its backend size plus the write's cost with the quota. A write
//! that does not fit raises the NOSPACE alarm through Raft and is refused.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rocksdb::DB;
use shoal_proto::etcdserverpb::alarm_request::AlarmAction;
use shoal_proto::etcdserverpb::{request_op, AlarmRequest, AlarmType, TxnRequest};
use shoal_proto::peerpb::{internal_request, InternalRequest};

use super::node::Node;
use crate::error::EtcdError;
use crate::storage::columns;

/// etcd's default quota: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;
/// How stale a measured backend size may be.
const SIZE_TTL: Duration = Duration::from_millis(200);
/// etcd's per-key overhead in its cost estimate.
const KV_OVERHEAD: u64 = 256;
const LEASE_COST: u64 = 64;

/// Bytes the state machine occupies: its table files plus its memtables.
/// The Raft log is not counted, as etcd does not count its WAL.
pub fn backend_size(db: &DB) -> u64 {
    sum_property(db, &["rocksdb.total-sst-files-size", "rocksdb.size-all-mem-tables"])
}

/// Bytes of live data in the state machine, as RocksDB estimates them,
/// at most `total` (the backend size).
pub fn backend_size_in_use(db: &DB, total: u64) -> u64 {
    sum_property(db, &["rocksdb.estimate-live-data-size", "rocksdb.cur-size-all-mem-tables"]).min(total)
}

fn sum_property(db: &DB, properties: &[&str]) -> u64 {
    columns::STATE_MACHINE
        .iter()
        .filter_map(|name| db.cf_handle(name))
        .flat_map(|cf| properties.iter().map(move |p| (cf, *p)))
        .filter_map(|(cf, property)| db.property_int_value_cf(cf, property).ok().flatten())
        .sum()
}

/// A backend size measured recently enough.
#[derive(Default)]
pub struct SizeCache {
    last: Mutex<Option<(Instant, u64)>>,
}

impl SizeCache {
    pub fn get(&self, db: &DB) -> u64 {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some((at, size)) if at.elapsed() < SIZE_TTL => size,
            _ => {
                let size = backend_size(db);
                *last = Some((Instant::now(), size));
                size
            }
        }
    }

    /// Forgets the measurement, after something changed the size a lot.
    pub fn invalidate(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// etcd's estimate of how much a request adds to the database.
pub fn cost(request: &internal_request::Request) -> u64 {
    match request {
        internal_request::Request::Put(put) => KV_OVERHEAD + (put.key.len() + put.value.len()) as u64,
        internal_request::Request::Txn(txn) => txn_cost(txn),
        internal_request::Request::LeaseGrant(_) => LEASE_COST,
        _ => 0,
    }
}

fn txn_cost(txn: &TxnRequest) -> u64 {
    let branch = |ops: &[shoal_proto::etcdserverpb::RequestOp]| -> u64 {
        ops.iter()
            .filter_map(|op| match &op.request {
                Some(request_op::Request::RequestPut(put)) => {
                    Some(KV_OVERHEAD + (put.key.len() + put.value.len()) as u64)
                }
                _ => None,
            })
            .sum()
    };
    branch(&txn.success).max(branch(&txn.failure))
}

impl Node {
    /// Refuses `request` with NOSPACE, and raises the alarm, when it would
    /// take the backend past the quota.
    pub async fn ensure_space(&self, request: &internal_request::Request) -> Result<(), EtcdError> {
        let (Some(quota), cost) = (self.quota_bytes, cost(request)) else {
            return Ok(());
        };
        if cost == 0 || self.backend_size.get(&self.db) + cost < quota {
            return Ok(());
        }
        if !self.kv.alarms().no_space() {
            tracing::warn!(quota, "backend quota exceeded; raising the NOSPACE alarm");
            self.raise_no_space().await;
        }
        Err(EtcdError::NoSpace)
    }

    /// Raises this member's NOSPACE alarm through Raft: from then on every
    /// member refuses writes that add data, until it is disarmed.
    pub async fn raise_no_space(&self) {
        let alarm =
            AlarmRequest { action: AlarmAction::Activate as i32, member_id: self.id, alarm: AlarmType::Nospace as i32 };
        let raised = self
            .propose(InternalRequest {
                request: Some(internal_request::Request::Alarm(alarm)),
                auth_revision: 0,
                ..Default::default()
            })
            .await;
        if let Err(e) = raised {
            tracing::warn!(error = %e, "could not raise the NOSPACE alarm");
        }
    }
}
