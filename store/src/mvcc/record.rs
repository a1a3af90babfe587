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

    /// Appends the `mvccpb.KeyValue` a stored record stands for, encoded as
    /// prost encodes it (only the key, for a deletion), to `out`, copying
    /// the value once. Returns whether it is a deletion; `None` when the
    /// record is too short.
    pub fn encode_key_value(stored: &[u8], key: &[u8], mod_revision: i64, out: &mut Vec<u8>) -> Option<bool> {
        use prost::encoding::{encode_key, encode_varint, WireType};
        let header = Record::decode(stored.get(..HEADER)?, false)?;
        let bytes = |tag: u32, data: &[u8], out: &mut Vec<u8>| {
            if !data.is_empty() {
                encode_key(tag, WireType::LengthDelimited, out);
                encode_varint(data.len() as u64, out);
                out.extend_from_slice(data);
            }
        };
        let int = |tag: u32, n: i64, out: &mut Vec<u8>| {
            if n != 0 {
                encode_key(tag, WireType::Varint, out);
                encode_varint(n as u64, out);
            }
        };
        bytes(1, key, out);
        if header.tombstone {
            return Some(true);
        }
        int(2, header.create_revision, out);
        int(3, mod_revision, out);
        int(4, header.version, out);
        bytes(5, &stored[HEADER..], out);
        int(6, header.lease, out);
        Some(false)
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
    fn a_stored_record_encodes_as_prost_encodes_its_key_value() {
        use prost::Message;
        let records = [
            Record { tombstone: false, create_revision: 5, version: 3, lease: 0x7fff_0000_0001, value: b"v".to_vec() },
            Record { tombstone: false, create_revision: 1, version: 1, lease: 0, value: Vec::new() },
            Record { tombstone: false, create_revision: -1, version: i64::MAX, lease: -7, value: vec![9; 300] },
            Record::tombstone(),
        ];
        for record in records {
            let mut out = Vec::new();
            let tombstone = Record::encode_key_value(&record.encode(), b"k\0ey", 77, &mut out);
            let expected = if record.tombstone {
                KeyValue { key: b"k\0ey".to_vec(), ..KeyValue::default() }
            } else {
                record.clone().into_key_value(b"k\0ey".to_vec(), 77)
            };
            assert_eq!((tombstone, out), (Some(record.tombstone), expected.encode_to_vec()), "{record:?}");
        }
        assert_eq!(Record::encode_key_value(&[0; 24], b"k", 1, &mut Vec::new()), None);
    }

    #[test]
    fn round_trip() {
        let rec = Record { tombstone: false, create_revision: 3, version: 2, lease: 77, value: b"v".to_vec() };
        assert_eq!(Record::decode(&rec.encode(), true), Some(rec.clone()));
        assert_eq!(Record::decode(&rec.encode(), false).map(|r| r.value), Some(vec![]));
        assert!(Record::is_tombstone(&Record::tombstone().encode()));
        assert_eq!(Record::decode(b"short", true), None);
    }
}
