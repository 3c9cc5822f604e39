//! HTTP-layer errors as JSON, in the shape of the API the request's path belongs to
//! (Google's below `/v1beta/` and on Gemini-native `/v1/models/...:generateContent`,
//! Anthropic's on `/v1/messages`, else OpenAI's).
//!
//! hyper answers a request it cannot parse (garbage request line, invalid header bytes,
//! conflicting Content-Length → 400; too many or too large headers → 431; URI over 64 KiB
//! → 414) itself, before any service runs, with an empty body: exactly a status line,
//! maybe `connection: close`, `content-length: 0` and `date` (`on_error` in hyper's
//! `proto/h1/role.rs`), then it closes. hyper 1 offers no hook, so [`HttpErrors`] wraps
//! each connection's IO and swaps that response for the JSON one with the same status.
//!
//! Why here rather than parsing request heads ourselves (httparse on the read side): hyper
//! stays the only parser, so what is rejected, and with which status, can never diverge
//! from what hyper actually does; a second parser would also have to follow request-body
//! framing to find the next head on a keep-alive connection. On the write side we can tell
//! hyper's response from ours with certainty: responses are written in order, the service
//! logs each request it is called for ([`H1Log`]), and [`Framing`] follows our responses'
//! framing (Content-Length, chunked) to find where each next head starts. A head that
//! starts when every logged request already has its response can only be hyper's own. When
//! anything is unexpected (HTTP/2, an upgrade, a close-delimited body) the wrapper steps
//! aside for good: at worst an error keeps hyper's empty body, our responses are never
//! touched.
//!
//! The path of a head hyper rejected is never parsed by it: the read side notes the
//! request line at the start of each read ([`request_line`]), which is where a client's
//! new request begins unless it pipelines; when that guess misses, the error is
//! OpenAI-shaped, as before.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use http::{Method, Request, Uri, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::GatewayError;
use crate::types::Api;

/// Request headers at most (hyper's `max_headers`; more → 431).
pub const MAX_HEADERS: usize = 100;
/// Request line plus headers at most, in bytes (hyper's `max_buf_size` on HTTP/1.1, the
/// header list size on HTTP/2; more → 431).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Request URI at most, in bytes (more → 414, checked before the gateway's handler).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Our response heads are parsed only to learn their framing; beyond this the wrapper steps aside.
const MAX_TRACKED_HEAD: usize = 64 * 1024;
/// hyper's error head is under 100 bytes; a held head longer than this is not hyper's.
const MAX_HELD_HEAD: usize = 1024;

/// The 414 for a URI over [`MAX_URI_BYTES`].
pub fn uri_too_long<B>(req: &Request<B>) -> Option<GatewayError> {
    (uri_len(req.uri()) > MAX_URI_BYTES).then_some(GatewayError::UriTooLong {
        limit: MAX_URI_BYTES,
    })
}

fn uri_len(uri: &Uri) -> usize {
    uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len())
}

/// What the response to a request may carry, as far as framing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HEAD: a head only, whatever its Content-Length says.
    Head,
    /// CONNECT: a 2xx turns the connection into a tunnel.
    Connect,
    Other,
}

/// The HTTP/1 requests the service was called for, in order, until their responses are seen.
#[derive(Clone, Default)]
pub struct H1Log(Arc<Mutex<Log>>);

#[derive(Default)]
struct Log {
    /// Sequence number of `kinds[0]`.
    first: u64,
    kinds: VecDeque<Kind>,
}

impl Log {
    fn get(&self, seq: u64) -> Option<Kind> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.kinds.get(i).copied()
    }

    fn prune(&mut self, upto: u64) {
        while self.first < upto && self.kinds.pop_front().is_some() {
            self.first += 1;
        }
    }
}

