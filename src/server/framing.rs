//! Request-smuggling defence below hyper.
//!
//! hyper reads a request that carries both `Transfer-Encoding` and `Content-Length` as chunked and
//! closes the connection afterwards (RFC 9112 allows that), and when `Transfer-Encoding` comes
//! first it drops the `Content-Length` before the application can see it. A front proxy that
//! believed the length would then disagree with us on where the next request starts. AirGate
//! refuses such requests outright: this inspector watches the bytes of an HTTP/1 connection, finds
//! each request head (following body framing: fixed length or chunked), and marks the connection
//! as tainted when a head has ambiguous framing. The request middleware answers 400 and closes a
//! tainted connection.
//!
//! The inspector judges every request of a connection, whatever came before it:
//! - heads are delimited by `httparse`, the parser hyper itself uses, so a head ended by bare LFs
//!   (which hyper accepts) ends here too, and what follows it is judged as the next request;
//! - an `Upgrade` header does not end inspection: unless the server actually switched protocols
//!   (AirGate never answers 101), the next bytes are another HTTP/1 request. After a real switch
//!   hyper reads no more requests from the connection, so judging its bytes costs nothing;
//! - anything the inspector cannot follow (an unparseable head or chunk line, an unknown transfer
//!   coding, a length that is not plain digits) taints the connection instead of ending
//!   inspection: either hyper refuses it too, or two parsers could read it differently. Only an
//!   HTTP/2 connection preface as the very first bytes ends inspection (HTTP/2 frames carry no
//!   HTTP/1 framing).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use memchr::memmem::Finder;
use tokio::io::{AsyncRead, ReadBuf};

/// Largest request head the inspector buffers; longer heads are refused by hyper anyway.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// Longest chunk-size or trailer line followed.
const MAX_LINE: usize = 4096;
/// The HTTP/2 connection preface's first line.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

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
    /// The CRLF after a chunk's data: how many of its two bytes were seen.
    ChunkDataEnd(usize),
    Trailers(Vec<u8>),
    /// An HTTP/2 connection: nothing more to follow.
    Off,
    /// Refused: the middleware answers 400 and closes; nothing more to follow.
    Tainted,
}

/// Follows HTTP/1 request framing over the raw bytes of a connection.
#[derive(Debug)]
pub struct FramingInspector {
    state: State,
    taint: Taint,
    /// Request heads seen so far (an HTTP/2 preface only counts as the first bytes).
    heads: u64,
}

impl FramingInspector {
    pub fn new(taint: Taint) -> Self {
        Self {
            state: State::Head(Vec::new()),
            taint,
            heads: 0,
        }
    }

    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (consumed, next) = match &mut self.state {
                State::Off | State::Tainted => return,
                // Empty lines before a request line are skipped (by httparse too): dropping
                // them keeps a flood of line feeds from growing the buffer.
                State::Head(buf) if buf.is_empty() && matches!(bytes[0], b'\r' | b'\n') => {
                    let n = bytes
                        .iter()
                        .position(|b| !matches!(b, b'\r' | b'\n'))
                        .unwrap_or(bytes.len());
                    (n, State::Head(std::mem::take(buf)))
                }
                State::Head(buf) => {
                    let before = buf.len();
                    buf.extend_from_slice(bytes);
                    match head_end(buf, before, self.heads == 0) {
                        HeadEnd::Complete(len) => {
                            let head = std::mem::take(buf);
                            self.heads += 1;
                            (len.saturating_sub(before), after_head(&head[..len]))
                        }
                        HeadEnd::Partial => (bytes.len(), State::Head(std::mem::take(buf))),
                        HeadEnd::Http2 => (bytes.len(), State::Off),
                        HeadEnd::Invalid => (bytes.len(), State::Tainted),
                    }
                }
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
                State::ChunkSize(buf) => match take_line(buf, bytes) {
                    Line::Complete(n) => (n, chunk_size_state(buf)),
                    Line::Partial(n) => (n, State::ChunkSize(std::mem::take(buf))),
                    Line::Invalid(n) => (n, State::Tainted),
                },
                State::ChunkData(left) => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    let rest = *left - n as u64;
                    (
                        n,
                        if rest == 0 {
                            State::ChunkDataEnd(0)
                        } else {
                            State::ChunkData(rest)
                        },
                    )
                }
                State::ChunkDataEnd(seen) => {
                    // Exactly CRLF must follow a chunk's data.
                    let expected = &b"\r\n"[*seen..];
                    let n = expected.len().min(bytes.len());
                    if bytes[..n] != expected[..n] {
                        (n, State::Tainted)
                    } else if *seen + n == 2 {
                        (n, State::ChunkSize(Vec::new()))
                    } else {
                        (n, State::ChunkDataEnd(*seen + n))
                    }
                }
                // Trailer lines after the last chunk, until an empty line.
                State::Trailers(buf) => match take_line(buf, bytes) {
                    Line::Complete(n) if buf.as_slice() == b"\r\n" => (n, State::Head(Vec::new())),
                    Line::Complete(n) => (n, State::Trailers(Vec::new())),
                    Line::Partial(n) => (n, State::Trailers(std::mem::take(buf))),
                    Line::Invalid(n) => (n, State::Tainted),
                },
            };
            if matches!(next, State::Tainted) {
                self.taint.set();
            }
            self.state = next;
            bytes = &bytes[consumed..];
        }
    }
}

