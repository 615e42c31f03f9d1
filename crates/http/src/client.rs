//! The client side of HTTP/1.1: one connection to an upstream, its response heads and
//! bodies, and the byte tunnel used after `101 Switching Protocols`.
//!
//! # Design
//! - An [`UpstreamConn`] owns its socket, one input buffer and one timer, all reused for
//!   every exchange while the connection sits in a pool. Every read and write is bounded by
//!   a deadline the caller computes (the operation's timeout, capped by the whole
//!   exchange's), so no call can hang.
//! - Response heads are parsed with `httparse` into spans of the input buffer; fields stay
//!   where they arrived. Framing follows RFC 9112 §6.3: no body for `HEAD`, 1xx, 204 and 304;
//!   `Transfer-Encoding` ending in `chunked` is chunked; otherwise `Content-Length`; else the
//!   body runs to the end of the connection. Conflicting lengths are an invalid response.
//! - Body bytes are handed out as they arrive, in raw form (framing included, so chunked
//!   bodies and their trailers can be relayed as they are) and as data.
//!
//! # Non-goals
//! TLS and HTTP/2 upstreams (next issue); the request head is built by the caller.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::task::Poll;
use std::time::{Duration, Instant};

use anygate_runtime::net::TcpStream;
use anygate_runtime::time::{self, Sleep};
use anygate_runtime::transport::Transport;

use crate::error::ErrorKind;
use crate::h1::chunked::ChunkedDecoder;
use crate::server::io::{ReadOutcome, arm, expired, read_until, writev_all_until};

/// Largest input buffer of a connection: a response head must fit in it, and large bodies
/// are read this much at a time.
pub const UPSTREAM_BUFFER: usize = 64 * 1024;
/// Input buffer of a new connection (most heads and bodies are small; the buffer grows to
/// [`UPSTREAM_BUFFER`] for a larger head or once a body fills it).
const INITIAL_BUFFER: usize = 16 * 1024;
/// Most header fields accepted in a response head.
const MAX_FIELDS: usize = 128;

/// Why an exchange with an upstream failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// The connection was refused (or could not be made).
    Refused,
    /// Connecting took too long.
    ConnectTimeout,
    /// The connection ended before any byte of a response came: on a reused connection the
    /// request may be sent again on a fresh one.
    ClosedBeforeResponse,
    /// The connection ended or failed in the middle of a response, or while writing.
    Reset,
    /// The response is not valid HTTP/1.1.
    Invalid,
    /// Nothing came for the read timeout.
    ReadTimeout,
    /// Nothing could be written for the write timeout.
    WriteTimeout,
}

impl UpstreamError {
    /// The client-facing error.
    pub fn kind(self) -> ErrorKind {
        match self {
            Self::Refused => ErrorKind::UpstreamRefused,
            Self::ConnectTimeout => ErrorKind::UpstreamConnectTimeout,
            Self::ClosedBeforeResponse | Self::Reset => ErrorKind::UpstreamReset,
            Self::Invalid => ErrorKind::UpstreamInvalid,
            Self::ReadTimeout => ErrorKind::UpstreamReadTimeout,
            Self::WriteTimeout => ErrorKind::UpstreamWriteTimeout,
        }
    }
}

/// How a response body is delimited.
#[derive(Clone, Debug)]
pub enum ResponseFraming {
    /// No body.
    None,
    /// `Content-Length`; bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
    /// Until the upstream closes.
    UntilClose,
}

impl ResponseFraming {
    /// Whether the whole body has been read (a body delimited by the close is finished only
    /// once the close came, when it turns into `Length(0)`).
    pub fn is_finished(&self) -> bool {
        match self {
            Self::None | Self::Length(0) => true,
            Self::Chunked(d) => d.is_done(),
            Self::Length(_) | Self::UntilClose => false,
        }
    }
}

/// A parsed response head; spans are into [`UpstreamConn::head_bytes`].
#[derive(Debug, Default)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// `HTTP/1.0` (minor version 0) or `HTTP/1.1`.
    pub minor_version: u8,
    /// The reason phrase.
    pub reason: Range<usize>,
    /// Field name and value spans, in order.
    pub fields: Vec<(Range<usize>, Range<usize>)>,
    /// The upstream will close after this response (`Connection: close`, HTTP/1.0, or a
    /// framing that needs it).
    pub close: bool,
    /// `Content-Length`, if given (and valid).
    pub content_length: Option<u64>,
    /// Whether the body is chunked.
    pub chunked: bool,
    /// Length of the head in the buffer.
    pub len: usize,
}

