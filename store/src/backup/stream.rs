//! `Maintenance.Snapshot`: the state at one point in time, streamed in
//! chunks from a RocksDB snapshot on a blocking thread, then its SHA-256.

use std::io::Write;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::mvcc::KvStore;
use crate::raft::snapshot;
use crate::storage::StorageError;

/// Bytes per streamed message.
pub const CHUNK_BYTES: usize = 64 << 10;
/// Chunks buffered ahead of a slow client.
const AHEAD: usize = 16;
/// etcd's snapshots are whole database pages, and `etcdctl snapshot save`
/// refuses a file whose length is not pages plus the 32-byte checksum; the
/// snapshot is padded with zeros to a multiple of this.
const PAGE: u64 = 512;

/// Sends what is written to it in chunks, hashing as it goes.
struct ChunkSender {
    tx: mpsc::Sender<Result<(Vec<u8>, bool), StorageError>>,
    buf: Vec<u8>,
    sha: Sha256,
    written: u64,
}

impl ChunkSender {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(Ok((chunk, false)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "snapshot client went away"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.sha.update(data);
        self.buf.extend_from_slice(data);
        self.written += data.len() as u64;
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts streaming the current state as (bytes, last) messages; the last
/// one is the SHA-256 of all before it. An error ends the stream.
pub fn stream(kv: Arc<KvStore>) -> mpsc::Receiver<Result<(Vec<u8>, bool), StorageError>> {
    let (tx, rx) = mpsc::channel(AHEAD);
    let spawned = std::thread::Builder::new().name("snapshot-stream".into()).spawn({
        let tx = tx.clone();
        move || {
            let db = kv.db().clone();
            let result = (|| -> Result<(), StorageError> {
                // Not while a received Raft snapshot replaces the state.
                let view = {
                    let _shared = kv.shared();
                    db.snapshot()
                };
                let meta = snapshot::meta_of(&db, &view)?;
                let sender = ChunkSender {
                    tx: tx.clone(),
                    buf: Vec::with_capacity(CHUNK_BYTES),
                    sha: Sha256::new(),
                    written: 0,
                };
                let mut sender = snapshot::dump(&db, &view, &meta, sender, "snapshot stream")?;
                let padding = (PAGE - sender.written % PAGE) % PAGE;
                sender.write_all(&vec![0u8; padding as usize]).map_err(StorageError::io("snapshot stream"))?;
                sender.send().map_err(StorageError::io("snapshot stream"))?;
                let digest = sender.sha.finalize().to_vec();
                tx.blocking_send(Ok((digest, true)))
                    .map_err(|_| StorageError::io("snapshot stream")(std::io::ErrorKind::BrokenPipe.into()))
            })();
            if let Err(e) = result {
                tracing::warn!(error = %e, "snapshot stream ended early");
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    if let Err(e) = spawned {
        let _ = tx.try_send(Err(StorageError::io("snapshot stream thread")(e)));
    }
    rx
}