/// Whether `buf` holds a whole request head, by hyper's own parser. `before` is how much was
/// buffered before the latest read: a head can only end in the new bytes, with an empty line
/// (`\n\n` or `\n\r\n`), and only then is the buffer parsed, so a head trickled in byte by
/// byte is parsed about once, not once per byte.
fn head_end(buf: &[u8], before: usize, first: bool) -> HeadEnd {
    // built once: `memmem::find` builds its searcher (with CPU-feature checks) on every call,
    // and this runs on every read of every connection
    static BLANK_LINE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
    static BLANK_CRLF_LINE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\r\n"));
    if first && buf.starts_with(H2_PREFACE) {
        return HeadEnd::Http2;
    }
    let window = &buf[before.saturating_sub(2)..];
    let may_end = BLANK_LINE.find(window).is_some() || BLANK_CRLF_LINE.find(window).is_some();
    if !may_end {
        return if buf.len() > MAX_HEAD {
            HeadEnd::Invalid
        } else {
            HeadEnd::Partial
        };
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut headers).parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => HeadEnd::Complete(len),
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => HeadEnd::Partial,
        _ => HeadEnd::Invalid,
    }
}

/// The state after a complete request head: its body framing, or tainted when ambiguous.
fn after_head(head: &[u8]) -> State {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = request.parse(head) else {
        return State::Tainted;
    };
    match body_framing(&request) {
        Some(Framing::None) => State::Head(Vec::new()),
        Some(Framing::Length(0)) => State::Head(Vec::new()),
        Some(Framing::Length(n)) => State::Fixed(n),
        Some(Framing::Chunked) => State::ChunkSize(Vec::new()),
        None => State::Tainted,
    }
}

enum HeadEnd {
    Complete(usize),
    Partial,
    Http2,
    Invalid,
}

/// How a request's body is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// The request's body framing; `None` when two parsers could disagree on it: `Content-Length`
/// with `Transfer-Encoding`, lengths that differ or are not plain digits, a transfer coding
/// list that does not end with exactly one `chunked`, or `Transfer-Encoding` in HTTP/1.0 (RFC
/// 9112 section 6.1: treated as faulty framing).
fn body_framing(request: &httparse::Request<'_, '_>) -> Option<Framing> {
    let mut length: Option<u64> = None;
    let mut codings: Vec<String> = Vec::new();
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = plain_length(header.value)?;
            if length.is_some_and(|seen| seen != value) {
                return None;
            }
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let value = std::str::from_utf8(header.value).ok()?;
            codings.extend(
                value
                    .split(',')
                    .map(|c| c.trim_matches([' ', '\t']).to_ascii_lowercase())
                    .filter(|c| !c.is_empty()),
            );
        }
    }
    if codings.is_empty() {
        return Some(length.map_or(Framing::None, Framing::Length));
    }
    let chunked_once_at_end = codings.last().is_some_and(|c| c == "chunked")
        && codings.iter().filter(|c| *c == "chunked").count() == 1;
    if length.is_some() || request.version != Some(1) || !chunked_once_at_end {
        return None;
    }
    Some(Framing::Chunked)
}

