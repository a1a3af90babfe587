//! Lease ids chosen by the server, unique across members without coordination:
//! the low 16 bits of the member id, then milliseconds, then a counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct LeaseIds {
    prefix: u64,
    next: AtomicU64,
}

impl LeaseIds {
    pub fn new(member_id: u64) -> LeaseIds {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        LeaseIds { prefix: (member_id & 0xffff) << 47, next: AtomicU64::new((millis & 0xff_ffff_ffff) << 7) }
    }

    /// A positive id, never 0.
    pub fn next(&self) -> i64 {
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let id = ((self.prefix | (n & ((1 << 47) - 1))) & (i64::MAX as u64)) as i64;
            if id != 0 {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_and_distinct() {
        let ids = LeaseIds::new(0xdead_beef);
        let a = ids.next();
        let b = ids.next();
        assert!(a > 0 && b > 0 && a != b);
        assert_ne!(LeaseIds::new(1).next() >> 47, LeaseIds::new(2).next() >> 47);
    }
}