impl H1Log {
    /// Called by the service for every request, before its response can be written.
    pub fn record<B>(&self, req: &Request<B>) {
        // HTTP/2 responses are frames hyper never replaces; logging them would only grow.
        if req.version() >= Version::HTTP_2 {
            return;
        }
        let kind = match *req.method() {
            Method::HEAD => Kind::Head,
            Method::CONNECT => Kind::Connect,
            _ => Kind::Other,
        };
        self.lock().kinds.push_back(kind);
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where the outgoing byte stream is.
#[derive(Debug, Clone)]
enum Out {
    /// Between messages: the next byte starts a response head.
    Boundary,
    /// Inside one of our heads, collected to learn its framing.
    Head(Vec<u8>),
    /// Body bytes left of a Content-Length body.
    Body(u64),
    Chunked(Chunk),
    /// HTTP/2, an upgrade, a close-delimited body or anything unexpected: hands off.
    Opaque,
}

/// Position inside a chunked body.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size(u64),
    /// Chunk extensions, until the end of the size line.
    Ext(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// Trailer lines until an empty one; `true` at the start of a line.
    Trailer(bool),
    TrailerLf(bool),
}

/// Follows the framing of the responses written on an HTTP/1 connection.
#[derive(Debug, Clone)]
struct Framing {
    out: Out,
    /// Sequence number of the request whose response comes next.
    next: u64,
}

impl Framing {
    fn new() -> Self {
        Framing {
            out: Out::Boundary,
            next: 0,
        }
    }

    fn is_opaque(&self) -> bool {
        matches!(self.out, Out::Opaque)
    }

    /// Consumes `data` up to the start of a head that no logged request is waiting for
    /// (only hyper writes there) and returns how many bytes it consumed.
    fn scan(&mut self, data: &[u8], log: &Log) -> usize {
        let mut i = 0;
        while i < data.len() {
            match &mut self.out {
                Out::Opaque => return data.len(),
                Out::Boundary => {
                    if data[i] != b'H' {
                        // Not `HTTP/1.x`: an HTTP/2 connection (or something odd).
                        self.out = Out::Opaque;
                    } else if log.get(self.next).is_none() {
                        return i;
                    } else if let Some(at) = head_end(&data[i..]) {
                        // The whole head in this write (hyper writes it so): read in place.
                        let end = i + at + 4;
                        self.end_of_head(&data[i..end], log);
                        i = end;
                    } else {
                        self.out = Out::Head(Vec::new());
                    }
                }
                Out::Head(head) => {
                    let from = head.len().saturating_sub(3);
                    head.extend_from_slice(&data[i..]);
                    match head_end(&head[from..]) {
                        Some(at) => {
                            let end = from + at + 4;
                            i = data.len() - (head.len() - end);
                            head.truncate(end);
                            let head = std::mem::take(head);
                            self.end_of_head(&head, log);
                        }
                        None if head.len() > MAX_TRACKED_HEAD => self.out = Out::Opaque,
                        None => i = data.len(),
                    }
                }
                Out::Body(left) => {
                    let take = (data.len() - i).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    i += take;
                    *left -= take as u64;
                    if *left == 0 {
                        self.out = Out::Boundary;
                    }
                }
                Out::Chunked(c) => {
                    let (used, next) = step_chunked(*c, &data[i..]);
                    i += used;
                    self.out = next;
                }
            }
        }
        i
    }

    fn end_of_head(&mut self, head: &[u8], log: &Log) {
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(_)) = resp.parse(head) else {
            self.out = Out::Opaque;
            return;
        };
        let code = resp.code.unwrap_or(0);
        if code == 101 {
            self.out = Out::Opaque;
            return;
        }
        if (100..200).contains(&code) {
            // 100 Continue and friends precede the final response to the same request.
            self.out = Out::Boundary;
            return;
        }
        let kind = log.get(self.next).unwrap_or(Kind::Other);
        self.next += 1;
        // Values as bytes, trimmed: this runs for every response, so nothing is copied.
        let header = |name: &'static str| {
            resp.headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.trim_ascii())
        };
        let chunked = |v: &[u8]| v.len() >= 7 && v[v.len() - 7..].eq_ignore_ascii_case(b"chunked");
        self.out = if kind == Kind::Head || code == 204 || code == 304 {
            Out::Boundary
        } else if kind == Kind::Connect && (200..300).contains(&code) {
            Out::Opaque
        } else if header("transfer-encoding").any(chunked) {
            Out::Chunked(Chunk::Size(0))
        } else {
            let length = |v: &[u8]| std::str::from_utf8(v).ok()?.parse::<u64>().ok();
            match header("content-length").next().map(length) {
                Some(Some(0)) => Out::Boundary,
                Some(Some(n)) => Out::Body(n),
                // Close-delimited: nothing follows it on this connection.
                _ => Out::Opaque,
            }
        };
    }
}

