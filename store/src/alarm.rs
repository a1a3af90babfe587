//! Alarms, as etcd has them: raised and cleared through Raft so that every
//! member agrees, kept in `meta`, and consulted by the applier. While a
//! NOSPACE alarm is active the applier refuses whatever could grow the
//! database (puts, transactions with puts, lease grants), exactly as etcd's
//! capped applier does; reads, deletes and compaction still work.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use rocksdb::{WriteBatch, DB};
use shoal_proto::etcdserverpb::alarm_request::AlarmAction;
use shoal_proto::etcdserverpb::{request_op, AlarmMember, AlarmRequest, AlarmResponse, AlarmType, TxnRequest};
use shoal_proto::peerpb::internal_request;

use crate::storage::{self, columns, StorageError};

/// The active alarms of a cluster: (member id, alarm type) pairs.
#[derive(Default)]
pub struct Alarms {
    active: RwLock<BTreeSet<(u64, i32)>>,
    no_space: AtomicBool,
}

impl Alarms {
    /// Re-reads the alarms from disk (at open, and after a snapshot install).
    pub fn reload(&self, db: &DB) -> Result<(), StorageError> {
        let stored: Vec<(u64, i32)> = storage::get_bincode(db, columns::META, columns::ALARMS)?.unwrap_or_default();
        let mut active = self.active.write().unwrap_or_else(|p| p.into_inner());
        *active = stored.into_iter().collect();
        self.publish(&active);
        Ok(())
    }

    fn publish(&self, active: &BTreeSet<(u64, i32)>) {
        let no_space = active.iter().any(|(_, alarm)| *alarm == AlarmType::Nospace as i32);
        self.no_space.store(no_space, Ordering::Release);
    }

    pub fn no_space(&self) -> bool {
        self.no_space.load(Ordering::Acquire)
    }

    /// The active alarms of type `alarm`, or all of them for `NONE`.
    pub fn list(&self, alarm: i32) -> Vec<AlarmMember> {
        let active = self.active.read().unwrap_or_else(|p| p.into_inner());
        active
            .iter()
            .filter(|(_, a)| alarm == AlarmType::None as i32 || *a == alarm)
            .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect()
    }

    /// Applies a replicated alarm request; the new set is staged into `batch`.
    /// As in etcd, the response lists the alarms this request changed.
    pub fn apply(&self, db: &DB, req: &AlarmRequest, batch: &mut WriteBatch) -> AlarmResponse {
        let mut active = self.active.write().unwrap_or_else(|p| p.into_inner());
        let pair = (req.member_id, req.alarm);
        let changed = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) | Err(_) => {
                return AlarmResponse { header: None, alarms: Vec::new() };
            }
            Ok(AlarmAction::Activate) => req.alarm != AlarmType::None as i32 && active.insert(pair),
            Ok(AlarmAction::Deactivate) => active.remove(&pair),
        };
        if !changed {
            return AlarmResponse { header: None, alarms: Vec::new() };
        }
        let stored: Vec<(u64, i32)> = active.iter().copied().collect();
        batch.put_cf(storage::cf(db, columns::META), columns::ALARMS, storage::encode_bincode(&stored));
        self.publish(&active);
        AlarmResponse { header: None, alarms: vec![AlarmMember { member_id: req.member_id, alarm: req.alarm }] }
    }
}

/// Whether a command could grow the database, and so is refused under NOSPACE.
pub fn grows_database(request: &internal_request::Request) -> bool {
    match request {
        internal_request::Request::Put(_) | internal_request::Request::LeaseGrant(_) => true,
        internal_request::Request::Txn(txn) => txn_has_put(txn),
        _ => false,
    }
}

fn txn_has_put(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).any(|op| match &op.request {
        Some(request_op::Request::RequestPut(_)) => true,
        Some(request_op::Request::RequestTxn(inner)) => txn_has_put(inner),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::etcdserverpb::{PutRequest, RequestOp};

    #[test]
    fn only_growing_commands_are_capped() {
        let put = || RequestOp { request: Some(request_op::Request::RequestPut(PutRequest::default())) };
        let nested = TxnRequest {
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(TxnRequest {
                    success: vec![put()],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        assert!(grows_database(&internal_request::Request::Txn(nested)));
        assert!(!grows_database(&internal_request::Request::Txn(TxnRequest::default())));
        assert!(!grows_database(&internal_request::Request::DeleteRange(Default::default())));
    }
}
