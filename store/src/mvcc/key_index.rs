//! The newest live version of every key, in memory: what a write needs to
//! know about the key it changes (does it exist, its newest revision, create
//! revision, version and lease) without a RocksDB seek. This is the role
//! etcd's treeIndex plays; reads at a revision still go to RocksDB, and only
//! the applier uses this index.
//!
//! Only live keys are held: a delete removes its key. Entries are packed
//! into arena chunks,
//!
//! ```text
//! key length ‖ key ‖ mod main ‖ mod sub ‖ create revision ‖ version ‖ lease
//! ```
//!
//! each number a LEB128 varint (negative ones, which no write produces,
//! take ten bytes), and the hash table holds only each entry's position
//! (8 bytes). At a million revisions a 16-byte key costs about 26 bytes of
//! arena and 9-18 bytes of table. An update rewrites the numbers in place
//! when their encoding keeps its length, and otherwise appends the entry
//! afresh; a delete or a move leaves bytes behind, and the arena is
//! rewritten once those outweigh the live entries. The index is rebuilt
//! from the `kv` column family when the store opens and after a snapshot is
//! installed.

use hashbrown::{DefaultHashBuilder, HashTable};
use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};
use std::hash::BuildHasher;

use super::revision::Revision;

/// What the index knows of a key's newest live version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyMeta {
    pub revision: Revision,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// The longest encoding of a key's numbers: five ten-byte varints.
const MAX_META_BYTES: usize = 50;
/// Arena chunks are allocated at this size (or an entry's, if larger), so the
/// arena grows without copying what it holds.
const CHUNK_BYTES: usize = 1 << 20;
/// Garbage below this is never worth a rewrite.
const MIN_GARBAGE_TO_REWRITE: usize = 4 * CHUNK_BYTES;

/// An entry's position: chunk number in the high half, offset in the low.
type Slot = u64;

#[derive(Default)]
pub struct KeyIndex {
    table: HashTable<Slot>,
    chunks: Vec<Vec<u8>>,
    hasher: DefaultHashBuilder,
    live_bytes: usize,
    dead_bytes: usize,
}

impl KeyIndex {
    pub fn new() -> KeyIndex {
        KeyIndex::default()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes held by the table and the arena.
    pub fn allocated_bytes(&self) -> usize {
        self.table.capacity() * (size_of::<Slot>() + 1) + self.chunks.iter().map(Vec::capacity).sum::<usize>()
    }

    pub fn get(&self, key: &[u8]) -> Option<KeyMeta> {
        let chunks = &self.chunks;
        let slot = self.table.find(self.hasher.hash_one(key), |&slot| entry_key(chunks, slot) == key)?;
        Some(decode_meta(entry(chunks, *slot).meta))
    }

    /// Records `meta` as the newest live version of `key`.
    pub fn insert(&mut self, key: &[u8], meta: KeyMeta) {
        let hash = self.hasher.hash_one(key);
        let (encoded, len) = encode_meta(meta);
        let encoded = &encoded[..len];
        let chunks = &mut self.chunks;
        if let Some(slot) = self.table.find_mut(hash, |&slot| entry_key(chunks, slot) == key) {
            let old = entry(chunks, *slot);
            if old.meta.len() == encoded.len() {
                let (number, at) = split(*slot);
                let meta_at = at + old.len - encoded.len();
                chunks[number][meta_at..meta_at + encoded.len()].copy_from_slice(encoded);
                return;
            }
            // The numbers grew past a varint boundary: the entry moves.
            let old_len = old.len;
            *slot = append(chunks, key, encoded);
            self.live_bytes = self.live_bytes - old_len + entry_len(key, encoded);
            self.dead_bytes += old_len;
            self.rewrite_if_worth_it();
            return;
        }
        let slot = append(chunks, key, encoded);
        self.live_bytes += entry_len(key, encoded);
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.table.insert_unique(hash, slot, |&slot| hasher.hash_one(entry_key(chunks, slot)));
    }

    /// Forgets `key` (it was deleted).
    pub fn remove(&mut self, key: &[u8]) {
        let chunks = &self.chunks;
        let Ok(found) = self.table.find_entry(self.hasher.hash_one(key), |&slot| entry_key(chunks, slot) == key) else {
            return;
        };
        let (slot, _) = found.remove();
        let len = entry(chunks, slot).len;
        self.live_bytes -= len;
        self.dead_bytes += len;
        self.rewrite_if_worth_it();
    }

    fn rewrite_if_worth_it(&mut self) {
        if self.dead_bytes > self.live_bytes && self.dead_bytes >= MIN_GARBAGE_TO_REWRITE {
            self.rewrite();
        }
    }

    /// Copies the live entries into a fresh arena; their hashes do not change.
    fn rewrite(&mut self) {
        let old = std::mem::take(&mut self.chunks);
        for slot in self.table.iter_mut() {
            let found = entry(&old, *slot);
            *slot = append(&mut self.chunks, found.key, found.meta);
        }
        self.dead_bytes = 0;
    }
}

/// One entry, taken apart.
struct Entry<'a> {
    key: &'a [u8],
    /// The encoded numbers.
    meta: &'a [u8],
    /// Bytes the whole entry takes in its chunk.
    len: usize,
}

