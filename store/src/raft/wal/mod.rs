//! The Raft log on disk, apart from RocksDB: append-only segment files of
//! checksummed records in the member's `wal` directory, as etcd keeps its
//! WAL. An append is one `pwrite` into a preallocated segment and one
//! `fdatasync`; nothing is copied again later (no memtable, no flush, no
//! compaction), and the state machine's RocksDB writes no longer ride on the
//! log's fsync.
//!
//! The log's whole state is a replay of the records in order: entries,
//! votes, truncations and purges. Each new segment starts with the vote and
//! the purge marker as they stand, so segments whose entries are all purged
//! are deleted whole.
//!
//! Only the last segment may end in a torn record (a crash during a write
//! that was never acknowledged): opening drops it and zeroes the rest of the
//! file, so nothing stale can ever follow newer records. A segment is synced
//! before the next is begun, so a bad record anywhere else is corruption and
//! the log refuses to open.

pub mod from_rocksdb;
pub mod index;
pub mod record;
pub mod segment;

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use index::{Durable, Located, Place};
use record::{Kind, Read};

use crate::storage::StorageError;

/// etcd's segment size.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// One change to the log, as the writer is handed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// bincode `Entry` at `index`.
    Entry { index: u64, bytes: Vec<u8> },
    /// bincode `Vote`.
    Vote(Vec<u8>),
    /// Entries at this index and after are gone.
    Truncate(u64),
    /// Entries up to `index` are gone; `bytes` is the bincode `LogId` purged.
    Purge { index: u64, bytes: Vec<u8> },
}

/// What is on disk, shared between the writer and readers.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<Durable>>);

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Durable> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writing end of the log; one per member, owned by its writer thread.
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    /// The segment being written, where its data ends, and its newest entry.
    seq: u64,
    file: Arc<File>,
    len: u64,
    newest: Option<u64>,
    /// Where the current segment's opening records (vote, purge marker) end.
    opening: u64,
    /// Earlier segments, oldest first, with their newest entry.
    older: VecDeque<(u64, Option<u64>)>,
    /// The vote and purge marker as the records written so far leave them.
    vote: Option<Vec<u8>>,
    last_purged: Option<(u64, Vec<u8>)>,
    shared: Shared,
    buf: Vec<u8>,
    /// A write failed: where the data ends is unknown, so nothing more is written.
    failed: bool,
    /// Removing the files of purged segments (see `remove_purged`).
    cleaner: Option<std::thread::JoinHandle<()>>,
}

/// A change to apply to [`Durable`] once the records saying it are synced.
enum Change {
    Put(u64, Place),
    Truncate(u64),
    Purge(u64, Vec<u8>),
    Vote(Vec<u8>),
    File(u64, Arc<File>),
}

impl Wal {
    /// Opens the log in `dir`, replaying every segment (making the first if there is none).
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<Wal, StorageError> {
        std::fs::create_dir_all(dir).map_err(StorageError::io(dir))?;
        let mut seqs = segment::list(dir)?;
        if seqs.is_empty() {
            segment::create(dir, 1, segment_bytes)?;
            seqs.push(1);
        }
        let mut durable = Durable::default();
        let mut older = VecDeque::new();
        let mut tail = None;
        for (i, &seq) in seqs.iter().enumerate() {
            let last = i + 1 == seqs.len();
            let (file, len, newest) = replay_segment(dir, seq, last, &mut durable)?;
            let file = Arc::new(file);
            durable.add_file(seq, file.clone());
            if last {
                tail = Some((seq, file, len, newest));
            } else {
                older.push_back((seq, newest));
            }
        }
        let (seq, file, len, newest) = tail.expect("invariant: there is at least one segment");
        let last_purged = durable.last_purged.clone();
        Ok(Wal {
            dir: dir.to_path_buf(),
            segment_bytes,
            seq,
            file,
            len,
            newest,
            opening: 0,
            older,
            vote: durable.vote.clone(),
            last_purged,
            shared: Shared(Arc::new(Mutex::new(durable))),
            buf: Vec::new(),
            failed: false,
            cleaner: None,
        })
    }

    pub fn shared(&self) -> Shared {
        self.shared.clone()
    }

