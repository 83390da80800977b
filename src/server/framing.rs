//! Request-smuggling defence below hyper.
//!
//! hyper reads a request that carries both `Transfer-Encoding` and `Content-Length` as chunked and
//! closes the connection afterwards (RFC 9112 allows that), and when `Transfer-Encoding` comes
//! first it drops the `Content-Length` before the application can see it. A front proxy that
//! believed the length would then disagree with us on where the next request starts. AirGate
//! refuses such requests outright: this inspector watches the bytes of an HTTP/1 connection, finds
//! each request head (following body framing: fixed length or chunked), and marks the connection
//! as tainted when a head has ambiguous framing. The request middleware answers 400 and closes a
//! tainted connection. When the inspector cannot follow the stream (HTTP/2, upgrades, garbage that
//! hyper will refuse anyway) it stops looking.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest request head the inspector buffers; longer heads are refused by hyper anyway.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

/// Shared flag: set once any request head on the connection had ambiguous framing.
#[derive(Debug, Clone, Default)]
pub struct Taint(Arc<AtomicBool>);

impl Taint {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug)]
enum State {
    Head(Vec<u8>),
    Fixed(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    ChunkDataEnd(u8),
    Trailers(Vec<u8>),
    Off,
}

/// Follows HTTP/1 request framing over the raw bytes of a connection.
#[derive(Debug)]
pub struct FramingInspector {
    state: State,
    taint: Taint,
}

impl FramingInspector {
    pub fn new(taint: Taint) -> Self {
        Self {
            state: State::Head(Vec::new()),
            taint,
        }
    }

    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (consumed, next) = match &mut self.state {
                State::Off => return,
                State::Head(buf) => match take_until(buf, bytes, b"\r\n\r\n") {
                    (n, true) => {
                        let head = std::mem::take(buf);
                        (n, self.after_head(&head))
                    }
                    (n, false) if buf.len() > MAX_HEAD => (n, State::Off),
                    (n, false) => (n, State::Head(std::mem::take(buf))),
                },
                State::Fixed(left) => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    let rest = *left - n as u64;
                    (
                        n,
                        if rest == 0 {
                            State::Head(Vec::new())
                        } else {
                            State::Fixed(rest)
                        },
                    )
                }
                State::ChunkSize(buf) => match take_until(buf, bytes, b"\r\n") {
                    (n, true) => (n, chunk_size_state(buf)),
                    (n, false) if buf.len() > 1024 => (n, State::Off),
                    (n, false) => (n, State::ChunkSize(std::mem::take(buf))),
                },
                State::ChunkData(left) => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    let rest = *left - n as u64;
                    (
                        n,
                        if rest == 0 {
                            State::ChunkDataEnd(2)
                        } else {
                            State::ChunkData(rest)
                        },
                    )
                }
                State::ChunkDataEnd(left) => {
                    let n = (*left as usize).min(bytes.len());
                    let rest = *left - n as u8;
                    (
                        n,
                        if rest == 0 {
                            State::ChunkSize(Vec::new())
                        } else {
                            State::ChunkDataEnd(rest)
                        },
                    )
                }
                // Trailer lines after the last chunk, until an empty line.
                State::Trailers(buf) => match take_until(buf, bytes, b"\r\n") {
                    (n, true) if buf.as_slice() == b"\r\n" => (n, State::Head(Vec::new())),
                    (n, true) => (n, State::Trailers(Vec::new())),
                    (n, false) if buf.len() > MAX_HEAD => (n, State::Off),
                    (n, false) => (n, State::Trailers(std::mem::take(buf))),
                },
            };
            self.state = next;
            bytes = &bytes[consumed..];
        }
    }

    fn after_head(&self, head: &[u8]) -> State {
        if head.starts_with(b"PRI * HTTP/2.0") {
            return State::Off;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(_)) = request.parse(head) else {
            return State::Off;
        };
        let mut lengths = Vec::new();
        let mut chunked = false;
        let mut has_te = false;
        let mut upgrade = false;
        for header in request.headers.iter() {
            if header.name.eq_ignore_ascii_case("content-length") {
                lengths.push(header.value.to_vec());
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                has_te = true;
                chunked = String::from_utf8_lossy(header.value)
                    .to_ascii_lowercase()
                    .trim_end()
                    .ends_with("chunked");
            } else if header.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let conflicting_lengths = lengths.windows(2).any(|w| w[0] != w[1]);
        if (has_te && !lengths.is_empty()) || conflicting_lengths {
            self.taint.set();
            return State::Off;
        }
        if upgrade {
            return State::Off;
        }
        if chunked {
            return State::ChunkSize(Vec::new());
        }
        match lengths
            .first()
            .map(|v| String::from_utf8_lossy(v).trim().parse::<u64>())
        {
            None => State::Head(Vec::new()),
            Some(Ok(0)) => State::Head(Vec::new()),
            Some(Ok(n)) => State::Fixed(n),
            Some(Err(_)) => State::Off,
        }
    }
}

