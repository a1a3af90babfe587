//! A writer of bbolt databases (the layout [`super::bbolt`] reads), for
//! snapshots in etcd's format. Pages go out in order as they fill: each
//! bucket's tree is built bottom-up from entries given in key order, with
//! one open page per level, so memory is bounded by the tree's depth, not
//! by the database.
//!
//! The meta pages come first in the file but name the root bucket's page
//! and the page count, known only at the end; so the writer writes the
//! body (page 3 on) and hands back the [`Plan`], from which [`head`] makes
//! the first three pages to put before it.
//!
//! ```text
//! page 0, 1   meta (txid 0 and 1, identical otherwise)
//! page 2      freelist, empty: every page is in use
//! page 3..    each bucket's tree, leaves before the branches above them,
//!             then the root bucket's tree, whose values are bucket headers
//! ```

use std::io::{self, Write};

use super::bbolt::{fnv1a64, BRANCH, BUCKET_VALUE, ELEMENT, LEAF, MAGIC, PAGE_HEADER, VERSION};

pub const PAGE_SIZE: usize = 4096;
const META: u16 = 0x04;
const FREELIST: u16 = 0x10;
const FREELIST_PAGE: u64 = 2;
const FIRST_DATA_PAGE: u64 = 3;

/// Where the root bucket is and how many pages the database has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub root: u64,
    pub pages: u64,
}

/// Pages gathered before they go to the output in one write.
const OUTPUT_BYTES: usize = 1 << 20;

/// Writes the body of a database: pages 3 on, in order.
pub struct Writer<W: Write> {
    out: W,
    /// Pages encoded but not yet written to `out`.
    pending: Vec<u8>,
    next: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer { out, pending: Vec::with_capacity(OUTPUT_BYTES + PAGE_SIZE), next: FIRST_DATA_PAGE }
    }

    /// Writes one node as a page (and its overflow pages); returns its id.
    fn page(&mut self, node: &Node) -> io::Result<u64> {
        let id = self.next;
        let span = node.size().div_ceil(PAGE_SIZE).max(1);
        self.next += span as u64;
        let start = self.pending.len();
        self.pending.resize(start + span * PAGE_SIZE, 0);
        node.encode(&mut self.pending[start..], id, span);
        if self.pending.len() >= OUTPUT_BYTES {
            self.out.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(id)
    }

    /// Adds the root bucket, whose entries are the top-level buckets (name,
    /// root page) in name order; returns the plan and the output.
    pub fn finish(mut self, buckets: &[(&[u8], u64)]) -> io::Result<(Plan, W)> {
        let mut root = Tree::default();
        for (name, page) in buckets {
            let mut header = page.to_le_bytes().to_vec();
            header.extend_from_slice(&0u64.to_le_bytes());
            root.add(&mut self, name, &header, BUCKET_VALUE)?;
        }
        let root = root.finish(&mut self)?;
        self.out.write_all(&self.pending)?;
        self.out.flush()?;
        Ok((Plan { root, pages: self.next }, self.out))
    }
}

/// The first three pages of the database `plan` describes: the two meta
/// pages and the freelist, empty since every page is in use.
pub fn head(plan: Plan) -> Vec<u8> {
    let mut pages = meta_page(0, plan);
    pages.extend_from_slice(&meta_page(1, plan));
    let mut freelist = vec![0u8; PAGE_SIZE];
    header(&mut freelist, FREELIST_PAGE, FREELIST, 0, 0);
    pages.extend_from_slice(&freelist);
    pages
}

fn header(page: &mut [u8], id: u64, flags: u16, count: u16, overflow: u32) {
    page[0..8].copy_from_slice(&id.to_le_bytes());
    page[8..10].copy_from_slice(&flags.to_le_bytes());
    page[10..12].copy_from_slice(&count.to_le_bytes());
    page[12..16].copy_from_slice(&overflow.to_le_bytes());
}