/// One connection to an upstream, over any [`Transport`] (plain TCP by default).
#[derive(Debug)]
pub struct UpstreamConn<T = TcpStream> {
    stream: T,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Where the head being relayed starts in `buf`.
    head_at: usize,
    /// The timer of reads and writes on this connection, reset in place for each deadline.
    timer: Sleep,
    /// A second timer, for writes to the client while a response is relayed.
    relay_timer: Sleep,
    /// The last response head read.
    pub head: ResponseHead,
    /// Until when the connection may rest in a pool (set by the pool at checkin).
    pub idle_until: Instant,
    /// Where it goes.
    pub addr: SocketAddr,
}

impl UpstreamConn<TcpStream> {
    /// Connects to `addr` before `deadline`.
    pub async fn connect(addr: SocketAddr, deadline: Instant) -> Result<Self, UpstreamError> {
        let stream = match time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Err(UpstreamError::Refused),
            Err(_) => return Err(UpstreamError::ConnectTimeout),
        };
        let _ = stream.set_nodelay(true);
        Ok(Self::new(stream, addr))
    }
}

impl<T: Transport> UpstreamConn<T> {
    /// A connection over `stream`, already connected to `addr` (a TLS stream after its
    /// handshake, say).
    pub fn new(stream: T, addr: SocketAddr) -> Self {
        let now = time::now();
        Self {
            stream,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            head_at: 0,
            timer: time::sleep_until(now),
            relay_timer: time::sleep_until(now),
            head: ResponseHead::default(),
            idle_until: time::now(),
            addr,
        }
    }