    /// Writes `ops` in order and makes them durable, then publishes them to readers.
    pub fn write(&mut self, ops: &[Op]) -> Result<(), StorageError> {
        if self.failed {
            return Err(StorageError::corrupt("raft log", "an earlier write failed"));
        }
        let written = self.write_records(ops);
        let changes = match written {
            Ok(changes) => changes,
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        let purged = {
            let mut durable = self.shared.lock();
            for change in changes {
                match change {
                    Change::Put(index, place) => durable
                        .put(index, place)
                        .map_err(|gap| StorageError::corrupt("raft log", format!("{gap:?}")))?,
                    Change::Truncate(from) => durable.truncate(from),
                    Change::Purge(index, bytes) => {
                        durable.purge(index);
                        durable.last_purged = Some((index, bytes));
                    }
                    Change::Vote(bytes) => durable.vote = Some(bytes),
                    Change::File(seq, file) => durable.add_file(seq, file),
                }
            }
            durable.last_purged.as_ref().map(|(index, _)| *index)
        };
        match purged {
            Some(upto) if ops.iter().any(|op| matches!(op, Op::Purge { .. })) => self.remove_purged(upto),
            _ => Ok(()),
        }
    }

    fn write_records(&mut self, ops: &[Op]) -> Result<Vec<Change>, StorageError> {
        let mut changes = Vec::with_capacity(ops.len());
        self.buf.clear();
        for op in ops {
            let size = record::HEADER as u64 + 1 + body_len(op);
            let end = self.len + self.buf.len() as u64;
            // A record larger than a whole segment gets a segment of its own, grown to fit.
            if end + size > self.segment_bytes && end > self.opening {
                self.flush()?;
                changes.push(self.rotate()?);
            }
            changes.push(self.encode(op));
        }
        self.flush()?;
        Ok(changes)
    }

    /// Encodes one op into the buffer and says what it changes.
    fn encode(&mut self, op: &Op) -> Change {
        match op {
            Op::Entry { index, bytes } => {
                let offset = self.len + self.buf.len() as u64;
                record::encode(&mut self.buf, Kind::Entry, &[&index.to_le_bytes(), bytes]);
                let size = (self.len + self.buf.len() as u64 - offset) as u32;
                self.newest = Some(self.newest.map_or(*index, |n| n.max(*index)));
                Change::Put(*index, Place { seq: self.seq, offset, size })
            }
            Op::Vote(bytes) => {
                record::encode(&mut self.buf, Kind::Vote, &[bytes]);
                self.vote = Some(bytes.clone());
                Change::Vote(bytes.clone())
            }
            Op::Truncate(from) => {
                record::encode(&mut self.buf, Kind::Truncate, &[&from.to_le_bytes()]);
                Change::Truncate(*from)
            }
            Op::Purge { index, bytes } => {
                record::encode(&mut self.buf, Kind::Purge, &[&index.to_le_bytes(), bytes]);
                self.last_purged = Some((*index, bytes.clone()));
                Change::Purge(*index, bytes.clone())
            }
        }
    }

    /// Writes the buffer at the end of the current segment and syncs it.
    fn flush(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = segment::path(&self.dir, self.seq);
        crate::failpoints::io("wal-write")
            .and_then(|()| self.file.write_all_at(&self.buf, self.len))
            .map_err(StorageError::io(&path))?;
        let started = std::time::Instant::now();
        crate::failpoints::io("wal-fsync").and_then(|()| self.file.sync_data()).map_err(StorageError::io(&path))?;
        crate::metrics::WAL_FSYNC.observe(started.elapsed());
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Begins the next segment with the vote and purge marker as they stand.
    fn rotate(&mut self) -> Result<Change, StorageError> {
        let seq = self.seq + 1;
        let file = Arc::new(segment::create(&self.dir, seq, self.segment_bytes)?);
        self.older.push_back((self.seq, self.newest));
        (self.seq, self.file, self.len, self.newest) = (seq, file.clone(), 0, None);
        // Restating what readers already have: the changes are not needed.
        if let Some((index, bytes)) = self.last_purged.clone() {
            self.encode(&Op::Purge { index, bytes });
        }
        if let Some(vote) = self.vote.clone() {
            self.encode(&Op::Vote(vote));
        }
        self.opening = self.buf.len() as u64;
        Ok(Change::File(seq, file))
    }

    /// Deletes the oldest segments whose entries are all purged. Readers
    /// stop finding them at once; the files go on another thread, as
    /// unlinking 64 MiB takes this disk 13-16 ms that appends would wait
    /// for. A crash before they are gone leaves segments the purge marker
    /// already covers, which opening the log copes with.
    fn remove_purged(&mut self, upto: u64) -> Result<(), StorageError> {
        let mut gone = Vec::new();
        while let Some(&(seq, newest)) = self.older.front() {
            if newest.is_some_and(|n| n > upto) {
                break;
            }
            self.older.pop_front();
            self.shared.lock().remove_file(seq);
            gone.push(seq);
        }
        if gone.is_empty() {
            return Ok(());
        }
        let dir = self.dir.clone();
        let remove = move || {
            let removed = gone.iter().try_for_each(|seq| segment::remove(&dir, *seq));
            if let Err(e) = removed.and_then(|()| segment::sync_dir(&dir)) {
                tracing::warn!(error = %e, "removing purged raft log segments");
            }
        };
        self.wait_cleaned();
        let cleaner = std::thread::Builder::new().name("raft-log-cleaner".into()).spawn(remove);
        self.cleaner = Some(cleaner.map_err(StorageError::io(&self.dir))?);
        Ok(())
    }

    /// Waits until the purged segments are gone from the disk.
    pub fn wait_cleaned(&mut self) {
        if let Some(cleaner) = self.cleaner.take() {
            let _ = cleaner.join();
        }
    }
}

fn body_len(op: &Op) -> u64 {
    (match op {
        Op::Entry { bytes, .. } | Op::Purge { bytes, .. } => 8 + bytes.len(),
        Op::Vote(bytes) => bytes.len(),
        Op::Truncate(_) => 8,
    }) as u64
}

/// Replays one segment into `durable`: returns the file, where its data
/// ends, and its newest entry. The segment is read a window at a time, not
/// whole: a 64 MiB read at start would stay in the allocator long after.
fn replay_segment(
    dir: &Path,
    seq: u64,
    last: bool,
    durable: &mut Durable,
) -> Result<(File, u64, Option<u64>), StorageError> {
    let path = segment::path(dir, seq);
    let file = segment::open(dir, seq)?;
    let mut window = Window::new(&file).map_err(StorageError::io(&path))?;
    let corrupt = |what: &str, at: u64| StorageError::corrupt("raft log", format!("{what} at {}:{at}", path.display()));
    let (mut at, mut newest) = (0u64, None);
    loop {
        let bytes = window.record_at(at).map_err(StorageError::io(&path))?;
        let found = match record::decode(bytes) {
            Read::Record(found) => found,
            Read::End => break,
            Read::Torn if last => break,
            Read::Torn => return Err(corrupt("a damaged record", at)),
        };
        let number = record::leading_u64(found.body);
        match (found.kind, number) {
            (Kind::Entry, Some(index)) => {
                let place = Place { seq, offset: at, size: found.size as u32 };
                durable.put(index, place).map_err(|gap| corrupt(&format!("{gap:?}"), at))?;
                newest = Some(newest.map_or(index, |n: u64| n.max(index)));
            }
            (Kind::Vote, _) => durable.vote = Some(found.body.to_vec()),
            (Kind::Truncate, Some(from)) => durable.truncate(from),
            (Kind::Purge, Some(index)) => {
                durable.purge(index);
                durable.last_purged = Some((index, found.body[8..].to_vec()));
            }
            _ => return Err(corrupt("a record too short for its kind", at)),
        }
        at += found.size as u64;
    }
    if !window.zero_from(at).map_err(StorageError::io(&path))? {
        // A torn write: nothing acknowledged is past `at`. Zero the rest so
        // that no stale record can ever be read after newer ones.
        tracing::warn!(segment = %path.display(), at, "raft log ends in a torn write; dropping it");
        zero_from(&file, at, window.len).map_err(StorageError::io(&path))?;
    }
    Ok((file, at, newest))
}

/// A segment read in windows of a few megabytes.
struct Window<'f> {
    file: &'f File,
    len: u64,
    /// The file offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
}

/// Small under test, so that the tests' records cross window boundaries.
const WINDOW_BYTES: u64 = if cfg!(test) { 4 << 10 } else { 4 << 20 };

impl<'f> Window<'f> {
    fn new(file: &'f File) -> std::io::Result<Window<'f>> {
        Ok(Window { file, len: file.metadata()?.len(), start: 0, buf: Vec::new() })
    }

    /// The bytes from `at` on, enough of them to hold the whole record that
    /// starts there (as far as the file goes).
    fn record_at(&mut self, at: u64) -> std::io::Result<&[u8]> {
        self.cover(at, record::HEADER as u64)?;
        let head = &self.buf[(at - self.start) as usize..];
        if head.len() >= record::HEADER {
            let length = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
            self.cover(at, record::HEADER as u64 + length)?;
        }
        Ok(&self.buf[(at - self.start) as usize..])
    }

    /// Makes the buffer hold `need` bytes from `at`, or up to the end of the file.
    fn cover(&mut self, at: u64, need: u64) -> std::io::Result<()> {
        let want_end = (at + need.max(WINDOW_BYTES)).min(self.len);
        let have_end = self.start + self.buf.len() as u64;
        if at >= self.start && (at + need).min(self.len) <= have_end {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize((want_end - at) as usize, 0);
        self.file.read_exact_at(&mut buf, at)?;
        (self.start, self.buf) = (at, buf);
        Ok(())
    }

    /// Whether everything from `at` to the end of the file is zeros.
    fn zero_from(&mut self, at: u64) -> std::io::Result<bool> {
        let mut from = at;
        while from < self.len {
            self.cover(from, WINDOW_BYTES)?;
            let chunk = &self.buf[(from - self.start) as usize..];
            if chunk.iter().any(|b| *b != 0) {
                return Ok(false);
            }
            from += chunk.len() as u64;
        }
        Ok(true)
    }
}

fn zero_from(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64);
        file.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    file.sync_data()
}

/// Reads an entry's record and hands its bincode bytes to `decode`.
pub fn read_entry<T>(
    located: &Located,
    decode: impl FnOnce(&[u8]) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let mut bytes = vec![0u8; located.size as usize];
    located.file.read_exact_at(&mut bytes, located.offset).map_err(StorageError::io("raft log segment"))?;
    match record::decode(&bytes) {
        Read::Record(found) if found.kind == Kind::Entry && found.body.len() >= 8 => decode(&found.body[8..]),
        _ => Err(StorageError::corrupt("raft log", format!("no entry record at offset {}", located.offset))),
    }
}

#[cfg(test)]
mod wal_test;