fn meta_page(id: u64, plan: Plan) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    header(&mut page, id, META, 0, 0);
    let meta = &mut page[PAGE_HEADER..];
    meta[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    meta[4..8].copy_from_slice(&VERSION.to_le_bytes());
    meta[8..12].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
    meta[16..24].copy_from_slice(&plan.root.to_le_bytes());
    meta[32..40].copy_from_slice(&FREELIST_PAGE.to_le_bytes());
    meta[40..48].copy_from_slice(&plan.pages.to_le_bytes());
    meta[48..56].copy_from_slice(&id.to_le_bytes());
    let sum = fnv1a64(&meta[..56]);
    meta[56..64].copy_from_slice(&sum.to_le_bytes());
    page
}

/// One entry of a node: a leaf's key and value (with flags), or a branch's
/// first key of a child and the child's page. Keys and values are in the
/// node's `data`, one after another.
struct Element {
    flags: u32,
    key_len: u32,
    value_len: u32,
    child: u64,
}

/// A page being filled.
struct Node {
    leaf: bool,
    elements: Vec<Element>,
    data: Vec<u8>,
}

impl Node {
    fn new(leaf: bool) -> Node {
        Node { leaf, elements: Vec::new(), data: Vec::new() }
    }

    /// Bytes the page needs: header, elements, keys and values.
    fn size(&self) -> usize {
        PAGE_HEADER + self.elements.len() * ELEMENT + self.data.len()
    }

    fn fits(&self, key: &[u8], value: &[u8]) -> bool {
        self.elements.is_empty() || self.size() + ELEMENT + key.len() + value.len() <= PAGE_SIZE
    }

    /// The key of the first entry.
    fn first_key(&self) -> &[u8] {
        self.elements.first().map_or(&[], |e| &self.data[..e.key_len as usize])
    }

    fn push(&mut self, key: &[u8], value: &[u8], flags: u32, child: u64) {
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
        self.elements.push(Element { flags, key_len: key.len() as u32, value_len: value.len() as u32, child });
    }

    fn clear(&mut self) {
        self.elements.clear();
        self.data.clear();
    }

    /// Encodes the node into `page`, zeroed and `span` pages long.
    fn encode(&self, page: &mut [u8], id: u64, span: usize) {
        let count = self.elements.len();
        let (flags, overflow) = (if self.leaf { LEAF } else { BRANCH }, (span - 1) as u32);
        header(page, id, flags, count as u16, overflow);
        let data_start = PAGE_HEADER + count * ELEMENT;
        page[data_start..data_start + self.data.len()].copy_from_slice(&self.data);
        let mut data = data_start;
        for (i, entry) in self.elements.iter().enumerate() {
            let at = PAGE_HEADER + i * ELEMENT;
            let pos = (data - at) as u32;
            let element = &mut page[at..at + ELEMENT];
            if self.leaf {
                element[0..4].copy_from_slice(&entry.flags.to_le_bytes());
                element[4..8].copy_from_slice(&pos.to_le_bytes());
                element[8..12].copy_from_slice(&entry.key_len.to_le_bytes());
                element[12..16].copy_from_slice(&entry.value_len.to_le_bytes());
            } else {
                element[0..4].copy_from_slice(&pos.to_le_bytes());
                element[4..8].copy_from_slice(&entry.key_len.to_le_bytes());
                element[8..16].copy_from_slice(&entry.child.to_le_bytes());
            }
            data += (entry.key_len + entry.value_len) as usize;
        }
    }
}

/// A bucket's tree, built from entries in key order: `levels[0]` is the
/// leaf being filled, `levels[i]` the branch above, with how many pages
/// each level has written.
#[derive(Default)]
pub struct Tree {
    levels: Vec<(Node, u64)>,
}

impl Tree {
    /// Adds a plain entry; keys must come in increasing byte order.
    pub fn put<W: Write>(&mut self, writer: &mut Writer<W>, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.add(writer, key, value, 0)
    }

    fn add<W: Write>(&mut self, writer: &mut Writer<W>, key: &[u8], value: &[u8], flags: u32) -> io::Result<()> {
        if key.is_empty() || u32::try_from(value.len()).is_err() {
            return Err(io::Error::other("a bbolt key is not empty and a value is under 4 GiB"));
        }
        self.push(writer, 0, key, value, flags, 0)
    }