    /// Whether the connection still looks usable after resting in a pool: nothing to read
    /// (a close, a reset or stray bytes all make it unusable). One non-blocking peek.
    /// The peek is a real `recv(MSG_PEEK)`, not the reactor's cached readiness: a close that
    /// arrived since the worker last looked must be seen. A transport that cannot peek is
    /// taken as usable (the one retry on a dead reused connection covers it).
    pub fn is_reusable(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.peek_now(&mut byte), Err(e)
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Unsupported))
    }

    /// Prepares for a new exchange (the previous one was read to its end).
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.head_at = 0;
    }

    /// Writes all of `first` then `second` before `deadline`.
    pub async fn write(
        &mut self,
        first: &[u8],
        second: &[u8],
        deadline: Instant,
    ) -> Result<(), UpstreamError> {
        if writev_all_until(&mut self.stream, [first, second], &mut self.timer, deadline).await {
            return Ok(());
        }
        if time::now() >= deadline {
            Err(UpstreamError::WriteTimeout)
        } else {
            Err(UpstreamError::Reset)
        }
    }

    /// Reads a response head (of at most [`UPSTREAM_BUFFER`] bytes), before `deadline`.
    /// `head_request` says the request was `HEAD` (the response then has no body).
    pub async fn read_head(
        &mut self,
        head_request: bool,
        deadline: Instant,
    ) -> Result<ResponseFraming, UpstreamError> {
        let mut received_any = self.end > self.start;
        loop {
            if self.start < self.end {
                match parse_head(&self.buf[self.start..self.end], &mut self.head)? {
                    Some(n) => {
                        self.head_at = self.start;
                        self.start += n;
                        return framing(&self.head, head_request);
                    }
                    None if self.end - self.start >= UPSTREAM_BUFFER => {
                        return Err(UpstreamError::Invalid);
                    }
                    None => {}
                }
            }
            if self.end == self.buf.len() {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    let size = (self.buf.len() * 2).min(UPSTREAM_BUFFER);
                    self.buf.resize(size, 0);
                }
            }
            match self.read(deadline).await {
                Ok(0) if received_any => return Err(UpstreamError::Reset),
                Ok(0) => return Err(UpstreamError::ClosedBeforeResponse),
                Ok(_) => received_any = true,
                Err(UpstreamError::Reset) if !received_any => {
                    return Err(UpstreamError::ClosedBeforeResponse);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The bytes of the head last read by [`UpstreamConn::read_head`]
    /// ([`UpstreamConn::head`]'s spans index into them).
    pub fn head_bytes(&self) -> &[u8] {
        &self.buf[self.head_at..self.head_at + self.head.len]
    }

    /// The next piece of the body: `(raw, data)` spans for [`UpstreamConn::piece`], where
    /// `raw` is the bytes as they came (chunk framing included) and `data` the body data in
    /// them. `None` at the end.
    pub async fn body_piece(
        &mut self,
        framing: &mut ResponseFraming,
        deadline: Instant,
    ) -> Result<Option<(Range<usize>, Range<usize>)>, UpstreamError> {
        loop {
            if framing.is_finished() {
                return Ok(None);
            }
            if self.start < self.end {
                let at = self.start;
                let avail = self.end - at;
                match framing {
                    ResponseFraming::Length(left) => {
                        let n = avail.min(usize::try_from(*left).unwrap_or(usize::MAX));
                        *left -= n as u64;
                        self.start += n;
                        return Ok(Some((at..at + n, at..at + n)));
                    }
                    ResponseFraming::UntilClose => {
                        self.start = self.end;
                        return Ok(Some((at..at + avail, at..at + avail)));
                    }
                    ResponseFraming::Chunked(d) => {
                        let r = d
                            .decode(&self.buf[at..self.end])
                            .map_err(|_| UpstreamError::Invalid)?;
                        self.start += r.consumed;
                        let data = at + r.data.start..at + r.data.end;
                        return Ok(Some((at..at + r.consumed, data)));
                    }
                    ResponseFraming::None => return Ok(None),
                }
            }
            self.start = 0;
            self.end = 0;
            match self.read(deadline).await? {
                0 if matches!(framing, ResponseFraming::UntilClose) => {
                    *framing = ResponseFraming::Length(0);
                    return Ok(None);
                }
                0 => return Err(UpstreamError::Reset),
                n if n == self.buf.len() && n < UPSTREAM_BUFFER => {
                    // A large body: read it in larger pieces from now on.
                    self.buf.resize(UPSTREAM_BUFFER, 0);
                }
                _ => {}
            }
        }
    }

    /// The bytes of a span returned by [`UpstreamConn::body_piece`], with the relay timer
    /// (for writing them to the client).
    pub fn piece(&mut self, span: Range<usize>) -> (&[u8], &mut Sleep) {
        (&self.buf[span], &mut self.relay_timer)
    }

    /// The relay timer alone (for writing to the client).
    pub fn relay_timer(&mut self) -> &mut Sleep {
        &mut self.relay_timer
    }

    /// Relays bytes both ways between `client` and this connection (after `101 Switching
    /// Protocols`), starting with `client_pending` (sent by the client after its head) and
    /// whatever the upstream sent after its head, until both sides close, either fails or
    /// nothing moves for `idle`.
    pub async fn tunnel<C: Transport + ?Sized>(
        &mut self,
        client: &mut C,
        client_pending: &[u8],
        idle: Duration,
    ) {
        let deadline = time::now() + idle;
        let upstream_pending = &self.buf[self.start..self.end];
        if !writev_all_until(
            &mut self.stream,
            [client_pending, &[]],
            &mut self.timer,
            deadline,
        )
        .await
            || !writev_all_until(client, [upstream_pending, &[]], &mut self.timer, deadline).await
        {
            return;
        }
        self.start = self.end;
        let mut client_buf = vec![0u8; 16 * 1024];
        tunnel(
            client,
            &mut self.stream,
            &mut client_buf,
            &mut self.buf,
            &mut self.timer,
            idle,
        )
        .await;
    }

    /// Whether bytes beyond the response are buffered (the upstream sent more than it
    /// announced: the connection cannot be reused).
    pub fn has_extra(&self) -> bool {
        self.start < self.end
    }

    /// Reads into the free end of the buffer. `Ok(0)` at the end of the stream.
    async fn read(&mut self, deadline: Instant) -> Result<usize, UpstreamError> {
        let end = self.end;
        match read_until(
            &mut self.stream,
            &mut self.buf[end..],
            &mut self.timer,
            deadline,
            None,
        )
        .await
        {
            ReadOutcome::Data(n) => {
                self.end += n;
                Ok(n)
            }
            ReadOutcome::Eof => Ok(0),
            ReadOutcome::Timeout => Err(UpstreamError::ReadTimeout),
            ReadOutcome::Error | ReadOutcome::Draining => Err(UpstreamError::Reset),
        }
    }
}

/// Parses a response head at the start of `input` (sans I/O, as [`UpstreamConn::read_head`]
/// does): `Some((len, framing))` when complete, `None` when more bytes are needed.
/// `head_request` says the request was `HEAD`.
pub fn parse_response_head(
    input: &[u8],
    head: &mut ResponseHead,
    head_request: bool,
) -> Result<Option<(usize, ResponseFraming)>, UpstreamError> {
    match parse_head(input, head)? {
        Some(n) => Ok(Some((n, framing(head, head_request)?))),
        None => Ok(None),
    }
}

/// Parses a response head at the start of `input`: `Some(len)` when complete.
fn parse_head(input: &[u8], head: &mut ResponseHead) -> Result<Option<usize>, UpstreamError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut fields);
    let n = match res.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(UpstreamError::Invalid),
    };
    // httparse hands out slices of `input`, except for a reason phrase that is not UTF-8
    // (obs-text), which it replaces by a static "": a span is only taken of a slice that
    // lies inside the input, and the reason is cut from the status line directly.
    let base = input.as_ptr() as usize;
    let span = |s: &[u8]| match (s.as_ptr() as usize).checked_sub(base) {
        Some(at) if at + s.len() <= n => at..at + s.len(),
        _ => 0..0,
    };
    head.status = res.code.ok_or(UpstreamError::Invalid)?;
    if !(100..=599).contains(&head.status) {
        return Err(UpstreamError::Invalid);
    }
    head.minor_version = res.version.ok_or(UpstreamError::Invalid)?;
    // `HTTP/1.1 200 ` is 13 bytes; the reason runs to the end of the line.
    let line_end = memchr::memchr(b'\n', &input[..n]).unwrap_or(0);
    let line_end = if line_end > 0 && input[line_end - 1] == b'\r' {
        line_end - 1
    } else {
        line_end
    };
    head.reason = if line_end > 13 { 13..line_end } else { 0..0 };
    head.fields.clear();
    // HTTP/1.0 upstreams are never reused, `keep-alive` or not: a 1.0 server would not
    // understand the chunked bodies sent on that connection.
    head.close = head.minor_version == 0;
    head.content_length = None;
    head.chunked = false;
    let mut transfer_encoding = false;
    for f in res.headers.iter() {
        let (name, value) = (f.name.as_bytes(), f.value);
        head.fields.push((span(name), span(value)));
        if name.eq_ignore_ascii_case(b"content-length") {
            let len = parse_length(value).ok_or(UpstreamError::Invalid)?;
            if head.content_length.is_some_and(|l| l != len) {
                return Err(UpstreamError::Invalid);
            }
            head.content_length = Some(len);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only `chunked` alone is relayed: another coding (gzip, ...) would reach the
            // client undeclared once the hop-by-hop field is rewritten.
            if transfer_encoding || !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(UpstreamError::Invalid);
            }
            transfer_encoding = true;
            head.chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                }
            }
        }
    }
    if transfer_encoding {
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and a message with
        // both must not be trusted to keep the connection in sync.
        if head.content_length.take().is_some() {
            head.close = true;
        }
    }
    head.len = n;
    Ok(Some(n))
}

