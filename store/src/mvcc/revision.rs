//! A point in the store's history.

/// etcd's revision: `main` counts write transactions (the number clients
/// see), `sub` orders the changes inside one transaction.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// Big-endian bytes: byte order equals revision order (both parts are >= 0).
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        out[8..].copy_from_slice(&(self.sub as u64).to_be_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Revision> {
        let main: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        let sub: [u8; 8] = bytes.get(8..16)?.try_into().ok()?;
        (bytes.len() == 16).then(|| Revision::new(u64::from_be_bytes(main) as i64, u64::from_be_bytes(sub) as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_order_is_revision_order() {
        let revs = [Revision::new(1, 0), Revision::new(1, 7), Revision::new(2, 0), Revision::new(300, 1)];
        for pair in revs.windows(2) {
            assert!(pair[0].to_bytes() < pair[1].to_bytes());
            assert_eq!(Revision::from_bytes(&pair[0].to_bytes()), Some(pair[0]));
        }
        assert_eq!(Revision::from_bytes(&[0; 15]), None);
    }
}