/// A `Content-Length` value made of ASCII digits only (no sign, list, or spaces inside).
fn plain_length(value: &[u8]) -> Option<u64> {
    let trimmed = value.trim_ascii();
    if trimmed.is_empty() || !trimmed.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(trimmed).ok()?.parse().ok()
}

enum Line {
    /// The line ended (CRLF) after this many bytes of the input.
    Complete(usize),
    /// All input taken, no line end yet.
    Partial(usize),
    /// A bare LF or an over-long line.
    Invalid(usize),
}

/// Appends bytes to `buf` up to and including a line feed. A line must end with CRLF (hyper
/// refuses bare LFs in chunked framing, so following one would desynchronise the two parsers).
fn take_line(buf: &mut Vec<u8>, bytes: &[u8]) -> Line {
    match memchr::memchr(b'\n', bytes) {
        Some(at) => {
            buf.extend_from_slice(&bytes[..=at]);
            if buf.len() > MAX_LINE || !buf.ends_with(b"\r\n") {
                Line::Invalid(at + 1)
            } else {
                Line::Complete(at + 1)
            }
        }
        None => {
            buf.extend_from_slice(bytes);
            if buf.len() > MAX_LINE {
                Line::Invalid(bytes.len())
            } else {
                Line::Partial(bytes.len())
            }
        }
    }
}