fn framing(head: &ResponseHead, head_request: bool) -> Result<ResponseFraming, UpstreamError> {
    if head_request || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(ResponseFraming::None);
    }
    if head.chunked {
        return Ok(ResponseFraming::Chunked(ChunkedDecoder::new()));
    }
    match head.content_length {
        Some(n) => Ok(ResponseFraming::Length(n)),
        None => Ok(ResponseFraming::UntilClose),
    }
}

/// Whether the connection can serve another exchange after this response (the caller
/// also checks that the body was read to its end and nothing more came).
pub fn keeps_connection(head: &ResponseHead, framing: &ResponseFraming) -> bool {
    !head.close && !matches!(framing, ResponseFraming::UntilClose)
}

/// A `Content-Length` value: digits only, at most 19 of them.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// One direction of a tunnel.
struct Half<'a> {
    buf: &'a mut [u8],
    start: usize,
    end: usize,
    eof: bool,
}

/// Relays bytes both ways between `a` and `b` until both sides have closed (a close is
/// passed on as a half-close), either fails, or nothing moves for `idle`. `a_buf` and
/// `b_buf` hold what each side reads.
async fn tunnel<A: Transport + ?Sized, B: Transport + ?Sized>(
    a: &mut A,
    b: &mut B,
    a_buf: &mut [u8],
    b_buf: &mut [u8],
    timer: &mut Sleep,
    idle: Duration,
) {
    let mut deadline = time::now() + idle;
    let mut from_a = Half {
        buf: a_buf,
        start: 0,
        end: 0,
        eof: false,
    };
    let mut from_b = Half {
        buf: b_buf,
        start: 0,
        end: 0,
        eof: false,
    };
    arm(timer, deadline);
    poll_fn(|cx| {
        loop {
            let mut moved = false;
            for pumped in [
                pump(&mut from_a, &mut *a, &mut *b, cx),
                pump(&mut from_b, &mut *b, &mut *a, cx),
            ] {
                match pumped {
                    Pump::Failed => return Poll::Ready(()),
                    Pump::Moved => moved = true,
                    Pump::Waiting => {}
                }
            }
            if from_a.eof && from_b.eof && from_a.start == from_a.end && from_b.start == from_b.end
            {
                return Poll::Ready(());
            }
            if moved {
                deadline = time::now() + idle;
                continue;
            }
            return if expired(timer, deadline, cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
    })
    .await;
}

enum Pump {
    Moved,
    Waiting,
    Failed,
}

/// Moves what it can from `src` to `dst` without waiting.
fn pump<S: Transport + ?Sized, D: Transport + ?Sized>(
    half: &mut Half<'_>,
    src: &mut S,
    dst: &mut D,
    cx: &mut std::task::Context<'_>,
) -> Pump {
    let mut moved = false;
    if half.start == half.end && !half.eof {
        match src.poll_read(cx, half.buf) {
            Poll::Ready(Ok(0)) => {
                half.eof = true;
                // A half-close passed on; a transport that needs more (a TLS close_notify
                // still to flush) finishes it with its later polls.
                let _ = dst.poll_shutdown(cx);
                moved = true;
            }
            Poll::Ready(Ok(n)) => {
                half.start = 0;
                half.end = n;
                moved = true;
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => moved = true,
            Poll::Ready(Err(_)) => return Pump::Failed,
            Poll::Pending => {}
        }
    }
    if half.start < half.end {
        match dst.poll_write(cx, &half.buf[half.start..half.end]) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Pump::Failed,
            Poll::Ready(Ok(n)) => {
                half.start += n;
                moved = true;
            }
            Poll::Pending => {}
        }
        if half.start == half.end && matches!(dst.poll_flush(cx), Poll::Ready(Err(_))) {
            return Pump::Failed;
        }
    }
    if moved { Pump::Moved } else { Pump::Waiting }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Option<ResponseHead>, UpstreamError> {
        let mut head = ResponseHead::default();
        Ok(parse_head(input, &mut head)?.map(|_| head))
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(framing(&h, false), Ok(ResponseFraming::Length(5))));
        assert!(matches!(framing(&h, true), Ok(ResponseFraming::None)));
        let h =
            parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(matches!(
            framing(&h, false),
            Ok(ResponseFraming::Chunked(_))
        ));
        assert!(h.close, "both framings: never reuse the connection");
        let h = parse(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(framing(&h, false), Ok(ResponseFraming::None)));
        let h = parse(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert!(matches!(
            framing(&h, false),
            Ok(ResponseFraming::UntilClose)
        ));
        assert!(h.close);
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent").unwrap().is_none());
    }

    #[test]
    fn reason_phrase_with_obs_text_does_not_panic() {
        // Found by the response_head fuzzer: httparse replaces a non-UTF-8 reason by a
        // static "", whose address is outside the input.
        let input = b"HTTP/1.0 101 Switching Protoco\xff\xff\r\nupgrade: x\r\n\r\n";
        let h = parse(input).unwrap().unwrap();
        assert_eq!(&input[h.reason.clone()], b"Switching Protoco\xff\xff");
        let h = parse(b"HTTP/1.1 200 \r\n\r\n").unwrap().unwrap();
        assert!(h.reason.is_empty());
    }

    #[test]
    fn bad_heads_are_invalid() {
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 700 Odd\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(parse(bad).err(), Some(UpstreamError::Invalid), "{bad:?}");
        }
    }
}
