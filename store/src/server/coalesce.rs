//! Fewer, larger socket writes for HTTP/2 connections under load.
//!
//! Each gRPC answer is written by its own task, and every one of them wakes
//! the connection's task, which the runtime runs next. Left alone, the
//! connection flushes after each answer: a batch of 30 writes answered at
//! once becomes 30 `writev` calls, and as many wake-ups of the client.
//! [`CoalescedWrites`] keeps what the connection writes in a buffer and, when
//! asked to flush, first lets every task the runtime has ready run (tokio's
//! `yield_now` defers the wake-up until the worker has nothing else to do, or
//! until its next periodic check of the I/O driver). Whatever the other
//! answers add meanwhile goes out in the same write. grpc-go's server does
//! the same: its writer flushes only when no frame is left to send.
//!
//! An idle server flushes at once (the worker has nothing else to run); the
//! cost there is one extra non-blocking poll of the I/O driver.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffered bytes past which a write goes out before more are taken.
const MAX_BUFFERED: usize = 256 << 10;
/// A buffer that grew past this is freed once written, so that idle
/// connections hold little.
const KEPT_CAPACITY: usize = 4 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Taking writes; no flush asked for yet.
    Buffering,
    /// A flush was asked for; waiting for the worker to run out of ready tasks.
    Deferred,
    /// Writing the buffer out.
    Draining,
}

/// Fires when the runtime gets round to the deferred wake-up, then wakes the
/// connection's task.
#[derive(Default)]
struct Turn {
    came: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Turn {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.came.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// A stream whose writes are held until a flush, and whose flushes wait for
/// the runtime's other ready tasks. Reads pass straight through.
pub struct CoalescedWrites<S> {
    inner: S,
    buffer: Vec<u8>,
    /// How much of `buffer` has been written out.
    written: usize,
    state: State,
    turn: Arc<Turn>,
    turn_waker: Waker,
}

impl<S> CoalescedWrites<S> {
    pub fn new(inner: S) -> Self {
        let turn = Arc::new(Turn::default());
        let turn_waker = Waker::from(turn.clone());
        CoalescedWrites { inner, buffer: Vec::new(), written: 0, state: State::Buffering, turn, turn_waker }
    }

    fn pending(&self) -> usize {
        self.buffer.len() - self.written
    }
}

impl<S: AsyncWrite + Unpin> CoalescedWrites<S> {
    /// Writes the whole buffer out.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.state = State::Draining;
        while self.written < self.buffer.len() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buffer[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        if self.buffer.capacity() > KEPT_CAPACITY {
            self.buffer = Vec::new();
        } else {
            self.buffer.clear();
        }
        self.state = State::Buffering;
        Poll::Ready(Ok(()))
    }

    /// Makes room before taking more bytes, if the buffer is full.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A drain that had to wait is finished before anything is added.
        if self.pending() >= MAX_BUFFERED || self.state == State::Draining {
            return self.poll_drain(cx);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CoalescedWrites<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_room(cx))?;
        self.buffer.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_room(cx))?;
        let mut taken = 0;
        for buf in bufs {
            self.buffer.extend_from_slice(buf);
            taken += buf.len();
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pending() > 0 {
            if this.state == State::Buffering {
                this.turn.came.store(false, Ordering::Release);
                this.state = State::Deferred;
                // The first poll of `yield_now` hands the waker to the
                // runtime's deferred list (or wakes it at once outside a
                // runtime) and is then done with.
                let mut turn = Context::from_waker(&this.turn_waker);
                let _ = pin!(tokio::task::yield_now()).poll(&mut turn);
            }
            if this.state == State::Deferred {
                this.turn.task.register(cx.waker());
                if !this.turn.came.load(Ordering::Acquire) {
                    return Poll::Pending;
                }
            }
            std::task::ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending() > 0 {
            std::task::ready!(self.poll_drain(cx))?;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn writes_reach_the_peer_after_a_flush_in_order() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut writer = CoalescedWrites::new(near);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.map(|_| all)
        });
        let mut sent = Vec::new();
        for round in 0..50u32 {
            let chunk: Vec<u8> = (0..round * 7).map(|i| (i % 251) as u8).collect();
            writer.write_all(&chunk).await.expect("write");
            sent.extend_from_slice(&chunk);
            if round % 3 == 0 {
                writer.flush().await.expect("flush");
            }
        }
        writer.shutdown().await.expect("shutdown");
        drop(writer);
        let received = reader.await.expect("reader task").expect("read");
        assert_eq!(received, sent);
    }

    /// Records each write it is given.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.writes.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn what_is_written_while_a_flush_waits_goes_out_in_the_same_write() {
        // On a worker thread: the test's own thread is outside the runtime,
        // where a deferred wake-up comes at once.
        let on_worker = tokio::spawn(async {
            let mut writer = CoalescedWrites::new(Recorder::default());
            writer.write_all(b"first ").await.expect("write");
            // Inside the runtime a flush waits for the worker's other ready tasks.
            let waited =
                std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut writer).poll_flush(cx).is_pending())).await;
            assert!(waited, "a flush with bytes buffered waits for its turn");
            assert!(writer.inner.writes.is_empty(), "nothing written before the turn comes");
            writer.write_all(b"second").await.expect("write");
            writer.flush().await.expect("flush");
            assert_eq!(writer.inner.writes, vec![b"first second".to_vec()]);
            // Nothing buffered: a flush goes straight through.
            writer.flush().await.expect("flush");
            assert_eq!(writer.inner.writes.len(), 1);
        });
        on_worker.await.expect("test task");
    }

    #[tokio::test]
    async fn a_full_buffer_is_written_before_more_is_taken() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut writer = CoalescedWrites::new(near);
        let big = vec![7u8; MAX_BUFFERED + 10];
        writer.write_all(&big).await.expect("write");
        writer.write_all(b"tail").await.expect("write");
        // The first write went out unflushed: the buffer was full.
        let mut head = vec![0u8; big.len()];
        far.read_exact(&mut head).await.expect("read");
        assert_eq!(head, big);
        writer.flush().await.expect("flush");
        let mut tail = [0u8; 4];
        far.read_exact(&mut tail).await.expect("read");
        assert_eq!(&tail, b"tail");
    }
}