fn append(chunks: &mut Vec<Vec<u8>>, key: &[u8], meta: &[u8]) -> Slot {
    let needed = entry_len(key, meta);
    if chunks.last().is_none_or(|chunk| chunk.capacity() - chunk.len() < needed) {
        chunks.push(Vec::with_capacity(needed.max(CHUNK_BYTES)));
    }
    let number = chunks.len() - 1;
    let chunk = &mut chunks[number];
    let offset = chunk.len();
    encode_varint(key.len() as u64, chunk);
    chunk.extend_from_slice(key);
    chunk.extend_from_slice(meta);
    // An offset is below CHUNK_BYTES, or 0 in a chunk of its own.
    ((number as u64) << 32) | offset as u64
}

fn split(slot: Slot) -> (usize, usize) {
    ((slot >> 32) as usize, (slot & u32::MAX as u64) as usize)
}

/// The entry at `slot`'s key, and the bytes from its numbers on.
fn key_and_rest(chunks: &[Vec<u8>], slot: Slot) -> (&[u8], &[u8]) {
    let (number, offset) = split(slot);
    let mut rest = &chunks[number][offset..];
    let key_len = read_varint(&mut rest) as usize;
    rest.split_at(key_len)
}

fn entry(chunks: &[Vec<u8>], slot: Slot) -> Entry<'_> {
    let (key, numbers) = key_and_rest(chunks, slot);
    let mut after = numbers;
    for _ in 0..5 {
        read_varint(&mut after);
    }
    let meta = &numbers[..numbers.len() - after.len()];
    Entry { key, meta, len: entry_len(key, meta) }
}

/// Bytes an entry of `key` and encoded numbers `meta` takes.
fn entry_len(key: &[u8], meta: &[u8]) -> usize {
    encoded_len_varint(key.len() as u64) + key.len() + meta.len()
}

fn entry_key(chunks: &[Vec<u8>], slot: Slot) -> &[u8] {
    key_and_rest(chunks, slot).0
}

/// The numbers of `meta`, encoded: a buffer and how much of it they fill.
fn encode_meta(meta: KeyMeta) -> ([u8; MAX_META_BYTES], usize) {
    let mut out = [0u8; MAX_META_BYTES];
    let mut free = &mut out[..];
    for field in [meta.revision.main, meta.revision.sub, meta.create_revision, meta.version, meta.lease] {
        encode_varint(field as u64, &mut free);
    }
    let len = MAX_META_BYTES - free.len();
    (out, len)
}

