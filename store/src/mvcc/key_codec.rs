//! The order-preserving encoding of `(user key, revision)` pairs in the `kv`
//! column family.
//!
//! ```text
//! escape(key) ‖ 00 01 ‖ !main (8 bytes BE) ‖ !sub (8 bytes BE)
//! ```
//!
//! `escape` writes every `00` byte of the key as `00 FF`, so no escaped key
//! contains `00 01`, and comparing two encodings compares the user keys first
//! (lexicographically, as etcd orders them) and then the revisions, newest
//! first. Example, for keys `a` and `a\0` with versions at revisions 5 and 9:
//!
//! ```text
//! 61 00 01 !9     a @ 9    <- a seek to (a, !rev) lands on the newest version <= rev
//! 61 00 01 !5     a @ 5
//! 61 00 FF 00 01 !9   a\0 @ 9
//! ```

use super::revision::Revision;

const TERMINATOR: [u8; 2] = [0x00, 0x01];
/// Length of the encoded revision that follows a key's versions prefix.
pub const REVISION_BYTES: usize = 16;
/// Sorts after every version of a key and before every longer key.
const AFTER_VERSIONS: [u8; 2] = [0x00, 0x02];

fn escape_into(out: &mut Vec<u8>, key: &[u8]) {
    // Most keys hold no zero byte: copy them whole. Keys that do often hold
    // many (fixed-width binary keys), so escape the rest byte by byte.
    let Some(first_zero) = memchr::memchr(0, key) else {
        out.extend_from_slice(key);
        return;
    };
    out.reserve(key.len() - first_zero + 8);
    out.extend_from_slice(&key[..first_zero]);
    for &b in &key[first_zero..] {
        if b == 0 {
            out.extend_from_slice(&[0x00, 0xFF]);
        } else {
            out.push(b);
        }
    }
}

/// The escaped key alone: sorts before every version of `key` and after every
/// version of any smaller key. Used as a range bound.
pub fn bound(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    escape_into(&mut out, key);
    out
}

/// The prefix shared by every version of `key`.
pub fn versions_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 18);
    escape_into(&mut out, key);
    out.extend_from_slice(&TERMINATOR);
    out
}

/// The first position after every version of `key`.
pub fn after_versions(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    escape_into(&mut out, key);
    out.extend_from_slice(&AFTER_VERSIONS);
    out
}

/// [`after_versions`] from the key's [`versions_prefix`], without escaping it again.
pub fn after_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    if let Some(last) = out.last_mut() {
        *last = AFTER_VERSIONS[1];
    }
    out
}

/// The encoding of one version. A seek to `version_key(key, Revision::new(r, i64::MAX))`
/// lands on the newest version of `key` at or below main revision `r`.
pub fn version_key(key: &[u8], rev: Revision) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 18);
    version_key_into(&mut out, key, rev);
    out
}

/// [`version_key`], appended to `out`.
pub fn version_key_into(out: &mut Vec<u8>, key: &[u8], rev: Revision) {
    escape_into(out, key);
    out.extend_from_slice(&TERMINATOR);
    out.extend_from_slice(&(!(rev.main as u64)).to_be_bytes());
    out.extend_from_slice(&(!(rev.sub as u64)).to_be_bytes());
}

/// Splits an encoded version back into the user key and the revision.
pub fn decode(encoded: &[u8]) -> Option<(Vec<u8>, Revision)> {
    let mut key = Vec::with_capacity(encoded.len().saturating_sub(18));
    let mut i = memchr::memchr(0, encoded)?;
    key.extend_from_slice(&encoded[..i]);
    while i < encoded.len() {
        match encoded[i] {
            0 => match encoded.get(i + 1)? {
                0xFF => key.push(0),
                0x01 => return decode_revision(&encoded[i + 2..]).map(|rev| (key, rev)),
                _ => return None,
            },
            b => {
                key.push(b);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    None
}

/// The revision part of an encoded version, when `prefix` is the key's known
/// [`versions_prefix`]; avoids decoding the key again.
pub fn revision_after_prefix(encoded: &[u8], prefix_len: usize) -> Option<Revision> {
    decode_revision(encoded.get(prefix_len..)?)
}

fn decode_revision(tail: &[u8]) -> Option<Revision> {
    if tail.len() != REVISION_BYTES {
        return None;
    }
    let main: [u8; 8] = tail[..8].try_into().ok()?;
    let sub: [u8; 8] = tail[8..].try_into().ok()?;
    Some(Revision::new(!u64::from_be_bytes(main) as i64, !u64::from_be_bytes(sub) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        for key in [&b"a"[..], b"", b"\0", b"a\0b", b"\xff\0\x01"] {
            let rev = Revision::new(42, 3);
            assert_eq!(decode(&version_key(key, rev)), Some((key.to_vec(), rev)));
        }
    }

    #[test]
    fn newer_versions_sort_first() {
        assert!(version_key(b"a", Revision::new(9, 0)) < version_key(b"a", Revision::new(5, 0)));
        assert!(version_key(b"a", Revision::new(5, 1)) < version_key(b"a", Revision::new(5, 0)));
    }

    proptest! {
        #[test]
        fn order_follows_keys_then_newest_revision(
            a in proptest::collection::vec(any::<u8>(), 0..6),
            b in proptest::collection::vec(any::<u8>(), 0..6),
            ra in 0i64..100, rb in 0i64..100,
        ) {
            let ea = version_key(&a, Revision::new(ra, 0));
            let eb = version_key(&b, Revision::new(rb, 0));
            let expected = a.cmp(&b).then(rb.cmp(&ra));
            prop_assert_eq!(ea.cmp(&eb), expected);
            // Range bounds: every version of a key k sits in [bound(k), after_versions(k)),
            // and after_versions(a) <= bound(b) whenever a < b.
            prop_assert!(bound(&a) <= ea && ea < after_versions(&a));
            prop_assert_eq!(after_prefix(&versions_prefix(&a)), after_versions(&a));
            if a < b {
                prop_assert!(after_versions(&a) <= bound(&b));
            }
        }
    }
}
