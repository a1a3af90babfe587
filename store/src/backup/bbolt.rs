//! A reader of bbolt databases: the format of etcd's backend, and so of the
//! snapshot files etcd's tools save. Pages are read one at a time from the
//! file, so memory is bounded by the tree's depth and its largest page, not
//! by the file. Everything is checked before use: a snapshot is untrusted.
//!
//! bbolt's layout (little-endian). Every page starts with a 16-byte header:
//! its id (u64), flags (u16: 1 branch, 2 leaf, 4 meta, 16 freelist), an
//! element count (u16) and the number of overflow pages that follow it
//! (u32). Pages 0 and 1 are meta pages: magic `ED0CDAED`, version 2, page
//! size, flags, the root bucket (root page, sequence), the freelist page, the
//! high-water page id, the transaction id and an FNV-1a 64 checksum of the
//! fields before it; the valid one with the higher transaction id is
//! current. Branch elements are (pos u32, key size u32, child page u64),
//! leaf elements (flags u32, pos u32, key size u32, value size u32), `pos`
//! counted from the element itself. A leaf value flagged 1 is a nested
//! bucket: (root page u64, sequence u64), followed by the bucket's own leaf
//! page inline when its root is 0.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub const MAGIC: u32 = 0xED0C_DAED;
pub(crate) const VERSION: u32 = 2;
pub(crate) const PAGE_HEADER: usize = 16;
pub(crate) const ELEMENT: usize = 16;
pub(crate) const BRANCH: u16 = 0x01;
pub(crate) const LEAF: u16 = 0x02;
pub(crate) const BUCKET_VALUE: u32 = 0x01;
/// Deeper than any real tree: a deeper one is a loop in a damaged file.
const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum BboltError {
    #[error("no valid bbolt meta page")]
    NoMeta,
    #[error("page {page} is damaged: {what}")]
    Damaged { page: u64, what: &'static str },
    #[error("bucket {0:?} is missing")]
    MissingBucket(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn damaged(page: u64, what: &'static str) -> BboltError {
    BboltError::Damaged { page, what }
}

/// Where bytes come from: a file, or memory (tests, fuzzing).
pub trait Source {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl Source for File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }
}

impl Source for [u8] {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let bytes = start.checked_add(buf.len()).and_then(|end| self.get(start..end));
        buf.copy_from_slice(bytes.ok_or(io::ErrorKind::UnexpectedEof)?);
        Ok(())
    }
}

/// A bucket's tree: on its own pages, or inline in its parent's value.
#[derive(Clone, Debug)]
pub enum Bucket {
    Page(u64),
    Inline(Vec<u8>),
}

/// One entry of a bucket.
pub enum Item<'a> {
    Value(&'a [u8]),
    Bucket(Bucket),
}

/// What [`Db::for_each`] calls for each entry: its key and what it holds.
pub type Visit<'f> = &'f mut dyn FnMut(&[u8], Item<'_>) -> Result<(), BboltError>;

pub struct Db<S: ?Sized> {
    page_size: u64,
    root: u64,
    /// Pages in use (the high-water page id): the database's size in pages.
    pub pages: u64,
    pub txid: u64,
    /// Bytes of the file that belong to the database.
    limit: u64,
    source: Box<S>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(raw)
}

pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

struct Meta {
    page_size: u64,
    root: u64,
    pages: u64,
    txid: u64,
}

/// The meta page at `offset`, if it is a valid one.
fn meta_at<S: Source + ?Sized>(source: &S, offset: u64) -> Option<Meta> {
    let mut page = [0u8; PAGE_HEADER + 64];
    source.read_at(offset, &mut page).ok()?;
    let meta = &page[PAGE_HEADER..];
    if u32_at(meta, 0) != MAGIC || u32_at(meta, 4) != VERSION || fnv1a64(&meta[..56]) != u64_at(meta, 56) {
        return None;
    }
    let page_size = u64::from(u32_at(meta, 8));
    if !(512..=1 << 20).contains(&page_size) {
        return None;
    }
    Some(Meta { page_size, root: u64_at(meta, 16), pages: u64_at(meta, 40), txid: u64_at(meta, 48) })
}

/// Whether `head` (a file's first bytes) starts like a bbolt database.
pub fn is_bbolt(head: &[u8]) -> bool {
    head.len() >= PAGE_HEADER + 4 && u32_at(head, PAGE_HEADER) == MAGIC
}

impl<S: Source + ?Sized> Db<S> {
    /// Opens the database in the first `len` bytes of `source`.
    pub fn open(source: Box<S>, len: u64) -> Result<Db<S>, BboltError> {
        let first = meta_at(&*source, 0);
        let page_size = first.as_ref().map_or(4096, |m| m.page_size);
        let second = meta_at(&*source, page_size);
        let meta = match (first, second) {
            (Some(a), Some(b)) => {
                if b.txid > a.txid && b.page_size == a.page_size {
                    b
                } else {
                    a
                }
            }
            (Some(m), None) | (None, Some(m)) => m,
            (None, None) => return Err(BboltError::NoMeta),
        };
        let size = meta.pages.checked_mul(meta.page_size).ok_or(BboltError::NoMeta)?;
        if meta.pages < 2 || size > len {
            return Err(damaged(meta.pages, "the database is longer than the file (truncated)"));
        }
        Ok(Db { page_size: meta.page_size, root: meta.root, pages: meta.pages, txid: meta.txid, limit: size, source })
    }

    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The root bucket, whose entries are the top-level buckets.
    pub fn root(&self) -> Bucket {
        Bucket::Page(self.root)
    }

    /// A page and its overflow pages, checked to be what the tree says.
    fn page(&self, id: u64) -> Result<Vec<u8>, BboltError> {
        if id < 2 || id >= self.pages {
            return Err(damaged(id, "page id out of range"));
        }
        let offset = id * self.page_size;
        let mut header = [0u8; PAGE_HEADER];
        self.source.read_at(offset, &mut header)?;
        if u64_at(&header, 0) != id {
            return Err(damaged(id, "page header names another page"));
        }
        let span = u64::from(u32_at(&header, 12)) + 1;
        let len = span.checked_mul(self.page_size).filter(|len| offset + len <= self.limit);
        let len = len.ok_or_else(|| damaged(id, "overflow past the end of the database"))?;
        let mut page = vec![0u8; len as usize];
        self.source.read_at(offset, &mut page)?;
        Ok(page)
    }

    /// Calls `each` for every entry of `bucket`, in key order.
    pub fn for_each(&self, bucket: &Bucket, each: Visit<'_>) -> Result<(), BboltError> {
        match bucket {
            Bucket::Inline(page) => leaf(u64::MAX, page, each),
            Bucket::Page(root) => self.walk(*root, 0, &mut HashSet::new(), each),
        }
    }

    fn walk(&self, id: u64, depth: usize, seen: &mut HashSet<u64>, each: Visit<'_>) -> Result<(), BboltError> {
        if depth > MAX_DEPTH || !seen.insert(id) {
            return Err(damaged(id, "the tree loops back on itself"));
        }
        let page = self.page(id)?;
        match u16_at(&page, 8) {
            LEAF => leaf(id, &page, each),
            BRANCH => {
                for i in 0..usize::from(u16_at(&page, 10)) {
                    let at = PAGE_HEADER + i * ELEMENT;
                    let child = page.get(at..at + ELEMENT).map(|e| u64_at(e, 8));
                    self.walk(child.ok_or_else(|| damaged(id, "element past the page"))?, depth + 1, seen, each)?;
                }
                Ok(())
            }
            _ => Err(damaged(id, "neither a branch nor a leaf page")),
        }
    }

    /// The top-level buckets, by name, in order; a plain value at the top
    /// level is not something a bbolt database holds.
    pub fn buckets(&self) -> Result<Vec<(Vec<u8>, Bucket)>, BboltError> {
        let mut found = Vec::new();
        self.for_each(&self.root(), &mut |name, item| match item {
            Item::Bucket(bucket) => {
                found.push((name.to_vec(), bucket));
                Ok(())
            }
            Item::Value(_) => Err(BboltError::MissingBucket(String::from_utf8_lossy(name).into_owned())),
        })?;
        Ok(found)
    }
}

/// The entries of leaf page `page` (the inline page of a bucket when `id`
/// is `u64::MAX`).
fn leaf(id: u64, page: &[u8], each: Visit<'_>) -> Result<(), BboltError> {
    if page.len() < PAGE_HEADER || u16_at(page, 8) != LEAF {
        return Err(damaged(id, "not a leaf page"));
    }
    for i in 0..usize::from(u16_at(page, 10)) {
        let at = PAGE_HEADER + i * ELEMENT;
        let element = page.get(at..at + ELEMENT).ok_or_else(|| damaged(id, "element past the page"))?;
        let (flags, pos) = (u32_at(element, 0), u32_at(element, 4) as usize);
        let (key_len, value_len) = (u32_at(element, 8) as usize, u32_at(element, 12) as usize);
        let key_at = at.checked_add(pos).ok_or_else(|| damaged(id, "key past the page"))?;
        let key = key_at.checked_add(key_len).and_then(|end| page.get(key_at..end));
        let key = key.ok_or_else(|| damaged(id, "key past the page"))?;
        let value_at = key_at + key_len;
        let value = value_at.checked_add(value_len).and_then(|end| page.get(value_at..end));
        let value = value.ok_or_else(|| damaged(id, "value past the page"))?;
        if flags & BUCKET_VALUE == 0 {
            each(key, Item::Value(value))?;
            continue;
        }
        if value.len() < 16 {
            return Err(damaged(id, "bucket header too short"));
        }
        let bucket = match u64_at(value, 0) {
            0 => Bucket::Inline(value[16..].to_vec()),
            root => Bucket::Page(root),
        };
        each(key, Item::Bucket(bucket))?;
    }
    Ok(())
}

/// CRC-32C (Castagnoli), the checksum etcd's `snapshot status` prints.
#[derive(Clone)]
pub struct Crc32c {
    table: [u32; 256],
    state: u32,
}

impl Default for Crc32c {
    fn default() -> Crc32c {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut crc = i as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            }
            *slot = crc;
        }
        Crc32c { table, state: !0 }
    }
}

