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
//! mod main ‖ mod sub ‖ create revision ‖ version ‖ lease (i64 LE each) ‖ key length (u32 LE) ‖ key
//! ```
//!
//! and the hash table holds only each entry's position (8 bytes), so a
//! 16-byte key costs about 60 bytes of arena and 9-18 bytes of table. An
//! update rewrites the fixed-size part in place; a delete leaves its bytes
//! behind, and the arena is rewritten once those outweigh the live entries.
//! The index is rebuilt from the `kv` column family when the store opens and
//! after a snapshot is installed.

use hashbrown::{DefaultHashBuilder, HashTable};
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

const META_BYTES: usize = 40;
const HEADER_BYTES: usize = META_BYTES + 4;
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
        Some(read_meta(entry(chunks, *slot)))
    }

    /// Records `meta` as the newest live version of `key`.
    pub fn insert(&mut self, key: &[u8], meta: KeyMeta) {
        let hash = self.hasher.hash_one(key);
        let chunks = &mut self.chunks;
        if let Some(&mut slot) = self.table.find_mut(hash, |&slot| entry_key(chunks, slot) == key) {
            write_meta(entry_mut(chunks, slot), meta);
            return;
        }
        let slot = append(chunks, key, meta);
        self.live_bytes += HEADER_BYTES + key.len();
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.table.insert_unique(hash, slot, |&slot| hasher.hash_one(entry_key(chunks, slot)));
    }

    /// Forgets `key` (it was deleted).
    pub fn remove(&mut self, key: &[u8]) {
        let chunks = &self.chunks;
        let Ok(found) = self.table.find_entry(self.hasher.hash_one(key), |&slot| entry_key(chunks, slot) == key) else {
            return;
        };
        found.remove();
        self.live_bytes -= HEADER_BYTES + key.len();
        self.dead_bytes += HEADER_BYTES + key.len();
        if self.dead_bytes > self.live_bytes && self.dead_bytes >= MIN_GARBAGE_TO_REWRITE {
            self.rewrite();
        }
    }

    /// Copies the live entries into a fresh arena; their hashes do not change.
    fn rewrite(&mut self) {
        let old = std::mem::take(&mut self.chunks);
        for slot in self.table.iter_mut() {
            let key = entry_key(&old, *slot);
            *slot = append(&mut self.chunks, key, read_meta(entry(&old, *slot)));
        }
        self.dead_bytes = 0;
    }
}

fn append(chunks: &mut Vec<Vec<u8>>, key: &[u8], meta: KeyMeta) -> Slot {
    let needed = HEADER_BYTES + key.len();
    if chunks.last().is_none_or(|chunk| chunk.capacity() - chunk.len() < needed) {
        chunks.push(Vec::with_capacity(needed.max(CHUNK_BYTES)));
    }
    let number = chunks.len() - 1;
    let chunk = &mut chunks[number];
    let offset = chunk.len();
    let mut header = [0u8; HEADER_BYTES];
    write_meta(&mut header, meta);
    // A key longer than u32::MAX cannot arrive: requests are far smaller.
    header[META_BYTES..].copy_from_slice(&(key.len() as u32).to_le_bytes());
    chunk.extend_from_slice(&header);
    chunk.extend_from_slice(key);
    // An offset is below CHUNK_BYTES, or 0 in a chunk of its own.
    ((number as u64) << 32) | offset as u64
}

fn split(slot: Slot) -> (usize, usize) {
    ((slot >> 32) as usize, (slot & u32::MAX as u64) as usize)
}

fn entry(chunks: &[Vec<u8>], slot: Slot) -> &[u8] {
    let (number, offset) = split(slot);
    &chunks[number][offset..]
}

fn entry_mut(chunks: &mut [Vec<u8>], slot: Slot) -> &mut [u8] {
    let (number, offset) = split(slot);
    &mut chunks[number][offset..]
}

fn entry_key(chunks: &[Vec<u8>], slot: Slot) -> &[u8] {
    let entry = entry(chunks, slot);
    let len = u32::from_le_bytes(entry[META_BYTES..HEADER_BYTES].try_into().expect("invariant: 4 bytes")) as usize;
    &entry[HEADER_BYTES..HEADER_BYTES + len]
}

fn read_meta(entry: &[u8]) -> KeyMeta {
    let int = |at: usize| i64::from_le_bytes(entry[at..at + 8].try_into().expect("invariant: 8 bytes"));
    KeyMeta { revision: Revision::new(int(0), int(8)), create_revision: int(16), version: int(24), lease: int(32) }
}

fn write_meta(entry: &mut [u8], meta: KeyMeta) {
    let fields = [meta.revision.main, meta.revision.sub, meta.create_revision, meta.version, meta.lease];
    for (i, field) in fields.iter().enumerate() {
        entry[i * 8..i * 8 + 8].copy_from_slice(&field.to_le_bytes());
    }
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
        fn behaves_as_a_map(ops in prop::collection::vec((0u8..40, any::<bool>(), 0i64..1000), 0..400)) {
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
