//! The value stored for one version of a key in the `kv` column family.
//!
//! ```text
//! flags (1 byte: bit 0 = tombstone) ‖ create_revision ‖ version ‖ lease (i64 BE each) ‖ value
//! ```
//!
//! The mod revision is not stored: it is the revision in the version's key.

use shoal_proto::mvccpb::KeyValue;

const HEADER: usize = 25;
const TOMBSTONE: u8 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub tombstone: bool,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: Vec<u8>,
}

impl Record {
    pub fn tombstone() -> Record {
        Record { tombstone: true, ..Record::default() }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.value.len());
        out.push(if self.tombstone { TOMBSTONE } else { 0 });
        out.extend_from_slice(&self.create_revision.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.lease.to_be_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    /// Decodes a stored record; `with_value = false` skips copying the value
    /// (keys-only and count-only reads).
    pub fn decode(bytes: &[u8], with_value: bool) -> Option<Record> {
        if bytes.len() < HEADER {
            return None;
        }
        let int = |at: usize| -> Option<i64> { Some(i64::from_be_bytes(bytes[at..at + 8].try_into().ok()?)) };
        Some(Record {
            tombstone: bytes[0] & TOMBSTONE != 0,
            create_revision: int(1)?,
            version: int(9)?,
            lease: int(17)?,
            value: if with_value { bytes[HEADER..].to_vec() } else { Vec::new() },
        })
    }

    /// Whether a stored record is a tombstone, without decoding the rest.
    pub fn is_tombstone(bytes: &[u8]) -> bool {
        bytes.first().is_some_and(|flags| flags & TOMBSTONE != 0)
    }

    pub fn into_key_value(self, key: Vec<u8>, mod_revision: i64) -> KeyValue {
        KeyValue {
            key,
            create_revision: self.create_revision,
            mod_revision,
            version: self.version,
            value: self.value,
            lease: self.lease,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let rec = Record { tombstone: false, create_revision: 3, version: 2, lease: 77, value: b"v".to_vec() };
        assert_eq!(Record::decode(&rec.encode(), true), Some(rec.clone()));
        assert_eq!(Record::decode(&rec.encode(), false).map(|r| r.value), Some(vec![]));
        assert!(Record::is_tombstone(&Record::tombstone().encode()));
        assert_eq!(Record::decode(b"short", true), None);
    }
}