fn decode_meta(mut bytes: &[u8]) -> KeyMeta {
    let mut next = || read_varint(&mut bytes) as i64;
    let (main, sub) = (next(), next());
    KeyMeta { revision: Revision::new(main, sub), create_revision: next(), version: next(), lease: next() }
}

/// Reads a varint this module wrote, so one that is whole and well formed.
fn read_varint(bytes: &mut &[u8]) -> u64 {
    decode_varint(bytes).expect("invariant: the index holds only varints it encoded")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn meta(n: i64) -> KeyMeta {
        KeyMeta { revision: Revision::new(n, n % 3), create_revision: n / 2, version: n % 7, lease: n * 11 }
    }

    #[test]
    fn insert_update_remove() {
        let mut index = KeyIndex::new();
        assert_eq!(index.get(b"a"), None);
        index.insert(b"a", meta(1));
        index.insert(b"", meta(2));
        index.insert(b"a", meta(3));
        assert_eq!((index.get(b"a"), index.get(b""), index.len()), (Some(meta(3)), Some(meta(2)), 2));
        index.remove(b"a");
        index.remove(b"missing");
        assert_eq!((index.get(b"a"), index.get(b""), index.len()), (None, Some(meta(2)), 1));
    }

    #[test]
    fn numbers_that_outgrow_their_encoding_move_the_entry() {
        let mut index = KeyIndex::new();
        let grown = KeyMeta { revision: Revision::new(i64::MAX, 1 << 40), create_revision: -1, version: 300, lease: 0 };
        index.insert(b"a", meta(1));
        index.insert(b"b", meta(2));
        index.insert(b"a", grown);
        index.insert(b"b", meta(5));
        assert_eq!((index.get(b"a"), index.get(b"b")), (Some(grown), Some(meta(5))));
        index.insert(b"a", meta(3));
        assert_eq!((index.get(b"a"), index.get(b"b"), index.len()), (Some(meta(3)), Some(meta(2 + 3)), 2));
    }

    #[test]
    fn a_key_larger_than_a_chunk_gets_its_own() {
        let mut index = KeyIndex::new();
        let big = vec![7u8; CHUNK_BYTES * 2];
        index.insert(b"small", meta(1));
        index.insert(&big, meta(2));
        index.insert(b"after", meta(3));
        assert_eq!(
            (index.get(&big), index.get(b"small"), index.get(b"after")),
            (Some(meta(2)), Some(meta(1)), Some(meta(3)))
        );
    }

    #[test]
    fn deletes_are_reclaimed_by_a_rewrite() {
        let mut index = KeyIndex::new();
        let key = |i: u32| format!("key-{i:08}-padding-to-make-it-longer").into_bytes();
        for i in 0..200_000 {
            index.insert(&key(i), meta(i64::from(i)));
        }
        let before = index.allocated_bytes();
        for i in 0..190_000 {
            index.remove(&key(i));
        }
        assert!(index.dead_bytes < MIN_GARBAGE_TO_REWRITE, "garbage was rewritten away");
        for i in 190_000..200_000 {
            assert_eq!(index.get(&key(i)), Some(meta(i64::from(i))));
        }
        assert!(index.allocated_bytes() < before);
    }

    proptest! {
        /// The index agrees with a plain map under any sequence of changes.
        #[test]
        fn behaves_as_a_map(ops in prop::collection::vec((0u8..40, any::<bool>(), -1_000_000i64..100_000_000), 0..400)) {
            let mut index = KeyIndex::new();
            let mut model = HashMap::new();
            for (k, put, n) in ops {
                let key = vec![b'k'; usize::from(k)];
                if put {
                    index.insert(&key, meta(n));
                    model.insert(key, meta(n));
                } else {
                    index.remove(&key);
                    model.remove(&key);
                }
            }
            prop_assert_eq!(index.len(), model.len());
            for (key, meta) in &model {
                prop_assert_eq!(index.get(key), Some(*meta));
            }
        }
    }
}
