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
/// Control responses a stream may have waiting before its requests are no longer read.
pub const CONTROL_BUFFER: usize = 128;

/// A response on its way out, with what the sender must still do to it.
#[derive(Debug)]
pub struct Outgoing {
    pub response: WatchResponse,
    /// Fill `prev_kv` on the events.
    pub prev_kv: bool,
    /// Split into fragments when larger than the request limit.
    pub fragment: bool,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Event,
    Control,
}

/// What is waiting in a stream's queue.
#[derive(Default)]
struct Backlog {
    events: AtomicUsize,
    control: AtomicUsize,
    /// Signalled whenever a control response leaves the queue.
    drained: tokio::sync::Notify,
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
    backlog: Arc<Backlog>,
}

pub struct StreamReceiver {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    backlog: Arc<Backlog>,
}

pub fn channel(id: u64) -> (Arc<StreamHandle>, StreamReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let backlog = Arc::new(Backlog::default());
    (Arc::new(StreamHandle { id, tx, backlog: backlog.clone() }), StreamReceiver { rx, backlog })
}

impl StreamHandle {
    pub fn has_room(&self) -> bool {
        self.backlog.events.load(Ordering::Acquire) < STREAM_BUFFER
    }

    /// Waits while the client leaves too many control responses unread, so
    /// that a client sending requests without reading cannot grow the queue.
    pub async fn wait_for_room(&self) {
        while self.backlog.control.load(Ordering::Acquire) >= CONTROL_BUFFER {
            self.backlog.drained.notified().await;
        }
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
        self.backlog.events.fetch_add(1, Ordering::AcqRel);
        match self.tx.send(Outgoing { response, prev_kv, fragment, kind: Kind::Event }) {
            Ok(()) => Sent::Queued,
            Err(_) => Sent::Closed,
        }
    }

    /// Queues a control response; returns false when the client is gone.
    pub fn send_control(&self, response: WatchResponse) -> bool {
        self.backlog.control.fetch_add(1, Ordering::AcqRel);
        self.tx.send(Outgoing { response, prev_kv: false, fragment: false, kind: Kind::Control }).is_ok()
    }
}

impl StreamReceiver {
    /// A queued response, without waiting.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        let out = self.rx.try_recv().ok()?;
        self.taken(&out);
        Some(out)
    }

    fn taken(&self, out: &Outgoing) {
        match out.kind {
            Kind::Event => {
                self.backlog.events.fetch_sub(1, Ordering::AcqRel);
            }
            Kind::Control => {
                self.backlog.control.fetch_sub(1, Ordering::AcqRel);
                self.backlog.drained.notify_one();
            }
        }
    }

    pub async fn recv(&mut self) -> Option<Outgoing> {
        let out = self.rx.recv().await?;
        self.taken(&out);
        Some(out)
    }
}