/// Appends bytes to `buf` up to and including `delimiter`; returns (bytes consumed, found).
fn take_until(buf: &mut Vec<u8>, bytes: &[u8], delimiter: &[u8]) -> (usize, bool) {
    // A delimiter split across reads: the buffer ends with its first k bytes (the largest k
    // ends first).
    let split = (1..delimiter.len())
        .rev()
        .find(|&k| buf.ends_with(&delimiter[..k]) && bytes.starts_with(&delimiter[k..]));
    let end = match split {
        Some(k) => Some(delimiter.len() - k),
        None => memchr::memmem::find(bytes, delimiter).map(|at| at + delimiter.len()),
    };
    match end {
        Some(n) => {
            buf.extend_from_slice(&bytes[..n]);
            (n, true)
        }
        None => {
            buf.extend_from_slice(bytes);
            (bytes.len(), false)
        }
    }
}

fn chunk_size_state(line: &[u8]) -> State {
    let text = String::from_utf8_lossy(line);
    let size = text.trim_end().split(';').next().unwrap_or("").trim();
    match u64::from_str_radix(size, 16) {
        Ok(0) => State::Trailers(Vec::new()),
        Ok(n) => State::ChunkData(n),
        Err(_) => State::Off,
    }
}

/// A connection whose reads pass through a [`FramingInspector`].
pub struct InspectedIo<T> {
    inner: T,
    inspector: FramingInspector,
}

impl<T> InspectedIo<T> {
    pub fn new(inner: T, taint: Taint) -> Self {
        Self {
            inner,
            inspector: FramingInspector::new(taint),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for InspectedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.inspector.feed(&buf.filled()[before..]);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for InspectedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tainted_by(stream: &[u8], split: usize) -> bool {
        let taint = Taint::default();
        let mut inspector = FramingInspector::new(taint.clone());
        inspector.feed(&stream[..split]);
        inspector.feed(&stream[split..]);
        taint.is_set()
    }

    fn tainted_byte_by_byte(stream: &[u8]) -> bool {
        let taint = Taint::default();
        let mut inspector = FramingInspector::new(taint.clone());
        for byte in stream {
            inspector.feed(std::slice::from_ref(byte));
        }
        taint.is_set()
    }

    fn tainted_at_every_split(stream: &[u8]) -> bool {
        let mut verdicts: Vec<bool> = (0..=stream.len()).map(|s| tainted_by(stream, s)).collect();
        verdicts.push(tainted_byte_by_byte(stream));
        assert!(
            verdicts.windows(2).all(|w| w[0] == w[1]),
            "verdict depends on the split"
        );
        verdicts[0]
    }

    #[test]
    fn delimiters_split_across_reads_end_where_they_end() {
        let mut buf = b"GET / HTTP/1.1\r\n\r".to_vec();
        assert_eq!(take_until(&mut buf, b"\nNEXT", b"\r\n\r\n"), (1, true));
        assert!(buf.ends_with(b"\r\n\r\n"));
        let mut buf = b"A\r".to_vec();
        // "\r" + "\n\r\n": the delimiter starting in the buffer ends first.
        assert_eq!(take_until(&mut buf, b"\n\r\n", b"\r\n"), (1, true));
        let mut buf = Vec::new();
        assert_eq!(take_until(&mut buf, b"ab\r\ncd", b"\r\n"), (4, true));
        assert_eq!(take_until(&mut buf, b"xyz", b"\r\n"), (3, false));
    }

    #[test]
    fn te_and_cl_in_either_order_taint() {
        assert!(tainted_at_every_split(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ));
        assert!(tainted_at_every_split(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"
        ));
        assert!(tainted_at_every_split(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd"
        ));
    }

    #[test]
    fn clean_pipelines_with_bodies_that_look_like_heads_do_not_taint() {
        // The body of the first request contains text shaped like a hostile head.
        let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut stream =
            format!("POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        stream.extend_from_slice(body);
        stream.extend_from_slice(
            b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        );
        stream.extend_from_slice(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!tainted_at_every_split(&stream));
    }

    #[test]
    fn a_hostile_head_after_clean_requests_taints() {
        let mut stream = b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n".to_vec();
        stream.extend_from_slice(b"POST /c HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
        stream.extend_from_slice(
            b"POST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
        );
        assert!(tainted_at_every_split(&stream));
    }
}
