//! What follows the state machine: the lease clocks, the watch hub and the
//! forwarded writes waiting on this member.

use std::sync::Arc;

use rocksdb::DB;

use shoal_proto::peerpb::InternalResponse;

use super::local_answers::LocalAnswers;
use crate::lease::Lessor;
use crate::mvcc::Applied;
use crate::raft::state_machine::ApplyListener;
use crate::watch::WatchHub;

pub struct StateListeners {
    pub hub: Arc<WatchHub>,
    pub lessor: Arc<Lessor>,
    pub db: Arc<DB>,
    pub answers: Arc<LocalAnswers>,
}

impl ApplyListener for StateListeners {
    fn applied(&self, applied: &Applied) {
        if let Some((id, ttl)) = applied.lease_granted {
            self.lessor.granted(id, ttl);
        }
        if let Some(id) = applied.lease_revoked {
            self.lessor.revoked(id);
        }
        self.hub.notify(applied);
    }

    fn reset(&self) {
        if let Err(e) = self.lessor.load(&self.db) {
            tracing::error!(error = %e, "reloading leases after a snapshot");
        }
        self.hub.reset();
    }

    fn forwarded_applied(&self, origin_member: u64, origin_id: u64, response: &InternalResponse, index: u64) {
        self.answers.applied(origin_member, origin_id, response, index);
    }
}
