//! Two cores for one stream of work: a thread of its own produces batches
//! (reading a store or a file) and hands them, in order, to the calling
//! thread, which writes them. Memory is bounded by the batches in flight.
//!
//! [`pipelined`] carries rows (family, key, value) batched in one buffer;
//! [`pipelined_batches`] carries whatever batch its caller builds.

use std::sync::mpsc::sync_channel;

use super::from_etcd::Row;
use crate::storage::StorageError;

/// Rows a batch holds at most.
const BATCH_ROWS: usize = 1024;
/// Bytes of keys and values after which a batch goes, whatever its rows.
const BATCH_BYTES: usize = 1 << 20;
/// Batches produced ahead of the writer.
const AHEAD: usize = 4;

/// Rows in one buffer: (family, where the key ends, where the value ends).
#[derive(Default)]
struct Batch {
    rows: Vec<(&'static str, usize, usize)>,
    bytes: Vec<u8>,
}

impl Batch {
    fn push(&mut self, family: &'static str, key: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.rows.push((family, key_end, self.bytes.len()));
    }

    fn is_full(&self) -> bool {
        self.rows.len() >= BATCH_ROWS || self.bytes.len() >= BATCH_BYTES
    }

    fn each(&self, put: Row<'_>) -> Result<(), StorageError> {
        let mut start = 0;
        for &(family, key_end, value_end) in &self.rows {
            put(family, &self.bytes[start..key_end], &self.bytes[key_end..value_end])?;
            start = value_end;
        }
        Ok(())
    }
}

/// Runs `produce` on a thread of its own and gives every row it emits to
/// `put` on this one, in order. A failure to write is the error returned
/// (the producer then stops at its next row); else the producer's.
pub fn pipelined<E>(produce: impl FnOnce(Row<'_>) -> Result<(), E> + Send, put: Row<'_>) -> Result<(), E>
where
    E: From<StorageError> + Send,
{
    pipelined_batches(
        |send| {
            let mut batch = Batch::default();
            produce(&mut |family, key, value| {
                batch.push(family, key, value);
                if batch.is_full() {
                    send(std::mem::take(&mut batch))?;
                }
                Ok(())
            })?;
            send(batch).map_err(E::from)
        },
        &mut |batch: Batch| batch.each(put),
    )
}

/// Hands one batch to the writer; fails once the writer has stopped.
pub type Handoff<'f, B> = &'f mut dyn FnMut(B) -> Result<(), StorageError>;

/// Runs `produce` on a thread of its own and gives every batch it sends to
/// `write` on this one, in order. A failure to write is the error returned
/// (the producer's next send then fails); else the producer's.
pub fn pipelined_batches<B, E>(
    produce: impl FnOnce(Handoff<'_, B>) -> Result<(), E> + Send,
    write: &mut dyn FnMut(B) -> Result<(), StorageError>,
) -> Result<(), E>
where
    B: Send,
    E: From<StorageError> + Send,
{
    let (tx, rx) = sync_channel::<B>(AHEAD);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            // Only a writer that stopped drops its end.
            produce(&mut |batch| tx.send(batch).map_err(|_| StorageError::corrupt("pipeline", "writer stopped")))
        });
        // Stops (dropping `rx`) at the first failure.
        let written = rx.iter().try_for_each(&mut *write);
        drop(rx);
        let produced =
            producer.join().unwrap_or_else(|_| Err(StorageError::corrupt("pipeline", "reader panicked").into()));
        written.map_err(E::from).and(produced)
    })
}