/// Advances a chunked body over `data`; returns the bytes used and the new position.
fn step_chunked(mut c: Chunk, data: &[u8]) -> (usize, Out) {
    let mut i = 0;
    while i < data.len() {
        if let Chunk::Data(left) = c {
            let take = (data.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
            i += take;
            c = match left - take as u64 {
                0 => Chunk::DataCr,
                n => Chunk::Data(n),
            };
            continue;
        }
        let b = data[i];
        i += 1;
        c = match (c, b) {
            (Chunk::Size(n), b) if b.is_ascii_hexdigit() => {
                let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                match n.checked_mul(16).and_then(|n| n.checked_add(d)) {
                    Some(n) => Chunk::Size(n),
                    None => return (i, Out::Opaque),
                }
            }
            (Chunk::Size(n), b';' | b' ' | b'\t') => Chunk::Ext(n),
            (Chunk::Size(n) | Chunk::Ext(n), b'\r') => Chunk::SizeLf(n),
            (Chunk::Ext(n), _) => Chunk::Ext(n),
            (Chunk::SizeLf(0), b'\n') => Chunk::Trailer(true),
            (Chunk::SizeLf(n), b'\n') => Chunk::Data(n),
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Size(0),
            (Chunk::Trailer(start), b'\r') => Chunk::TrailerLf(start),
            (Chunk::TrailerLf(true), b'\n') => return (i, Out::Boundary),
            (Chunk::TrailerLf(false), b'\n') => Chunk::Trailer(true),
            (Chunk::Trailer(_), _) => Chunk::Trailer(false),
            _ => return (i, Out::Opaque),
        };
    }
    (i, Out::Chunked(c))
}

/// The API of a request whose head starts `data` (`GET /v1beta/models/... HTTP/1.1`), and
/// whether its path is complete in `data` (else more bytes may change the verdict:
/// `/v1/models/gemini-2.5-flash:generateContent` read in pieces); `None` when `data` does
/// not start with a request line.
fn request_line(data: &[u8]) -> Option<(Api, bool)> {
    let sp = data.iter().take(8).position(|b| *b == b' ')?;
    let method = &data[..sp];
    if method.is_empty() || !method.iter().all(u8::is_ascii_uppercase) {
        return None;
    }
    let target = &data[sp + 1..];
    if target.first() != Some(&b'/') {
        return None;
    }
    let found = target
        .iter()
        .take(MAX_URI_BYTES)
        .position(|b| matches!(b, b' ' | b'?' | b'\r' | b'\n'));
    let end = found.unwrap_or(target.len().min(MAX_URI_BYTES));
    let path = std::str::from_utf8(&target[..end]).ok()?;
    let method = std::str::from_utf8(method).ok()?;
    Some((crate::gateway::api_for_path(method, path), found.is_some()))
}

/// Most bytes of a request line kept while its path arrives in pieces (the HTTP/2 preface
/// check reads 24 bytes first): enough for any Gemini-native path Sluice serves.
const MAX_LINE_PREFIX: usize = 1024;

/// The JSON response replacing hyper's empty error `head`, or `None` if `head` is not one;
/// the body in `api`'s error shape.
fn replacement(head: &[u8], api: Api) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(n)) = resp.parse(head) else {
        return None;
    };
    if n != head.len() {
        return None;
    }
    let error = match resp.code? {
        400 => GatewayError::MalformedHttp,
        414 => GatewayError::UriTooLong {
            limit: MAX_URI_BYTES,
        },
        431 => GatewayError::HeadersTooLarge {
            max_headers: MAX_HEADERS,
            max_bytes: MAX_HEAD_BYTES,
        },
        _ => return None,
    };
    let mut date = None;
    for h in resp.headers.iter() {
        match h.name.to_ascii_lowercase().as_str() {
            "content-length" if h.value == b"0" => {}
            "connection" => {}
            "date" => date = Some(h.value),
            _ => return None,
        }
    }
    let status = error.status();
    let body = error.to_json(api);
    let mut out = format!(
        "HTTP/1.{} {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        resp.version?,
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    if let Some(date) = date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    Some(out)
}

/// The connection IO, replacing hyper's empty-bodied parse-error responses with JSON.
pub struct HttpErrors<S> {
    io: S,
    log: H1Log,
    framing: Framing,
    /// A head only hyper can be writing, held until complete.
    held: Option<Vec<u8>>,
    /// Bytes owed to the peer (the replacement), written before anything else.
    owed: Vec<u8>,
    owed_at: usize,
    /// The API of the latest request line read ([`request_line`]).
    api: Api,
    /// The start of that request line while its path is incomplete.
    line: Option<Vec<u8>>,
}