/// The state after a chunk-size line (`hex[;extensions]CRLF`).
fn chunk_size_state(line: &[u8]) -> State {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let size = match memchr::memchr(b';', line) {
        Some(at) => &line[..at],
        None => line,
    };
    let size = size.trim_ascii_end();
    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
        return State::Tainted;
    }
    match std::str::from_utf8(size)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
    {
        Some(0) => State::Trailers(Vec::new()),
        Some(n) => State::ChunkData(n),
        None => State::Tainted,
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

super::write_through!(InspectedIo);

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

    /// The smuggled request that must be refused wherever it appears on a connection.
    const SMUGGLE: &[u8] =
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    fn after(first: &[u8]) -> Vec<u8> {
        let mut stream = first.to_vec();
        stream.extend_from_slice(SMUGGLE);
        stream
    }

    #[test]
    fn a_head_ended_by_bare_line_feeds_does_not_hide_the_next_request() {
        assert!(tainted_at_every_split(&after(
            b"GET /v1/models HTTP/1.1\nHost: x\n\n"
        )));
        assert!(tainted_at_every_split(&after(
            b"POST /v1/x HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}"
        )));
        // Mixed terminators.
        assert!(tainted_at_every_split(&after(
            b"GET / HTTP/1.1\r\nHost: x\n\r\n"
        )));
        // And bare line feeds alone are fine.
        assert!(!tainted_at_every_split(
            b"GET / HTTP/1.1\nHost: x\n\nGET / HTTP/1.1\nHost: x\n\n"
        ));
    }

    #[test]
    fn an_upgrade_header_does_not_end_inspection() {
        assert!(tainted_at_every_split(&after(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )));
        assert!(tainted_at_every_split(&after(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )));
    }

    #[test]
    fn an_http2_preface_ends_inspection_only_as_the_first_bytes() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert!(!tainted_at_every_split(preface));
        let mut late = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        late.extend_from_slice(preface);
        late.extend_from_slice(SMUGGLE);
        assert!(tainted_at_every_split(&late));
    }

    #[test]
    fn framing_the_inspector_cannot_follow_taints_instead_of_ending_inspection() {
        let cases: &[&[u8]] = &[
            // A length that is not plain digits, or a list of lengths.
            b"POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\nabcd",
            b"POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\nabcd",
            b"POST / HTTP/1.1\r\nContent-Length: 0x4\r\n\r\nabcd",
            // A coding that only ends with the letters of chunked, or chunked twice, or not last.
            b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
            // Transfer-Encoding in HTTP/1.0 (RFC 9112 section 6.1).
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            // Chunk framing hyper refuses: a bare LF, junk after the data, a bad size.
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\nabcd\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcdXX0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
            // A head hyper's parser refuses.
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ];
        for case in cases {
            assert!(
                tainted_at_every_split(case),
                "not tainted: {}",
                String::from_utf8_lossy(case)
            );
        }
        // Chunk extensions, trailers, and a chunked body after a fixed one remain fine.
        assert!(!tainted_at_every_split(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4;a=b\r\nabcd\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n"
        ));
    }

    #[test]
    fn a_flood_of_empty_lines_is_not_buffered() {
        let taint = Taint::default();
        let mut inspector = FramingInspector::new(taint.clone());
        for _ in 0..100_000 {
            inspector.feed(b"\r\n");
        }
        assert!(matches!(&inspector.state, State::Head(buf) if buf.is_empty()));
        inspector.feed(SMUGGLE);
        assert!(taint.is_set());
    }

    // ------------------------------------------------------------------ generated input

    use proptest::prelude::*;

    /// Bytes the inspector holds between reads.
    fn buffered(inspector: &FramingInspector) -> usize {
        match &inspector.state {
            State::Head(b) | State::ChunkSize(b) | State::Trailers(b) => b.len(),
            _ => 0,
        }
    }

    /// Feeds `stream` cut at `cuts`; after every read the held bytes stay within the head cap.
    fn feed_in_pieces(stream: &[u8], cuts: &[usize]) -> (bool, FramingInspector) {
        let taint = Taint::default();
        let mut inspector = FramingInspector::new(taint.clone());
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.extend([0, stream.len()]);
        points.sort_unstable();
        points.dedup();
        for w in points.windows(2) {
            inspector.feed(&stream[w[0]..w[1]]);
            assert!(
                buffered(&inspector) <= MAX_HEAD,
                "inspector buffer grew past its cap"
            );
        }
        (taint.is_set(), inspector)
    }

    #[derive(Debug, Clone)]
    enum Body {
        None,
        Fixed(Vec<u8>),
        Chunked {
            chunks: Vec<(Vec<u8>, Option<String>)>,
            trailers: Vec<(String, String)>,
        },
    }

    #[derive(Debug, Clone)]
    struct Request {
        method: &'static str,
        path: String,
        http10: bool,
        bare_lf: bool,
        headers: Vec<(String, String)>,
        body: Body,
    }

    impl Request {
        fn bytes(&self) -> Vec<u8> {
            let eol = if self.bare_lf { "\n" } else { "\r\n" };
            let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
            let mut head = format!("{} {} {version}{eol}", self.method, self.path);
            for (name, value) in &self.headers {
                head.push_str(&format!("{name}: {value}{eol}"));
            }
            match &self.body {
                Body::None => {}
                Body::Fixed(b) => head.push_str(&format!("Content-Length: {}{eol}", b.len())),
                Body::Chunked { .. } => head.push_str(&format!("Transfer-Encoding: chunked{eol}")),
            }
            head.push_str(eol);
            let mut out = head.into_bytes();
            match &self.body {
                Body::None => {}
                Body::Fixed(b) => out.extend_from_slice(b),
                Body::Chunked { chunks, trailers } => {
                    for (data, ext) in chunks {
                        let ext = ext.as_deref().map(|e| format!(";{e}")).unwrap_or_default();
                        out.extend_from_slice(format!("{:x}{ext}\r\n", data.len()).as_bytes());
                        out.extend_from_slice(data);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n");
                    for (name, value) in trailers {
                        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
            out
        }
    }

    fn header_name() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9-]{0,12}".prop_filter("framing headers are added by the body", |n| {
            let n = n.to_ascii_lowercase();
            n != "content-length" && n != "transfer-encoding"
        })
    }

    fn header() -> impl Strategy<Value = (String, String)> {
        // Values may look like framing, or like a request line: they are still values.
        let value = prop_oneof![
            "[ -~]{0,24}".prop_map(|v| v.trim().to_string()),
            Just("chunked".to_string()),
            Just("0\r\n\r\nGET / HTTP/1.1".replace("\r\n", " ")),
        ];
        (header_name(), value)
    }

    fn body(http10: bool) -> BoxedStrategy<Body> {
        let chunk = (
            proptest::collection::vec(any::<u8>(), 1..40),
            proptest::option::of("[a-z]{1,5}=[a-z0-9]{0,5}"),
        );
        let fixed = prop_oneof![
            Just(Body::None),
            proptest::collection::vec(any::<u8>(), 0..120).prop_map(Body::Fixed),
            // A body shaped like a hostile request: bytes of a body are never heads.
            Just(Body::Fixed(SMUGGLE.to_vec())),
        ];
        if http10 {
            return fixed.boxed();
        }
        prop_oneof![
            fixed,
            (
                proptest::collection::vec(chunk, 0..5),
                proptest::collection::vec(header(), 0..3),
            )
                .prop_map(|(chunks, trailers)| Body::Chunked { chunks, trailers }),
        ]
        .boxed()
    }

    fn request() -> impl Strategy<Value = Request> {
        (
            prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
            "/[a-z0-9/._-]{0,20}",
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec(header(), 0..6),
        )
            .prop_flat_map(|(method, path, http10, bare_lf, headers)| {
                body(http10).prop_map(move |body| Request {
                    method,
                    path: path.clone(),
                    http10,
                    bare_lf,
                    headers: headers.clone(),
                    body,
                })
            })
    }

    /// Requests with ambiguous framing, in the spellings attackers use.
    fn hostile() -> impl Strategy<Value = Vec<u8>> {
        let cl = prop::sample::select(vec!["Content-Length", "content-length", "CONTENT-LENGTH"]);
        let te = prop::sample::select(vec![
            "Transfer-Encoding: chunked",
            "transfer-encoding: Chunked",
            "Transfer-Encoding:  chunked ",
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: chunked, identity",
            "Transfer-Encoding: xchunked",
        ]);
        (cl, te, any::<bool>(), 0u8..10, any::<bool>()).prop_map(
            |(cl, te, te_first, length, bare_lf)| {
                let eol = if bare_lf { "\n" } else { "\r\n" };
                let (a, b) = (format!("{cl}: {length}"), te.to_string());
                let (first, second) = if te_first { (b, a) } else { (a, b) };
                format!("POST /v1/chat/completions HTTP/1.1{eol}Host: x{eol}{first}{eol}{second}{eol}{eol}0\r\n\r\n")
                    .into_bytes()
            },
        )
    }

    fn pipeline(requests: &[Request], leading_crlf: &[bool]) -> Vec<u8> {
        let mut stream = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            if i > 0 && leading_crlf.get(i).copied().unwrap_or(false) {
                stream.extend_from_slice(b"\r\n");
            }
            stream.extend_from_slice(&r.bytes());
        }
        stream
    }

    proptest! {
        // `PROPTEST_CASES` sets the number of cases (256 by default); scripts/fuzz-long.sh runs
        // many more.

        #[test]
        fn clean_pipelines_never_taint_wherever_the_reads_split(
            requests in proptest::collection::vec(request(), 1..6),
            leading_crlf in proptest::collection::vec(any::<bool>(), 0..6),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let stream = pipeline(&requests, &leading_crlf);
            let (tainted, inspector) = feed_in_pieces(&stream, &cuts);
            prop_assert!(!tainted, "clean pipeline tainted: {:?}", String::from_utf8_lossy(&stream));
            // The pipeline ended on a request boundary.
            prop_assert!(matches!(&inspector.state, State::Head(b) if b.is_empty()), "{:?}", inspector.state);
        }

        #[test]
        fn an_ambiguous_request_taints_whatever_came_before_it(
            requests in proptest::collection::vec(request(), 0..5),
            smuggled in hostile(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut stream = pipeline(&requests, &[]);
            stream.extend_from_slice(&smuggled);
            let (tainted, _) = feed_in_pieces(&stream, &cuts);
            prop_assert!(tainted, "not tainted: {:?}", String::from_utf8_lossy(&stream));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            prefix in proptest::collection::vec(request(), 0..2),
            noise in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<usize>(), 0..16),
        ) {
            let mut stream = pipeline(&prefix, &[]);
            stream.extend_from_slice(&noise);
            let whole = feed_in_pieces(&stream, &[]).0;
            let split = feed_in_pieces(&stream, &cuts).0;
            // The verdict never depends on how the reads were cut.
            prop_assert_eq!(whole, split);
        }
    }
}
