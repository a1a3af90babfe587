//! `Maintenance.Snapshot`: the state at one point in time as a bbolt
//! database in etcd's layout ([`super::to_etcd`]), streamed in chunks from a
//! RocksDB snapshot on a blocking thread, then its SHA-256, as etcd streams
//! its backend.

use std::io::Write;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::mvcc::KvStore;
use crate::storage::StorageError;

/// Bytes per streamed message.
pub const CHUNK_BYTES: usize = 64 << 10;
/// Chunks buffered ahead of a slow client.
const AHEAD: usize = 16;

/// Sends what is written to it in chunks, hashing as it goes.
struct ChunkSender {
    tx: mpsc::Sender<Result<(Vec<u8>, bool), StorageError>>,
    buf: Vec<u8>,
    sha: Sha256,
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
                let sender = ChunkSender { tx: tx.clone(), buf: Vec::with_capacity(CHUNK_BYTES), sha: Sha256::new() };
                // Beside the database, on the same disk.
                let scratch = db.path().parent().unwrap_or(db.path()).to_path_buf();
                let mut sender = super::to_etcd::write(&db, &view, &scratch, sender)?;
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