impl<S> HttpErrors<S> {
    pub fn new(io: S, log: H1Log) -> Self {
        HttpErrors {
            io,
            log,
            framing: Framing::new(),
            held: None,
            owed: Vec::new(),
            owed_at: 0,
            api: Api::OpenAi,
            line: None,
        }
    }

    /// Notes the request line that `data`, just read, starts or continues.
    fn note_read(&mut self, data: &[u8]) {
        let verdict = match self.line.take() {
            Some(mut line) => {
                let room = MAX_LINE_PREFIX.saturating_sub(line.len());
                line.extend_from_slice(&data[..data.len().min(room)]);
                let verdict = request_line(&line);
                if let Some((_, false)) = verdict {
                    if line.len() < MAX_LINE_PREFIX {
                        self.line = Some(line);
                    }
                }
                verdict
            }
            None => {
                let verdict = request_line(data);
                if let Some((_, false)) = verdict {
                    if data.len() < MAX_LINE_PREFIX {
                        self.line = Some(data.to_vec());
                    }
                }
                verdict
            }
        };
        if let Some((api, _)) = verdict {
            self.api = api;
        }
    }
}

impl<S: AsyncWrite + Unpin> HttpErrors<S> {
    fn poll_owed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.owed_at < self.owed.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.owed[self.owed_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.owed_at += n;
        }
        self.owed = Vec::new();
        self.owed_at = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes bytes of a head only hyper can be writing; returns how many were taken.
    fn hold(&mut self, buf: &[u8]) -> usize {
        let held = self.held.get_or_insert_with(Vec::new);
        let from = held.len().saturating_sub(3);
        held.extend_from_slice(buf);
        let taken = match head_end(&held[from..]) {
            Some(at) => {
                let end = from + at + 4;
                let extra = held.len() - end;
                held.truncate(end);
                buf.len() - extra
            }
            None if held.len() <= MAX_HELD_HEAD
                && b"HTTP/1.".starts_with(&held[..held.len().min(7)]) =>
            {
                return buf.len();
            }
            None => buf.len(),
        };
        // Complete, too long, or not HTTP/1: either way the verdict is in.
        let held = self.held.take().unwrap_or_default();
        self.owed = replacement(&held, self.api).unwrap_or(held);
        self.owed_at = 0;
        // hyper closes the connection after its error response; step aside either way.
        self.framing.out = Out::Opaque;
        taken
    }

    /// How many leading bytes of `bufs` can pass before a head only hyper writes.
    fn passable(&self, bufs: &[io::IoSlice<'_>]) -> usize {
        let log = self.log.lock();
        let mut probe = self.framing.clone();
        let mut total = 0;
        for b in bufs {
            let n = probe.scan(b, &log);
            total += n;
            if n < b.len() {
                break;
            }
        }
        total
    }

    fn advance(&mut self, bufs: &[io::IoSlice<'_>], mut n: usize) {
        let mut log = self.log.lock();
        for b in bufs {
            if n == 0 {
                break;
            }
            let k = n.min(b.len());
            self.framing.scan(&b[..k], &log);
            n -= k;
        }
        log.prune(self.framing.next);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HttpErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        let this = &mut *self;
        this.note_read(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HttpErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.framing.is_opaque() && self.held.is_none() && self.owed.is_empty() {
            return Pin::new(&mut self.io).poll_write(cx, buf);
        }
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_owed(cx))?;
        if this.framing.is_opaque() && this.held.is_none() {
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        }
        let Some(first) = bufs.iter().find(|b| !b.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        if this.held.is_some() {
            return Poll::Ready(Ok(this.hold(first)));
        }
        let safe = this.passable(bufs);
        if safe == 0 {
            return Poll::Ready(Ok(this.hold(first)));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let n = if safe == total {
            ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?
        } else {
            // Write only up to the head hyper's error may start with.
            let mut left = safe;
            let mut cut = Vec::with_capacity(bufs.len());
            for b in bufs {
                if left == 0 {
                    break;
                }
                let k = left.min(b.len());
                cut.push(io::IoSlice::new(&b[..k]));
                left -= k;
            }
            ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &cut))?
        };
        this.advance(bufs, n.min(safe));
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_owed(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(held) = self.held.take() {
            // An incomplete head at close: let it out as written.
            self.owed = held;
            self.owed_at = 0;
        }
        ready!(self.poll_owed(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "http_errors_tests.rs"]
mod tests;

/// Where the blank line ending an HTTP/1 head is. One searcher for the process: building one
/// per call cost more than the search.
fn head_end(data: &[u8]) -> Option<usize> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    FINDER.find(data)
}
