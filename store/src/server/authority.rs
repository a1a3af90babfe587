//! Accepting the `:authority` that grpc-go clients send when they dial one
//! endpoint URL directly.
//!
//! etcdctl's per-endpoint calls (`endpoint status`, `snapshot save`,
//! `defrag`, `endpoint hashkv`, ...) dial `passthrough:///http://host:port`,
//! so grpc-go sends `http://host:port` as the HTTP/2 `:authority`. etcd's Go
//! server accepts that; the `h2` crate under tonic resets the stream as
//! malformed. [`ClientStream`] sits between the socket and the gRPC server: it
//! decodes the first header block of each connection, and if its authority is
//! malformed it re-encodes every header block from that client with the
//! authority fixed (the scheme removed). Connections with a valid authority
//! switch to a plain pass-through after their first request.
//!
//! Only the client-to-server direction is touched. Re-encoded blocks use
//! literal fields without indexing, so the server's HPACK table stays empty and
//! in step; the client's own table is followed with a decoder.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The server's SETTINGS_MAX_FRAME_SIZE: the HTTP/2 default, which tonic keeps.
const MAX_FRAME: usize = 16_384;
/// Frames larger than this are left for h2 to refuse.
const MAX_BUFFERED_FRAME: usize = 1 << 20;
/// Header blocks larger than this, encoded or decoded, are left for h2 to refuse.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// The HPACK table size h2 allows by default; larger size updates are refused.
const MAX_HPACK_TABLE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the client preface.
    Preface,
    /// Reading frames up to the end of the first header block.
    FirstRequest,
    /// The authority was fine: bytes flow untouched.
    PassThrough,
    /// The authority was malformed: every header block is re-encoded.
    Rewrite,
}

/// A header block being collected across HEADERS and CONTINUATION frames.
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    block: Vec<u8>,
    /// The frames exactly as received, forwarded when no rewrite is needed.
    original: Vec<u8>,
}

pub struct ClientStream<S = TcpStream> {
    inner: S,
    mode: Mode,
    /// Received from the client, not yet examined.
    raw: BytesMut,
    /// Examined, ready for the server to read.
    out: BytesMut,
    pending: Option<PendingBlock>,
    decoder: loona_hpack::Decoder<'static>,
}

impl<S> ClientStream<S> {
    pub fn new(inner: S) -> ClientStream<S> {
        ClientStream {
            inner,
            mode: Mode::Preface,
            raw: BytesMut::new(),
            out: BytesMut::new(),
            pending: None,
            decoder: {
                let mut decoder = loona_hpack::Decoder::new();
                decoder.set_max_allowed_table_size(MAX_HPACK_TABLE);
                decoder
            },
        }
    }

    fn pass_through_rest(&mut self) {
        self.mode = Mode::PassThrough;
        if let Some(pending) = self.pending.take() {
            self.out.extend_from_slice(&pending.original);
        }
        let rest = self.raw.split();
        self.out.extend_from_slice(&rest);
    }

    /// Examines buffered input; returns whether it made progress.
    fn process(&mut self) -> bool {
        match self.mode {
            Mode::PassThrough => {
                if self.raw.is_empty() {
                    return false;
                }
                let rest = self.raw.split();
                self.out.extend_from_slice(&rest);
                true
            }
            Mode::Preface => {
                if self.raw.len() < PREFACE_LEN {
                    return false;
                }
                let preface = self.raw.split_to(PREFACE_LEN);
                self.out.extend_from_slice(&preface);
                self.mode = Mode::FirstRequest;
                true
            }
            Mode::FirstRequest | Mode::Rewrite => self.process_frame(),
        }
    }

