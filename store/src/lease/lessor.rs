//! [`Lessor`]: when each lease expires. Every member tracks the leases it has
//! applied; only the leader (the "primary") runs their clocks. On becoming
//! leader every lease gets its full TTL again (plus an election timeout), so
//! a failover never mass-expires leases; followers never expire anything.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rocksdb::DB;

use crate::storage::{self, columns, StorageError};

#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Granted TTL, seconds.
    ttl: i64,
    /// When it expires; `None` while this member is not the leader.
    expiry: Option<Instant>,
}

#[derive(Default)]
struct State {
    leases: HashMap<i64, Clock>,
    primary: bool,
}

/// Remaining life of a lease, as `LeaseTimeToLive` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeToLive {
    pub granted: i64,
    pub remaining: i64,
}

#[derive(Default)]
pub struct Lessor {
    state: Mutex<State>,
}

fn seconds(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

impl Lessor {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces every lease with what the state machine holds.
    pub fn load(&self, db: &DB) -> Result<(), StorageError> {
        let mut it = db.raw_iterator_cf(storage::cf(db, columns::LEASES));
        it.seek_to_first();
        let mut leases = HashMap::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let id = i64::from_be_bytes(k.try_into().map_err(|_| StorageError::corrupt("lease id", "not 8 bytes"))?);
            let ttl = i64::from_be_bytes(v.try_into().map_err(|_| StorageError::corrupt("lease ttl", "not 8 bytes"))?);
            leases.insert(id, ttl);
            it.next();
        }
        it.status().map_err(StorageError::rocks("read leases"))?;
        let mut state = self.state();
        let now = Instant::now();
        let primary = state.primary;
        state.leases = leases
            .into_iter()
            .map(|(id, ttl)| (id, Clock { ttl, expiry: primary.then(|| now + seconds(ttl)) }))
            .collect();
        Ok(())
    }

    pub fn granted(&self, id: i64, ttl: i64) {
        let mut state = self.state();
        let expiry = state.primary.then(|| Instant::now() + seconds(ttl));
        state.leases.insert(id, Clock { ttl, expiry });
    }

    pub fn revoked(&self, id: i64) {
        self.state().leases.remove(&id);
    }

    /// This member became leader: every lease lives at least its TTL from now.
    pub fn promote(&self, extend: Duration) {
        let mut state = self.state();
        state.primary = true;
        let now = Instant::now();
        for clock in state.leases.values_mut() {
            clock.expiry = Some(now + seconds(clock.ttl) + extend);
        }
    }

    /// This member is no longer leader: its clocks stop.
    pub fn demote(&self) {
        let mut state = self.state();
        state.primary = false;
        for clock in state.leases.values_mut() {
            clock.expiry = None;
        }
    }

    pub fn is_primary(&self) -> bool {
        self.state().primary
    }

    /// Keeps a lease alive; `None` when it does not exist or has already expired.
    pub fn renew(&self, id: i64) -> Option<i64> {
        let mut state = self.state();
        let now = Instant::now();
        let clock = state.leases.get_mut(&id)?;
        if clock.expiry.is_some_and(|at| at <= now) {
            return None;
        }
        clock.expiry = Some(now + seconds(clock.ttl));
        Some(clock.ttl)
    }

    pub fn time_to_live(&self, id: i64) -> Option<TimeToLive> {
        let state = self.state();
        let clock = state.leases.get(&id)?;
        let remaining = match clock.expiry {
            Some(at) => at.saturating_duration_since(Instant::now()).as_secs() as i64,
            None => clock.ttl,
        };
        Some(TimeToLive { granted: clock.ttl, remaining })
    }

    /// Leases whose time is up, when this member is the leader.
    pub fn expired(&self) -> Vec<i64> {
        let state = self.state();
        if !state.primary {
            return Vec::new();
        }
        let now = Instant::now();
        state.leases.iter().filter(|(_, c)| c.expiry.is_some_and(|at| at <= now)).map(|(id, _)| *id).collect()
    }

    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.state().leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_primary_expires_and_promotion_extends() {
        let lessor = Lessor::default();
        lessor.granted(1, 0);
        assert!(lessor.expired().is_empty(), "followers never expire leases");
        lessor.promote(Duration::ZERO);
        assert_eq!(lessor.expired(), vec![1], "a zero TTL is due at once on the leader");
        assert_eq!(lessor.renew(1), None, "an expired lease cannot be renewed");
        lessor.granted(2, 100);
        assert_eq!(lessor.renew(2), Some(100));
        let ttl = lessor.time_to_live(2).expect("exists");
        assert_eq!(ttl.granted, 100);
        assert!(ttl.remaining >= 99);
        lessor.demote();
        assert!(lessor.expired().is_empty());
        lessor.revoked(1);
        assert_eq!(lessor.ids(), vec![2]);
    }
}