impl Crc32c {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state = self.table[((self.state ^ u32::from(b)) & 0xff) as usize] ^ (self.state >> 8);
        }
    }

    pub fn sum(&self) -> u32 {
        !self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_its_check_value() {
        let mut crc = Crc32c::default();
        crc.update(b"123456789");
        assert_eq!(crc.sum(), 0xE306_9283);
    }

    const PAGE: usize = 4096;

    fn put_u32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn put_u64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// A leaf page at `at` holding `items` (key, value, is a bucket).
    fn write_leaf(b: &mut [u8], at: usize, id: u64, items: &[(&[u8], Vec<u8>, bool)]) -> usize {
        put_u64(b, at, id);
        b[at + 8..at + 10].copy_from_slice(&LEAF.to_le_bytes());
        b[at + 10..at + 12].copy_from_slice(&(items.len() as u16).to_le_bytes());
        let mut data = at + PAGE_HEADER + items.len() * ELEMENT;
        for (i, (key, value, bucket)) in items.iter().enumerate() {
            let element = at + PAGE_HEADER + i * ELEMENT;
            put_u32(b, element, u32::from(*bucket));
            put_u32(b, element + 4, (data - element) as u32);
            put_u32(b, element + 8, key.len() as u32);
            put_u32(b, element + 12, value.len() as u32);
            b[data..data + key.len()].copy_from_slice(key);
            b[data + key.len()..data + key.len() + value.len()].copy_from_slice(value);
            data += key.len() + value.len();
        }
        data - at
    }

    fn write_meta(b: &mut [u8], page: usize, txid: u64) {
        let meta = page * PAGE + PAGE_HEADER;
        put_u64(b, page * PAGE, page as u64);
        b[page * PAGE + 8..page * PAGE + 10].copy_from_slice(&4u16.to_le_bytes());
        put_u32(b, meta, MAGIC);
        put_u32(b, meta + 4, VERSION);
        put_u32(b, meta + 8, PAGE as u32);
        put_u64(b, meta + 16, 2);
        put_u64(b, meta + 40, 3);
        put_u64(b, meta + 48, txid);
        let sum = fnv1a64(&b[meta..meta + 56]);
        put_u64(b, meta + 56, sum);
    }

    /// Three pages: two metas and a root leaf with two inline buckets.
    fn small_db() -> Vec<u8> {
        let mut b = vec![0u8; 3 * PAGE];
        let inline = |items: &[(&[u8], Vec<u8>, bool)]| {
            let mut page = vec![0u8; 256];
            let len = write_leaf(&mut page, 0, 0, items);
            let mut value = vec![0u8; 16];
            value.extend_from_slice(&page[..len]);
            value
        };
        let key = inline(&[(b"k1", b"v1".to_vec(), false), (b"k2", b"v2".to_vec(), false)]);
        let meta = inline(&[(b"consistent_index", vec![0, 0, 0, 0, 0, 0, 0, 9], false)]);
        write_leaf(&mut b, 2 * PAGE, 2, &[(b"key", key, true), (b"meta", meta, true)]);
        write_meta(&mut b, 0, 1);
        write_meta(&mut b, 1, 0);
        b
    }

    fn walk_all(data: Vec<u8>) -> Result<Vec<Vec<u8>>, BboltError> {
        let len = data.len() as u64;
        let db = Db::open(data.into_boxed_slice(), len)?;
        let mut pending = vec![db.root()];
        let mut keys = Vec::new();
        while let Some(bucket) = pending.pop() {
            let mut nested = Vec::new();
            db.for_each(&bucket, &mut |key, item| {
                keys.push(key.to_vec());
                if let Item::Bucket(b) = item {
                    nested.push(b);
                }
                Ok(())
            })?;
            pending.extend(nested.into_iter().rev());
        }
        Ok(keys)
    }

    #[test]
    fn buckets_inline_and_on_pages_are_walked_in_order() {
        let keys = walk_all(small_db()).expect("a valid database");
        let names: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        assert_eq!(names, [&b"key"[..], b"meta", b"k1", b"k2", b"consistent_index"]);
    }

    #[test]
    fn damaged_pages_are_refused_never_a_panic() {
        let good = small_db();
        // A fixed pseudo-random sequence of byte changes in the tree page.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            let mut bad = good.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = 2 * PAGE + (seed as usize % 600);
                bad[at] = (seed >> 32) as u8;
            }
            let _ = walk_all(bad);
        }
        let mut cut = good.clone();
        cut.truncate(2 * PAGE);
        assert!(matches!(walk_all(cut), Err(BboltError::Damaged { .. })));
    }

    #[test]
    fn garbage_and_empty_input_are_not_databases() {
        let garbage: Box<[u8]> = vec![7u8; 8192].into_boxed_slice();
        assert!(matches!(Db::open(garbage, 8192), Err(BboltError::NoMeta)));
        let empty: Box<[u8]> = Vec::new().into_boxed_slice();
        assert!(matches!(Db::open(empty, 0), Err(BboltError::NoMeta)));
        assert!(!is_bbolt(b"SHOALSN1"));
    }
}
