//! The outgoing side of one gRPC watch stream: an ordered queue shared by all
//! of the stream's watchers. Event responses are counted and refused once
//! [`STREAM_BUFFER`] are waiting, which is how a slow client is detected;
//! control responses (created, canceled, progress) always go in, in order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use shoal_proto::etcdserverpb::WatchResponse;
use tokio::sync::mpsc;

/// Event responses a stream may have waiting before its watchers fall back to catching up.
pub const STREAM_BUFFER: usize = 128;

/// A response on its way out, with what the sender must still do to it.
#[derive(Debug)]
pub struct Outgoing {
    pub response: WatchResponse,
    /// Fill `prev_kv` on the events.
    pub prev_kv: bool,
    /// Split into fragments when larger than the request limit.
    pub fragment: bool,
    counted: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Queued,
    /// The stream has too much waiting; try later.
    Full,
    /// The client is gone.
    Closed,
}

pub struct StreamHandle {
    pub id: u64,
    tx: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<AtomicUsize>,
}

pub struct StreamReceiver {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<AtomicUsize>,
}

pub fn channel(id: u64) -> (Arc<StreamHandle>, StreamReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (Arc::new(StreamHandle { id, tx, queued: queued.clone() }), StreamReceiver { rx, queued })
}

impl StreamHandle {
    pub fn has_room(&self) -> bool {
        self.queued.load(Ordering::Acquire) < STREAM_BUFFER
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Queues an event response unless the stream is backed up.
    pub fn send_events(&self, response: WatchResponse, prev_kv: bool, fragment: bool) -> Sent {
        if self.tx.is_closed() {
            return Sent::Closed;
        }
        if !self.has_room() {
            return Sent::Full;
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        match self.tx.send(Outgoing { response, prev_kv, fragment, counted: true }) {
            Ok(()) => Sent::Queued,
            Err(_) => Sent::Closed,
        }
    }

    /// Queues a control response; returns false when the client is gone.
    pub fn send_control(&self, response: WatchResponse) -> bool {
        self.tx.send(Outgoing { response, prev_kv: false, fragment: false, counted: false }).is_ok()
    }
}

impl StreamReceiver {
    pub async fn recv(&mut self) -> Option<Outgoing> {
        let out = self.rx.recv().await?;
        if out.counted {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        Some(out)
    }
}