    /// Adds an entry at `level`, writing the node there out first if full.
    fn push<W: Write>(
        &mut self,
        writer: &mut Writer<W>,
        level: usize,
        key: &[u8],
        value: &[u8],
        flags: u32,
        child: u64,
    ) -> io::Result<()> {
        if self.levels.len() == level {
            self.levels.push((Node::new(level == 0), 0));
        }
        if !self.levels[level].0.fits(key, value) {
            self.close(writer, level)?;
        }
        self.levels[level].0.push(key, value, flags, child);
        Ok(())
    }

    /// Writes the node at `level` and adds it to the level above.
    fn close<W: Write>(&mut self, writer: &mut Writer<W>, level: usize) -> io::Result<()> {
        let (node, written) = &mut self.levels[level];
        let page = writer.page(node)?;
        *written += 1;
        let key = node.first_key().to_vec();
        node.clear();
        self.push(writer, level + 1, &key, &[], 0, page)
    }

    /// Writes what is left; returns the root page.
    pub fn finish<W: Write>(mut self, writer: &mut Writer<W>) -> io::Result<u64> {
        if self.levels.is_empty() {
            // An empty bucket: one empty leaf.
            return writer.page(&Node::new(true));
        }
        let mut level = 0;
        loop {
            let top = level + 1 == self.levels.len();
            let (node, written) = &self.levels[level];
            if top && *written == 0 {
                // The only node of the highest level is the root; a branch
                // with one child is left out for the child.
                return match (node.leaf, node.elements.as_slice()) {
                    (false, [only]) => Ok(only.child),
                    _ => writer.page(node),
                };
            }
            if !node.elements.is_empty() {
                self.close(writer, level)?;
            }
            level += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::bbolt::{Db, Item};
    use super::*;

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn build(buckets: &[(&[u8], Entries)]) -> Vec<u8> {
        let mut writer = Writer::new(Vec::new());
        let mut roots = Vec::new();
        for (name, entries) in buckets {
            let mut tree = Tree::default();
            for (k, v) in entries {
                tree.put(&mut writer, k, v).expect("put");
            }
            roots.push((*name, tree.finish(&mut writer).expect("finish")));
        }
        let (plan, body) = writer.finish(&roots).expect("finish");
        let mut out = head(plan);
        out.extend_from_slice(&body);
        assert_eq!(out.len() as u64, plan.pages * PAGE_SIZE as u64);
        out
    }

    fn read(data: Vec<u8>) -> Vec<(Vec<u8>, Entries)> {
        let len = data.len() as u64;
        let db = Db::open(data.into_boxed_slice(), len).expect("open");
        let mut buckets = Vec::new();
        db.for_each(&db.root(), &mut |name, item| {
            if let Item::Bucket(b) = item {
                buckets.push((name.to_vec(), b));
            }
            Ok(())
        })
        .expect("root");
        buckets
            .into_iter()
            .map(|(name, bucket)| {
                let mut entries = Vec::new();
                db.for_each(&bucket, &mut |k, item| {
                    if let Item::Value(v) = item {
                        entries.push((k.to_vec(), v.to_vec()));
                    }
                    Ok(())
                })
                .expect("bucket");
                (name, entries)
            })
            .collect()
    }

    #[test]
    fn what_is_written_reads_back_in_order() {
        let many: Entries =
            (0..50_000u32).map(|i| (i.to_be_bytes().to_vec(), format!("value {i}").into_bytes())).collect();
        let big = vec![(b"big".to_vec(), vec![7u8; 3 * PAGE_SIZE + 5]), (b"small".to_vec(), b"s".to_vec())];
        let buckets: Vec<(&[u8], Entries)> =
            vec![(b"a-empty", Vec::new()), (b"big", big), (b"key", many), (b"one", vec![(b"k".to_vec(), vec![])])];
        let read_back = read(build(&buckets));
        let expected: Vec<(Vec<u8>, Entries)> =
            buckets.into_iter().map(|(name, entries)| (name.to_vec(), entries)).collect();
        assert_eq!(read_back, expected);
    }

    #[test]
    fn a_database_without_buckets_is_four_pages() {
        let data = build(&[]);
        assert_eq!(data.len(), 4 * PAGE_SIZE);
        assert!(read(data).is_empty());
    }
}
