//! One record of a segment file: `length (u32 LE) ‖ crc (u32 LE) ‖ kind ‖ body`.
//!
//! `length` counts the kind byte and the body; `crc` is CRC-32 (IEEE) over
//! them. A length of zero is the end of a segment's data: segments are
//! preallocated, so the unwritten rest of a file reads as zeros. A record
//! that runs past the file or whose checksum fails is a torn write (only
//! acceptable at the very end of the log) or corruption.

/// Bytes before the kind: length and checksum.
pub const HEADER: usize = 8;

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `index (u64 LE) ‖ bincode Entry`: the entry at `index`, replacing it and every later one.
    Entry = 1,
    /// bincode `Vote`: the vote from now on.
    Vote = 2,
    /// `from (u64 LE)`: entries at `from` and after are gone.
    Truncate = 3,
    /// bincode `LogId`: entries up to it are gone, and it is the last purged.
    Purge = 4,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Entry),
            2 => Some(Kind::Vote),
            3 => Some(Kind::Truncate),
            4 => Some(Kind::Purge),
            _ => None,
        }
    }
}

/// Appends one record to `out` and returns its length there.
pub fn encode(out: &mut Vec<u8>, kind: Kind, parts: &[&[u8]]) -> usize {
    let start = out.len();
    let length = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    out.extend_from_slice(&(length as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind as u8);
    for part in parts {
        out.extend_from_slice(part);
    }
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// One record read back.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub kind: Kind,
    pub body: &'a [u8],
    /// Bytes the whole record takes.
    pub size: usize,
}

/// What is found at a position of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<'a> {
    Record(Decoded<'a>),
    /// Zeros or the end of the file: no record was ever written here.
    End,
    /// A record cut short or failing its checksum.
    Torn,
}

/// Reads the record at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Read<'_> {
    if bytes.len() < HEADER {
        return if bytes.iter().all(|b| *b == 0) { Read::End } else { Read::Torn };
    }
    let length = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if length == 0 {
        return if crc == 0 { Read::End } else { Read::Torn };
    }
    let Some(payload) = bytes.get(HEADER..HEADER + length) else { return Read::Torn };
    if crc32fast::hash(payload) != crc {
        return Read::Torn;
    }
    match Kind::from_byte(payload[0]) {
        Some(kind) => Read::Record(Decoded { kind, body: &payload[1..], size: HEADER + length }),
        None => Read::Torn,
    }
}

/// The `u64` a Truncate body, or an Entry body's head, holds.
pub fn leading_u64(body: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(body.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_any_damage_is_torn() {
        let mut out = vec![0xAA];
        let size = encode(&mut out, Kind::Entry, &[&7u64.to_le_bytes(), b"payload"]);
        assert_eq!(size, out.len() - 1);
        let bytes = &out[1..];
        let Read::Record(record) = decode(bytes) else { panic!("a record") };
        assert_eq!((record.kind, record.size), (Kind::Entry, size));
        assert_eq!(leading_u64(record.body), Some(7));
        assert_eq!(&record.body[8..], b"payload");
        for cut in 1..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Read::Torn, "cut at {cut}");
        }
        for flip in 0..bytes.len() {
            let mut damaged = bytes.to_vec();
            damaged[flip] ^= 0x10;
            assert_ne!(decode(&damaged), decode(bytes), "bit flipped at {flip}");
        }
    }

    #[test]
    fn zeros_and_the_end_of_a_file_are_the_end() {
        assert_eq!(decode(&[]), Read::End);
        assert_eq!(decode(&[0; 3]), Read::End);
        assert_eq!(decode(&[0; 64]), Read::End);
        assert_eq!(decode(&[0, 0, 0, 0, 1, 0, 0, 0]), Read::Torn);
    }
}