    fn process_frame(&mut self) -> bool {
        if self.raw.len() < FRAME_HEADER_LEN {
            return false;
        }
        let len = (usize::from(self.raw[0]) << 16) | (usize::from(self.raw[1]) << 8) | usize::from(self.raw[2]);
        if len > MAX_BUFFERED_FRAME {
            self.pass_through_rest();
            return true;
        }
        if self.raw.len() < FRAME_HEADER_LEN + len {
            return false;
        }
        let frame = self.raw.split_to(FRAME_HEADER_LEN + len);
        let (kind, flags) = (frame[3], frame[4]);
        let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER_LEN..];
        match (kind, self.pending.as_mut()) {
            (HEADERS, None) => {
                let Some(fragment) = header_fragment(flags, payload) else {
                    self.out.extend_from_slice(&frame);
                    self.pass_through_rest();
                    return true;
                };
                self.pending = Some(PendingBlock {
                    stream_id,
                    end_stream: flags & END_STREAM != 0,
                    block: fragment.to_vec(),
                    original: frame.to_vec(),
                });
            }
            (CONTINUATION, Some(pending)) if pending.stream_id == stream_id => {
                pending.block.extend_from_slice(payload);
                pending.original.extend_from_slice(&frame);
                if pending.original.len() > MAX_HEADER_BLOCK {
                    // Too big to be a real request: step aside, h2 refuses it.
                    self.pass_through_rest();
                    return true;
                }
            }
            (_, None) => {
                self.out.extend_from_slice(&frame);
                return true;
            }
            // Anything else inside a header block is a protocol error: let h2 say so.
            (_, Some(_)) => {
                let mut rest = BytesMut::from(&frame[..]);
                rest.extend_from_slice(&self.raw);
                self.raw = rest;
                self.pass_through_rest();
                return true;
            }
        }
        if flags & END_HEADERS != 0 {
            self.finish_block();
        }
        true
    }

    fn finish_block(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let Some(headers) = decode_bounded(&mut self.decoder, &pending.block) else {
            // Not decodable: hand it to h2 unchanged and step aside.
            self.pending = Some(pending);
            self.pass_through_rest();
            return;
        };
        let authority = headers.iter().find(|(name, _)| name == b":authority").map(|(_, value)| value.as_slice());
        match (self.mode, authority) {
            (Mode::FirstRequest, None) => self.keep_original(pending),
            (Mode::FirstRequest, Some(value)) if valid_authority(value) => self.keep_original(pending),
            _ => {
                if self.mode == Mode::FirstRequest {
                    tracing::debug!("client sent a malformed :authority; fixing its header blocks");
                }
                self.mode = Mode::Rewrite;
                write_headers(&mut self.out, pending.stream_id, pending.end_stream, &encode(&headers));
            }
        }
    }

    fn keep_original(&mut self, pending: PendingBlock) {
        self.out.extend_from_slice(&pending.original);
        self.pass_through_rest();
    }
}

/// Decodes a header block, giving up when the decoded list grows past
/// [`MAX_HEADER_BLOCK`] (HPACK lets a small block reference large table entries).
fn decode_bounded(decoder: &mut loona_hpack::Decoder<'static>, block: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut headers = Vec::new();
    let mut size = 0usize;
    let decoded = decoder.decode_with_cb(block, |name, value| {
        size += name.len() + value.len() + 32;
        if size <= MAX_HEADER_BLOCK {
            headers.push((name.into_owned(), value.into_owned()));
        }
    });
    (decoded.is_ok() && size <= MAX_HEADER_BLOCK).then_some(headers)
}

/// The header block fragment of a HEADERS frame, without padding and priority.
fn header_fragment(flags: u8, payload: &[u8]) -> Option<&[u8]> {
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let pad = usize::from(*payload.first()?);
        start += 1;
        end = end.checked_sub(pad)?;
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    payload.get(start..end)
}

fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// `http://host:port/` → `host:port`; anything still malformed → `localhost`.
fn fixed_authority(value: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(value);
    let stripped = text.split_once("://").map_or(text.as_ref(), |(_, rest)| rest).trim_end_matches('/').to_string();
    if valid_authority(stripped.as_bytes()) {
        stripped.into_bytes()
    } else {
        b"localhost".to_vec()
    }
}

/// HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn put_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// Re-encodes a header list with literal fields without indexing and plain
/// (not Huffman) strings, fixing the authority on the way.
fn encode(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in headers {
        let value = if name == b":authority" { fixed_authority(value) } else { value.clone() };
        block.push(0x00);
        put_int(&mut block, 0x00, 7, name.len());
        block.extend_from_slice(name);
        put_int(&mut block, 0x00, 7, value.len());
        block.extend_from_slice(&value);
    }
    block
}

/// Writes a header block as one HEADERS frame and as many CONTINUATION frames as needed.
fn write_headers(out: &mut BytesMut, stream_id: u32, end_stream: bool, block: &[u8]) {
    let chunks: Vec<&[u8]> = if block.is_empty() { vec![&[][..]] } else { block.chunks(MAX_FRAME).collect() };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.iter().enumerate() {
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        let mut flags = 0;
        if i == 0 && end_stream {
            flags |= END_STREAM;
        }
        if i == last {
            flags |= END_HEADERS;
        }
        let len = chunk.len() as u32;
        out.put_slice(&len.to_be_bytes()[1..]);
        out.put_u8(kind);
        out.put_u8(flags);
        out.put_u32(stream_id);
        out.put_slice(chunk);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::PassThrough && this.raw.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.process() {
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // End of input: whatever is left goes to the server as is.
                    if let Some(pending) = this.pending.take() {
                        this.out.extend_from_slice(&pending.original);
                    }
                    let rest = this.raw.split();
                    this.out.extend_from_slice(&rest);
                    if this.out.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Ok(())) => this.raw.extend_from_slice(read.filled()),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for ClientStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_url_authorities() {
        assert!(!valid_authority(b"http://127.0.0.1:2379"));
        assert_eq!(fixed_authority(b"http://127.0.0.1:2379"), b"127.0.0.1:2379");
        assert_eq!(fixed_authority(b"https://example.com:2379/"), b"example.com:2379");
        assert_eq!(fixed_authority(b"unix:///tmp/x"), b"localhost");
    }

    #[test]
    fn re_encoded_blocks_decode_to_the_fixed_headers() {
        let headers = vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":authority".to_vec(), b"http://127.0.0.1:2379".to_vec()),
            (b"x-long".to_vec(), vec![b'v'; 300]),
        ];
        let decoded = loona_hpack::Decoder::new().decode(&encode(&headers)).expect("valid HPACK");
        assert_eq!(decoded[1].1, b"127.0.0.1:2379");
        assert_eq!(decoded[2].1.len(), 300);
    }

    #[test]
    fn an_hpack_bomb_is_not_expanded() {
        // One 4 KiB literal added to the table, then thousands of references to it.
        let mut block = vec![0x40, 0x01, b'x'];
        block.push(0x7f);
        let mut len = Vec::new();
        put_int(&mut len, 0, 7, 4000);
        block.pop();
        block.extend_from_slice(&len);
        block.extend(std::iter::repeat_n(b'v', 4000));
        block.extend(std::iter::repeat_n(0xBE, 100_000));
        let mut decoder = loona_hpack::Decoder::new();
        assert!(decode_bounded(&mut decoder, &block).is_none(), "refused instead of expanded to 400 MB");
    }

    #[test]
    fn large_blocks_are_split_into_continuations() {
        let mut out = BytesMut::new();
        write_headers(&mut out, 3, true, &vec![0u8; MAX_FRAME + 10]);
        assert_eq!(out.len(), 2 * FRAME_HEADER_LEN + MAX_FRAME + 10);
        assert_eq!((out[3], out[4]), (HEADERS, END_STREAM));
        let second = FRAME_HEADER_LEN + MAX_FRAME;
        assert_eq!((out[second + 3], out[second + 4]), (CONTINUATION, END_HEADERS));
    }
}
