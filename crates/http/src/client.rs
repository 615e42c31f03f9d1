//! The client side of HTTP/1.1: one connection to an upstream, its response heads and
//! bodies, and the byte tunnel used after `101 Switching Protocols`.
//!
//! # Design
//! - An [`UpstreamConn`] owns its socket, one input buffer and one timer, all reused for
//!   every exchange while the connection sits in a pool. Every read and write is bounded by
//!   a deadline the caller computes (the operation's timeout, capped by the whole
//!   exchange's), so no call can hang.
//! - Response heads are parsed by the codec ([`crate::h1::response`]) into the same
//!   [`ResponseHead`] the server sends, so the proxy relays one by editing it in place.
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

use anygate_obs::metrics::{self, PoolState};
use anygate_runtime::net::TcpStream;
use anygate_runtime::time::{self, Sleep};
use anygate_runtime::transport::Transport;

use crate::error::ErrorKind;
use crate::h1::response::parse;
pub use crate::h1::response::{ResponseFraming, ResponseInfo, keeps_connection};
use crate::message::ResponseHead;
use crate::server::io::{ReadOutcome, arm, expired, read_until, writev_all_until};

/// Largest input buffer of a connection: a response head must fit in it, and large bodies
/// are read this much at a time.
pub const UPSTREAM_BUFFER: usize = 64 * 1024;
/// Input buffer of a new connection (most heads and bodies are small; the buffer grows to
/// [`UPSTREAM_BUFFER`] for a larger head or once a body fills it).
const INITIAL_BUFFER: usize = 16 * 1024;

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

/// Where one piece of a response body is in an [`UpstreamConn`]'s buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Body data (empty when this piece was framing only).
    pub data: Range<usize>,
    /// Trailer field lines, each with its CRLF (chunked bodies only).
    pub trailer: Range<usize>,
}

impl Piece {
    fn data(data: Range<usize>) -> Self {
        Self {
            data,
            trailer: 0..0,
        }
    }
}

/// One connection to an upstream, over any [`Transport`] (plain TCP by default).
#[derive(Debug)]
pub struct UpstreamConn<T = TcpStream> {
    stream: T,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The timer of reads and writes on this connection, reset in place for each deadline.
    timer: Sleep,
    /// A second timer, for writes to the client while a response is relayed.
    relay_timer: Sleep,
    /// The last response head read (a proxy may swap it out to relay it).
    pub head: ResponseHead,
    /// What the last head said about its framing and the connection.
    pub info: ResponseInfo,
    /// Until when the connection may rest in a pool (set by the pool at checkin).
    pub idle_until: Instant,
    /// The `anygate_upstream_connections` series (upstream slot, state) that counts this
    /// connection now, if any ([`UpstreamConn::count_as`]); left when it is dropped.
    gauge: Option<(u32, PoolState)>,
    /// Where it goes.
    pub addr: SocketAddr,
}

impl<T> UpstreamConn<T> {
    /// Counts this connection under `to` (an upstream's metric slot and a state) from now
    /// on, and no longer under the series it was counted in; the last series is left when
    /// the connection is dropped, whatever ends it. Out of line: only metrics use it.
    #[inline(never)]
    pub fn count_as(&mut self, to: Option<(u32, PoolState)>) {
        if self.gauge == to {
            return;
        }
        if let Some((slot, state)) = self.gauge {
            metrics::pool(slot, state, -1);
        }
        if let Some((slot, state)) = to {
            metrics::pool(slot, state, 1);
        }
        self.gauge = to;
    }
}

impl<T> Drop for UpstreamConn<T> {
    fn drop(&mut self) {
        if let Some((slot, state)) = self.gauge {
            metrics::pool(slot, state, -1);
        }
    }
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
            timer: time::sleep_until(now),
            relay_timer: time::sleep_until(now),
            head: ResponseHead::default(),
            info: ResponseInfo::default(),
            idle_until: time::now(),
            gauge: None,
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
                match parse(&self.buf[self.start..self.end], &mut self.head)
                    .map_err(|_| UpstreamError::Invalid)?
                {
                    Some(info) => {
                        self.start += info.len;
                        self.info = info;
                        return Ok(ResponseFraming::of(&info, self.head.status(), head_request));
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

    /// The next piece of the body: spans for [`UpstreamConn::piece`] of the body data and,
    /// in a chunked body, of trailer field lines (the framing itself is not relayed: a
    /// proxy frames what it sends). `None` at the end.
    pub async fn body_piece(
        &mut self,
        framing: &mut ResponseFraming,
        deadline: Instant,
    ) -> Result<Option<Piece>, UpstreamError> {
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
                        return Ok(Some(Piece::data(at..at + n)));
                    }
                    ResponseFraming::UntilClose => {
                        self.start = self.end;
                        return Ok(Some(Piece::data(at..at + avail)));
                    }
                    ResponseFraming::Chunked(d) => {
                        let r = d
                            .decode(&self.buf[at..self.end])
                            .map_err(|_| UpstreamError::Invalid)?;
                        self.start += r.consumed;
                        return Ok(Some(Piece {
                            data: at + r.data.start..at + r.data.end,
                            trailer: at + r.trailer.start..at + r.trailer.end,
                        }));
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
            ReadOutcome::Error | ReadOutcome::Draining | ReadOutcome::Reconfigured => {
                Err(UpstreamError::Reset)
            }
        }
    }
}

/// One direction of a tunnel.
struct Half<'a> {
    buf: &'a mut [u8],
    start: usize,
    end: usize,
    /// The source closed its side.
    eof: bool,
    /// The destination holds nothing unflushed of what was written to it.
    flushed: bool,
    /// The close was passed on to the destination (after a flush).
    shut: bool,
}

impl Half<'_> {
    fn done(&self) -> bool {
        self.eof && self.start == self.end && self.shut
    }
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
        flushed: true,
        shut: false,
    };
    let mut from_b = Half {
        buf: b_buf,
        start: 0,
        end: 0,
        eof: false,
        flushed: true,
        shut: false,
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
            if from_a.done() && from_b.done() {
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
                half.flushed = false;
                moved = true;
            }
            Poll::Pending => {}
        }
    }
    // Everything read so far was handed over: make it leave (a buffering transport, TLS,
    // holds it until flushed; plain TCP answers at once), then pass a close on.
    if half.start == half.end {
        if !half.flushed {
            match dst.poll_flush(cx) {
                Poll::Ready(Ok(())) => half.flushed = true,
                Poll::Ready(Err(_)) => return Pump::Failed,
                Poll::Pending => {}
            }
        }
        if half.eof && half.flushed && !half.shut {
            match dst.poll_shutdown(cx) {
                Poll::Ready(_) => {
                    half.shut = true;
                    moved = true;
                }
                Poll::Pending => {}
            }
        }
    }
    if moved { Pump::Moved } else { Pump::Waiting }
}
