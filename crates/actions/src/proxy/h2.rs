//! HTTP/2 to upstreams: `h2c://` rules, and pools with `protocol: h2` (prior knowledge
//! over plain TCP, ALPN `h2` over TLS) or `protocol: auto` (over TLS, what ALPN picks).
//!
//! # Connections
//! Each worker keeps a few multiplexed connections per target (and TLS setup), shared by
//! all its requests: a request takes the least loaded one with a stream to spare (the
//! upstream's `max_concurrent_streams`), and opens a new one only when none has. One
//! request opens it while the worker's others wait for it, so a burst of requests makes one
//! connection, not one each. A connection's `h2` state machine runs in a task of its own;
//! it closes once no stream has used it for `proxy.idle_timeout`, or when the upstream
//! closes it (GOAWAY, a broken socket), and is then no longer handed out.
//!
//! With `auto`, a TLS handshake that agrees on `http/1.1` (or on nothing) hands its
//! connection to the HTTP/1.1 idle pool, and the worker remembers the target speaks
//! HTTP/1.1: its next requests go the HTTP/1.1 way at once.
//!
//! # One exchange
//! ```text
//! request head (as for HTTP/1.1: filters, forwarding fields, Host) ─► HTTP/2 head
//!   (`:authority` from Host, connection-specific fields dropped, `te: trailers` kept)
//!   ─► body relayed as it comes, within the upstream's window
//!      ─ while the response head, then its body, come back (gRPC streams both ways)
//!   ─► trailers relayed (HTTP/2 clients; chunked HTTP/1.1 clients)
//! ```
//! `grpc-timeout` shortens the exchange's deadline; a deadline passed before the response
//! head answers `DEADLINE_EXCEEDED` (the gateway's errors answer gRPC calls with HTTP 200
//! and a `grpc-status`), after it ends the stream with `grpc-status: 4` trailers.
//!
//! # Invariants
//! - Nothing is buffered beyond one DATA frame each way: a request body piece's window is
//!   given back to the client only once the upstream took it, and a response piece's to
//!   the upstream once the client took it.
//! - A request is sent again only when none of it was sent (no connection could be opened
//!   to a target: another one is tried as `proxy.retries` allows).
//! - A response cut short (the upstream reset the stream, its connection broke, the idle
//!   timeout) is cut short for the client too: RST_STREAM over HTTP/2, the connection
//!   closed over HTTP/1.1; never a clean end.
//!
//! # Non-goals
//! Retries of a request once it was sent (REFUSED_STREAM included); `Expect:
//! 100-continue` passed on; WebSocket to an HTTP/2 target (RFC 8441); active health checks
//! over HTTP/2 (they speak HTTP/1.1: use `kind: tcp` for an HTTP/2-only target).

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anygate_http::client::UpstreamConn;
use anygate_http::message::{BodyFraming, Fields, Version, is_connection_specific};
use anygate_http::server::H2Body;
use anygate_http::{ErrorKind, Exchange, Request};
use anygate_runtime::compat::TokioIo;
use anygate_runtime::sync::Event;
use anygate_runtime::time::{self, Sleep};
use bytes::Bytes;
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue};

use super::pool::{self, Slot, Target};
use super::{Clock, Outcome, Protocol, Proxy, Tried, UpstreamError, headers};

/// A stream's window for response bodies, and the connection's: as the server's
/// (`server.h2`), large enough for gRPC streams to flow without a round trip per frame.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// The largest response head accepted from an upstream (decoded).
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Request body bytes `h2` may hold for one stream beyond the window.
const SEND_BUFFER: usize = 256 * 1024;

/// Where a worker's connections to one target go: the target, and its pool's TLS setup
/// (0 for plain TCP).
type Key = (u32, u64);

/// What a connection's task and its users share.
#[derive(Debug, Default)]
struct ConnState {
    /// The connection ended: it is no longer handed out.
    closed: AtomicBool,
    /// Streams this worker's requests have open on it.
    streams: AtomicUsize,
    /// When its last stream ended (ms on the worker's clock, [`millis`]).
    last_used: std::sync::atomic::AtomicU64,
}

/// One multiplexed connection (a handle: clones share it).
#[derive(Clone)]
struct Conn {
    send: SendRequest<Bytes>,
    state: Arc<ConnState>,
    addr: SocketAddr,
}

/// A worker's connections to one target.
#[derive(Default)]
struct Entry {
    conns: Vec<Conn>,
    /// The connection a request of this worker is opening: the worker's other requests
    /// wait for it instead of opening their own.
    opening: Option<Arc<Opening>>,
}

thread_local! {
    static CONNS: RefCell<HashMap<Key, Entry>> = RefCell::new(HashMap::new());
    /// `auto` pools (by their TLS setup's id) a target of which agreed on HTTP/1.1.
    static SPEAK_H1: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

fn millis(t: Instant) -> u64 {
    super::resilience::millis(t)
}

/// A stream in use on a connection: counted until dropped.
struct Lease(Arc<ConnState>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0
            .last_used
            .store(millis(time::now()), Ordering::Relaxed);
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Pick {
    Got(SendRequest<Bytes>, Lease, SocketAddr),
    /// Another request is opening a connection: wait for it.
    Wait(Arc<Opening>),
    /// Open one (this request was made the one that does).
    Open(Arc<Opening>),
}

/// A connection being opened: set once it is there (with it) or failed.
///
/// The scheduler may move a task to another worker while it waits, so the requests that
/// waited take the connection from here (not from their worker's map, which may be another
/// one's by then), and the next request of the worker that started the opening adds it to
/// that worker's map. A connection may so sit in two workers' maps: its streams are
/// counted on it, not per map.
#[derive(Default)]
struct Opening {
    done: Event,
    conn: std::sync::OnceLock<Conn>,
}

/// A stream on `c`, if it has one to spare.
fn stream_on(c: &Conn) -> Option<Pick> {
    let max = c.send.current_max_send_streams().max(1);
    // Counted first, then checked: the connection's task closes it only when it sees no
    // stream after saying it is closed (`drive`), so one of the two sees the other.
    let before = c.state.streams.fetch_add(1, Ordering::AcqRel);
    if before >= max || c.state.closed.load(Ordering::Acquire) {
        c.state.streams.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    Some(Pick::Got(c.send.clone(), Lease(c.state.clone()), c.addr))
}

/// Adds `c` to this worker's connections to `key` (once).
fn keep(key: Key, c: &Conn) {
    CONNS.with_borrow_mut(|map| keep_in(map.entry(key).or_default(), c));
}

fn keep_in(e: &mut Entry, c: &Conn) {
    if !e.conns.iter().any(|x| Arc::ptr_eq(&x.state, &c.state)) {
        e.conns.push(c.clone());
    }
}

/// The least loaded open connection with a stream to spare, or what to do instead.
fn pick(key: Key) -> Pick {
    CONNS.with_borrow_mut(|map| {
        sweep(map);
        let e = map.entry(key).or_default();
        if let Some(op) = e.opening.take_if(|op| op.done.is_set())
            && let Some(c) = op.conn.get()
        {
            keep_in(e, c);
        }
        e.conns.retain(|c| !c.state.closed.load(Ordering::Acquire));
        let best = e
            .conns
            .iter()
            .filter(|c| {
                c.state.streams.load(Ordering::Acquire) < c.send.current_max_send_streams().max(1)
            })
            .min_by_key(|c| c.state.streams.load(Ordering::Acquire));
        if let Some(got) = best.and_then(stream_on) {
            return got;
        }
        if let Some(op) = &e.opening {
            return Pick::Wait(op.clone());
        }
        let op = Arc::new(Opening::default());
        e.opening = Some(op.clone());
        Pick::Open(op)
    })
}

/// Whether an `auto` pool is known (on this worker) to have a target that picked HTTP/1.1:
/// its requests then take the HTTP/1.1 path before a target is chosen (once per request).
pub(super) fn speaks_h1(pool: &super::Pool) -> bool {
    pool.protocol == Protocol::Auto
        && pool
            .tls
            .as_ref()
            .is_some_and(|t| SPEAK_H1.with_borrow(|s| s.contains(&t.id)))
}

/// At most once a second, drops the closed connections of every target and the targets
/// left with none (a reload's old targets are never picked again).
fn sweep(map: &mut HashMap<Key, Entry>) {
    thread_local! {
        static LAST: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }
    let now = time::now();
    if LAST
        .get()
        .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
    {
        return;
    }
    LAST.set(Some(now));
    map.retain(|_, e| {
        e.conns.retain(|c| !c.state.closed.load(Ordering::Acquire));
        !e.conns.is_empty() || e.opening.as_ref().is_some_and(|o| !o.done.is_set())
    });
}

/// Held by the request opening a connection: when it is done (or dropped: the client
/// left), the requests waiting for it go on.
struct Opened(Arc<Opening>);

impl Drop for Opened {
    fn drop(&mut self) {
        self.0.done.set();
    }
}

/// Drives one connection until the upstream closes it or it has been idle (no stream)
/// for `idle`.
async fn drive<F>(conn: F, state: Arc<ConnState>, idle: Duration)
where
    F: Future<Output = Result<(), h2::Error>>,
{
    let mut conn = pin!(conn);
    let mut timer = time::sleep_until(time::now() + idle);
    poll_fn(|cx| {
        if conn.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        while Pin::new(&mut timer).poll(cx).is_ready() {
            if state.streams.load(Ordering::Acquire) > 0 {
                timer.reset(time::now() + idle);
                continue;
            }
            let since = state.last_used.load(Ordering::Relaxed);
            let now = time::now();
            let quiet = Duration::from_millis(millis(now).saturating_sub(since));
            if since == 0 || quiet >= idle {
                // Closed first, then no stream checked: a request that took one meanwhile
                // (`stream_on` counts before it checks) keeps the connection open.
                state.closed.store(true, Ordering::Release);
                if state.streams.load(Ordering::Acquire) == 0 {
                    return Poll::Ready(());
                }
                state.closed.store(false, Ordering::Release);
                timer.reset(now + idle);
                continue;
            }
            timer.reset(now + (idle - quiet));
        }
        Poll::Pending
    })
    .await;
    state.closed.store(true, Ordering::Release);
}

/// How a stream to the target could be had.
enum Leg {
    /// A stream to open on this connection.
    H2(SendRequest<Bytes>, Lease, SocketAddr),
    /// The target speaks HTTP/1.1 (an `auto` pool's ALPN said so).
    H1,
}

/// A stream the upstream did not process: the request may be sent again.
struct Unsent;

/// The deadline-bounded parts of an exchange, and its errors.
enum Broke {
    /// Answer with this (nothing reached the client yet).
    Kind(ErrorKind),
    /// The upstream refused the stream unprocessed (a GOAWAY that left it out,
    /// REFUSED_STREAM).
    Refused,
    /// The client's side failed.
    Client(ErrorKind),
}

/// The request body on its way up: pieces read from the client (an HTTP/2 body it
/// polls itself, or pieces the caller reads over HTTP/1.1), sent within the stream's
/// window.
struct Pump {
    body: Option<H2Body>,
    send: Option<SendStream<Bytes>>,
    pending: Option<Bytes>,
    /// `pending` is the body's last piece.
    last: bool,
    /// Bytes sent, to tell progress.
    sent: u64,
}

enum PumpError {
    Client(ErrorKind),
    Upstream,
}

impl Pump {
    /// Sends `pending` as the upstream's window allows (the last piece with END_STREAM).
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PumpError>> {
        let Some(send) = &mut self.send else {
            self.pending = None;
            return Poll::Ready(Ok(()));
        };
        while let Some(mut data) = self.pending.take() {
            if data.is_empty() {
                if self.last {
                    send.send_data(Bytes::new(), true)
                        .map_err(|_| PumpError::Upstream)?;
                    self.send = None;
                }
                break;
            }
            send.reserve_capacity(data.len());
            let have = send.capacity();
            if have == 0 {
                self.pending = Some(data);
                match send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(_))) => continue,
                    Poll::Ready(_) => return Poll::Ready(Err(PumpError::Upstream)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let piece = data.split_to(have.min(data.len()));
            let end = data.is_empty() && self.last;
            self.sent += piece.len() as u64;
            send.send_data(piece, end)
                .map_err(|_| PumpError::Upstream)?;
            if end {
                self.send = None;
                break;
            }
            if !data.is_empty() {
                self.pending = Some(data);
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Relays an HTTP/2 client's body until it is all sent (ready with `Ok`), or fails;
    /// over HTTP/1.1 (no body of its own), sends what is pending.
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PumpError>> {
        loop {
            if let Poll::Ready(Err(e)) = self.poll_flush(cx) {
                return Poll::Ready(Err(e));
            }
            if self.pending.is_some() {
                return Poll::Pending;
            }
            if self.send.is_none() {
                return Poll::Ready(Ok(()));
            }
            let Some(body) = &mut self.body else {
                return Poll::Ready(Ok(()));
            };
            match body.poll_piece(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    self.last = body.is_end();
                    self.pending = Some(b);
                }
                Poll::Ready(None) => {
                    self.last = true;
                    self.pending = Some(Bytes::new());
                }
                Poll::Ready(Some(Err(k))) => return Poll::Ready(Err(PumpError::Client(k))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Whether the body is still on its way.
    fn active(&self) -> bool {
        self.send.is_some()
    }
}

/// `grpc-timeout` (`1*8DIGIT` and a unit: `H`, `M`, `S`, `m`, `u`, `n`).
pub(super) fn grpc_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Fields HTTP/2 forbids in a request (RFC 9113 §8.2.2; `te: trailers` is added back by
/// the caller), and `expect` (not passed on).
fn not_for_h2(name: &[u8]) -> bool {
    is_connection_specific(name) || name.eq_ignore_ascii_case(b"expect")
}

/// The HTTP/2 request for an HTTP/1.1 head the proxy wrote (`head`: request line, fields,
/// empty line): `Host` becomes `:authority`, connection-specific fields are dropped, and
/// `te: trailers` is sent when the client asked for trailers (gRPC does). `None` when the
/// head cannot be expressed (an authority or a field `http` refuses).
pub(super) fn h2_request(head: &[u8], tls: bool, te_trailers: bool) -> Option<http::Request<()>> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next()?;
    let mut parts = first.splitn(3, |&b| b == b' ');
    let method = http::Method::from_bytes(parts.next()?).ok()?;
    let target = parts.next()?;
    let mut req = http::Request::new(());
    *req.method_mut() = method;
    let mut authority: Option<&[u8]> = None;
    let fields = req.headers_mut();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"host") {
            authority = Some(value);
            continue;
        }
        if not_for_h2(name) {
            continue;
        }
        fields.append(
            HeaderName::from_bytes(name).ok()?,
            HeaderValue::from_bytes(value).ok()?,
        );
    }
    if te_trailers {
        fields.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    let uri = http::Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(authority?)
        .path_and_query(target)
        .build()
        .ok()?;
    *req.uri_mut() = uri;
    Some(req)
}

/// Whether the client's `TE` names `trailers`.
fn wants_trailers(req: &Request<'_>) -> bool {
    req.headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"te"))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .any(|t| {
            let t = t.split(|&b| b == b';').next().unwrap_or_default();
            t.trim_ascii().eq_ignore_ascii_case(b"trailers")
        })
}

/// How the response body goes to the client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Down {
    /// As DATA frames (trailers as HEADERS).
    H2,
    /// Chunked by the proxy (trailers in the last chunk).
    Chunked,
    /// By its length, or until the connection closes (trailers dropped).
    Framed,
}

/// What ended the wait for the response head.
enum Head {
    Got(http::Response<RecvStream>),
    Failed(Broke),
}

impl Proxy {
    /// A stream to `target`: on a connection of this worker with room, or on a new one.
    async fn leg(&self, target: &Arc<Target>, clock: &mut Clock<'_>) -> Result<Leg, ErrorKind> {
        let key = (target.id, self.pool.idle_key(target));
        let deadline = clock.connect();
        loop {
            if speaks_h1(&self.pool) {
                return Ok(Leg::H1);
            }
            let waited = match pick(key) {
                Pick::Got(send, lease, addr) => return Ok(Leg::H2(send, lease, addr)),
                Pick::Wait(op) => {
                    time::timeout_at(deadline, poll_fn(|cx| op.done.poll_wait(cx)))
                        .await
                        .map_err(|_| clock.kind(UpstreamError::ConnectTimeout))?;
                    op
                }
                Pick::Open(op) => {
                    let opened = Opened(op);
                    match self.open_h2(target, deadline, clock).await? {
                        Some(conn) => {
                            let _ = opened.0.conn.set(conn);
                            opened.0.clone()
                        }
                        None => {
                            if let Some(t) = &self.pool.tls {
                                SPEAK_H1.with_borrow_mut(|s| s.insert(t.id));
                            }
                            return Ok(Leg::H1);
                        }
                    }
                }
            };
            // The connection opened (on whatever worker this task runs now); if it failed,
            // or has no stream to spare, look again.
            if let Some(c) = waited.conn.get() {
                keep(key, c);
                if let Some(Pick::Got(send, lease, addr)) = stream_on(c) {
                    return Ok(Leg::H2(send, lease, addr));
                }
            }
        }
    }

    /// Opens a connection and starts its task; `None` when an `auto` pool's TLS handshake
    /// agreed on HTTP/1.1 (the connection then rests in the HTTP/1.1 idle pool).
    async fn open_h2(
        &self,
        target: &Arc<Target>,
        deadline: Instant,
        clock: &Clock<'_>,
    ) -> Result<Option<Conn>, ErrorKind> {
        let resolved = time::timeout_at(deadline, target.host.addrs())
            .await
            .map_err(|_| clock.kind(UpstreamError::ConnectTimeout))?;
        if resolved.addrs.is_empty() {
            return Err(ErrorKind::UpstreamUnresolved);
        }
        let tls = self
            .pool
            .tls
            .as_ref()
            .map(|t| t.h2.as_ref().unwrap_or(&t.client));
        let (wire, addr, alpn) = self
            .dial(target, &resolved.addrs, deadline, clock, tls)
            .await?;
        if tls.is_some() && alpn.as_deref() != Some(anygate_tls::ALPN_H2) {
            if self.pool.protocol == Protocol::Auto {
                pool::checkin(
                    UpstreamConn::new(wire, addr),
                    self.pool.idle_key(target),
                    self.options.max_idle,
                    self.options.idle_timeout,
                    self.metric,
                );
                return Ok(None);
            }
            warn_no_h2(addr, target.host.name());
            return Err(ErrorKind::UpstreamInvalid);
        }
        let handshake = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .max_send_buffer_size(SEND_BUFFER)
            .enable_push(false)
            .handshake::<_, Bytes>(TokioIo::new(wire));
        let (send, conn) = match time::timeout_at(deadline, handshake).await {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => return Err(ErrorKind::UpstreamReset),
            Err(_) => return Err(clock.kind(UpstreamError::ConnectTimeout)),
        };
        let state = Arc::new(ConnState::default());
        anygate_runtime::spawn(drive(conn, state.clone(), self.options.idle_timeout));
        Ok(Some(Conn { send, state, addr }))
    }

    /// Relays the request over HTTP/2 (`head`: the HTTP/1.1 head built for it, its span at
    /// `span_at`); `false` when the target turned out to speak HTTP/1.1 (an `auto` pool),
    /// nothing sent: the caller goes the HTTP/1.1 way.
    pub(super) async fn respond_h2(
        &self,
        req: &Request<'_>,
        span_at: Option<usize>,
        res: &mut Exchange<'_>,
        clock: &mut Clock<'_>,
        scratch: &mut Vec<u8>,
    ) -> bool {
        if let Some(t) = req.header(b"grpc-timeout").and_then(grpc_timeout) {
            // The caller's deadline bounds the exchange (and goes up as it came).
            let d = time::now() + t;
            clock.total = Some(clock.total.map_or(d, |x| x.min(d)));
        }
        let pool = &*self.pool;
        let retry = &self.options.retry;
        let mut now = resilience_now(pool.guarded || retry.attempts > 1);
        let pool_ticket = match &pool.breaker {
            None => None,
            Some(b) => match b.admit(now) {
                Ok(t) => Some(t),
                Err(ms) => {
                    self.refuse(res, super::Refusal::open(ms));
                    return true;
                }
            },
        };
        if retry.attempts > 1 {
            pool.budget.request(now);
        }
        let finish = |t, outcome, now| pool.finish(t, outcome, now);
        // Retried: a connection that could not be opened (as `proxy.retries` allows), and
        // once, a stream the upstream refused before processing it (GOAWAY, REFUSED_STREAM,
        // a connection that died as it was taken).
        let mut tried = Tried::default();
        let mut attempt = 0;
        let mut refused_again = true;
        loop {
            attempt += 1;
            let chosen = match pool.choose(req, res.ctx().client, tried, now) {
                Ok(c) => c,
                Err(no) => {
                    finish(pool_ticket, Outcome::Neutral, now);
                    self.refuse(res, no.into());
                    return true;
                }
            };
            tried.add(chosen.index);
            let target = chosen.member.target.clone();
            let Some(_slot) = Slot::take(&target, self.options.max_conns) else {
                pool.record(chosen, Outcome::Neutral, now);
                finish(pool_ticket, Outcome::Neutral, now);
                self.fail(res, ErrorKind::UpstreamBusy);
                return true;
            };
            let (send, lease, addr) = match self.leg(&target, clock).await {
                Ok(Leg::H2(send, lease, addr)) => (send, lease, addr),
                Ok(Leg::H1) => return false,
                Err(kind) => {
                    now = resilience_now(pool.guarded || retry.attempts > 1);
                    pool.record(chosen, Outcome::Failure, now);
                    let again = attempt < retry.attempts
                        && retry.on & super::retry_on::CONNECT_FAILURE != 0
                        && clock.total.is_none_or(|t| time::now() < t)
                        && pool.budget.try_retry(now);
                    if again {
                        continue;
                    }
                    finish(pool_ticket, Outcome::Failure, now);
                    self.fail(res, kind);
                    return true;
                }
            };
            let ctx = res.ctx_mut();
            ctx.upstream = Some(addr);
            ctx.attempt = ctx.attempt.saturating_add(1);
            if let Some(at) = span_at {
                headers::set_span(scratch, at, &anygate_obs::trace::new_span_id());
            }
            // `scratch` keeps the head until the response comes: a refused stream is sent
            // again from it.
            let Some(request) = h2_request(scratch, pool.tls.is_some(), wants_trailers(req)) else {
                scratch.clear();
                finish(pool_ticket, Outcome::Neutral, now);
                pool.record(chosen, Outcome::Neutral, now);
                self.fail(res, ErrorKind::BadHost);
                return true;
            };
            let done = self
                .exchange_h2(send, request, req, res, clock, scratch)
                .await;
            if pool.guarded || pool_ticket.is_some() {
                now = resilience_now(true);
            }
            let (outcome, status) = match done {
                Ok(v) => v,
                Err(Unsent) => {
                    // Not handed out again; its task ends when the upstream closes it.
                    lease.0.closed.store(true, Ordering::Release);
                    if refused_again && clock.total.is_none_or(|t| time::now() < t) {
                        refused_again = false;
                        tried = Tried::default();
                        continue;
                    }
                    (Outcome::Failure, 0)
                }
            };
            if status == 0 && res.error_kind() == Some(ErrorKind::UpstreamReadTimeout) {
                // No answer in time: the connection may be dead without a word (a dropped
                // NAT entry). New requests get a fresh one; streams in flight finish on it.
                lease.0.closed.store(true, Ordering::Release);
            }
            drop(lease);
            scratch.clear();
            let outcome = match (outcome, status) {
                (Outcome::Success, 502..=504) => Outcome::Failure,
                (o, _) => o,
            };
            if !res.is_sent() {
                self.fail(res, ErrorKind::UpstreamReset);
            }
            pool.record(chosen, outcome, now);
            finish(pool_ticket, outcome, now);
            return true;
        }
    }

    /// One stream: the request and its body up, the response and its trailers down. The
    /// outcome for the target's record, and the upstream's status (0 when none); or
    /// [`Unsent`]: the upstream refused the stream before processing it, and nothing of
    /// the request body was taken (it may be sent again).
    async fn exchange_h2(
        &self,
        send: SendRequest<Bytes>,
        request: http::Request<()>,
        req: &Request<'_>,
        res: &mut Exchange<'_>,
        clock: &mut Clock<'_>,
        scratch: &mut Vec<u8>,
    ) -> Result<(Outcome, u16), Unsent> {
        let mut timer = time::sleep_until(clock.read());
        let body_present = res.body_present();
        let ready = time::timeout_at(clock.write(), send.ready()).await;
        let Ok(Ok(mut send)) = ready else {
            return Err(Unsent);
        };
        let Ok((response, up)) = send.send_request(request, !body_present) else {
            return Err(Unsent);
        };
        let mut pump = Pump {
            body: if body_present {
                res.take_h2_body()
            } else {
                None
            },
            send: body_present.then_some(up),
            pending: None,
            last: false,
            sent: 0,
        };
        let mut response = pin!(response);
        let mut early = None;
        if pump.active() && pump.body.is_none() {
            // An HTTP/1.1 client's body goes first, piece by piece, watching for an early
            // answer.
            early = self
                .send_h1_body(&mut pump, Some(response.as_mut()), res, &mut timer, clock)
                .await;
            if let Some(Head::Got(r)) = &early
                && pump.active()
            {
                if r.status().as_u16() < 400 {
                    // An upstream that answers before the body ends (it streams) still
                    // gets the rest (regression: it waited for an END_STREAM that never
                    // came).
                    if let Some(Head::Failed(_)) = self
                        .send_h1_body(&mut pump, None, res, &mut timer, clock)
                        .await
                    {
                        res.close();
                    }
                } else {
                    // A refusal: the rest of the body is not read (nor sent).
                    res.close();
                }
            }
        }
        let got = match early {
            Some(h) => h,
            None => {
                let mut idle = Idle::new(clock);
                timer.arm(idle.deadline);
                let waited = {
                    let wait = pin!(poll_fn(|cx| {
                        poll_head(response.as_mut(), &mut pump, &mut timer, &mut idle, cx)
                    }));
                    res.unless_client_gone(wait).await
                };
                match waited {
                    Some(h) => h,
                    None => Head::Failed(Broke::Client(ErrorKind::ClientClosed)),
                }
            }
        };
        let response = match got {
            Head::Got(r) => r,
            Head::Failed(Broke::Refused) if !body_present => return Err(Unsent),
            Head::Failed(b) => {
                let (outcome, kind) = match b {
                    Broke::Kind(k) => (Outcome::Failure, clock_kind(clock, k)),
                    Broke::Refused => (Outcome::Failure, ErrorKind::UpstreamReset),
                    Broke::Client(k) => (Outcome::Neutral, k),
                };
                self.fail(res, kind);
                return Ok((outcome, 0));
            }
        };
        let status = response.status().as_u16();
        if status >= 400 && res.intercepts(status) {
            res.send_error_page(status, anygate_router::status::reason(status));
            return Ok((Outcome::Success, status));
        }
        let (parts, recv) = response.into_parts();
        let length = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let head = res.respond(status, anygate_router::status::reason(status));
        for (name, value) in &parts.headers {
            head.fields
                .append(name.as_str().as_bytes(), value.as_bytes());
        }
        headers::relay_head(head, self.options.via, scratch);
        scratch.clear();
        // 1xx and 204 have no length; a 304 or a response to `HEAD` keeps the one that
        // describes the representation, and none of them is chunked (regression: a 304
        // without a length went chunked, its `0\r\n\r\n` read as the next response).
        let no_length = status < 200 || status == 204;
        let no_body = anygate_http::message::bodiless(status) || req.method() == b"HEAD";
        let framing = match (length, req.version()) {
            (Some(n), _) if !no_length => BodyFraming::Length(n),
            _ if no_body => BodyFraming::Unframed,
            (_, Version::Http11) => BodyFraming::Chunked,
            _ => BodyFraming::Unframed,
        };
        if framing == BodyFraming::Unframed && !no_body && req.version() == Version::Http10 {
            res.close();
        }
        res.start_stream(framing);
        let down = match (req.version(), framing) {
            (Version::Http2, _) => Down::H2,
            (_, BodyFraming::Chunked) => Down::Chunked,
            _ => Down::Framed,
        };
        self.relay_response(recv, pump, res, &mut timer, clock, down)
            .await;
        Ok((Outcome::Success, status))
    }

    /// Sends an HTTP/1.1 client's body, watching `response` (if given) for an early
    /// answer: the head if one came, or why it failed.
    async fn send_h1_body(
        &self,
        pump: &mut Pump,
        mut response: Option<Pin<&mut h2::client::ResponseFuture>>,
        res: &mut Exchange<'_>,
        timer: &mut Sleep,
        clock: &mut Clock<'_>,
    ) -> Option<Head> {
        while pump.active() {
            if pump.pending.is_none() {
                match res.body_chunk().await {
                    Ok(Some(d)) => pump.pending = Some(Bytes::copy_from_slice(d)),
                    Ok(None) => {
                        pump.last = true;
                        pump.pending = Some(Bytes::new());
                    }
                    Err(k) => return Some(Head::Failed(Broke::Client(k))),
                }
            }
            let deadline = clock.write();
            timer.arm(deadline);
            let sent = poll_fn(|cx| {
                if let Some(r) = &mut response
                    && let Poll::Ready(r) = r.as_mut().poll(cx)
                {
                    return Poll::Ready(Some(head_of(r)));
                }
                match pump.poll_flush(cx) {
                    Poll::Ready(Ok(())) => Poll::Ready(None),
                    Poll::Ready(Err(_)) => Poll::Ready(Some(match &mut response {
                        Some(r) => response_or_reset(r.as_mut(), cx),
                        None => Head::Failed(Broke::Kind(ErrorKind::UpstreamReset)),
                    })),
                    Poll::Pending if timer.poll_expired(deadline, cx) => Poll::Ready(Some(
                        Head::Failed(Broke::Kind(ErrorKind::UpstreamWriteTimeout)),
                    )),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            if sent.is_some() {
                return sent;
            }
        }
        None
    }

    /// The response body, then its trailers, while an HTTP/2 client's request body still
    /// goes up.
    async fn relay_response(
        &self,
        mut recv: RecvStream,
        mut pump: Pump,
        res: &mut Exchange<'_>,
        timer: &mut Sleep,
        clock: &mut Clock<'_>,
        down: Down,
    ) {
        let chunked = down == Down::Chunked;
        let client_h2 = down == Down::H2;
        let write_timeout = self.options.write_timeout;
        let mut idle = Idle::new(clock);
        loop {
            idle.extend(timer);
            let event = pin!(poll_fn(|cx| {
                let before = pump.sent;
                if let Some(e) = drive_pump(&mut pump, cx) {
                    return Poll::Ready(Err(e));
                }
                if pump.sent != before {
                    idle.extend(timer);
                }
                let deadline = idle.deadline;
                match recv.poll_data(cx) {
                    Poll::Ready(Some(Ok(b))) => Poll::Ready(Ok(Some(b))),
                    Poll::Ready(Some(Err(_))) => {
                        Poll::Ready(Err(Broke::Kind(ErrorKind::UpstreamReset)))
                    }
                    Poll::Ready(None) => Poll::Ready(Ok(None)),
                    Poll::Pending if timer.poll_expired(deadline, cx) => {
                        Poll::Ready(Err(Broke::Kind(ErrorKind::UpstreamReadTimeout)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }));
            let event = if client_h2 {
                // A client that resets its stream (a cancelled gRPC call) ends the upstream
                // one at once, not at its next message.
                match res.unless_client_gone(event).await {
                    Some(e) => e,
                    None => return,
                }
            } else {
                event.await
            };
            match event {
                Ok(Some(data)) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    if data.is_empty() {
                        continue;
                    }
                    if chunked {
                        let mut line = [0u8; 18];
                        let n = anygate_http::h1::chunked::chunk_size_line(data.len(), &mut line);
                        res.push_body(&line[..n]);
                    }
                    if !res.write_body(&data, timer, write_timeout).await {
                        return;
                    }
                    if chunked {
                        res.push_body(b"\r\n");
                    }
                }
                Ok(None) => break,
                Err(b) => return self.cut_short(res, b, clock, timer).await,
            }
        }
        idle.extend(timer);
        let deadline = idle.deadline;
        let trailers = poll_fn(|cx| {
            if let Some(e) = drive_pump(&mut pump, cx) {
                return Poll::Ready(Err(e));
            }
            match recv.poll_trailers(cx) {
                Poll::Ready(Ok(t)) => Poll::Ready(Ok(t)),
                Poll::Ready(Err(_)) => Poll::Ready(Err(Broke::Kind(ErrorKind::UpstreamReset))),
                Poll::Pending if timer.poll_expired(deadline, cx) => {
                    Poll::Ready(Err(Broke::Kind(ErrorKind::UpstreamReadTimeout)))
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match trailers {
            Ok(Some(map)) if chunked || client_h2 => {
                let mut fields = Fields::new();
                for (name, value) in &map {
                    fields.append(name.as_str().as_bytes(), value.as_bytes());
                }
                res.send_trailers(&fields, timer, write_timeout).await;
            }
            Ok(_) if chunked => {
                res.send_trailers(&Fields::new(), timer, write_timeout)
                    .await;
            }
            Ok(_) => {}
            Err(b) => self.cut_short(res, b, clock, timer).await,
        }
        if let Some(b) = &pump.body {
            res.ctx_mut().bytes_in += b.received();
        }
    }

    /// The response broke off after its head left: a gRPC call past its deadline ends
    /// with `DEADLINE_EXCEEDED` trailers; anything else is cut short.
    async fn cut_short(
        &self,
        res: &mut Exchange<'_>,
        b: Broke,
        clock: &Clock<'_>,
        timer: &mut Sleep,
    ) {
        let kind = match b {
            Broke::Kind(k) => clock_kind(clock, k),
            Broke::Refused => ErrorKind::UpstreamReset,
            Broke::Client(k) => k,
        };
        if res.is_grpc() && kind == ErrorKind::UpstreamTotalTimeout {
            let mut fields = Fields::new();
            fields.append(b"grpc-status", b"4");
            fields.append(b"grpc-message", b"deadline exceeded");
            if res
                .send_trailers(&fields, timer, self.options.write_timeout)
                .await
            {
                return;
            }
        }
        res.abort();
    }
}

/// A timeout at or past the total deadline is the total's.
fn clock_kind(clock: &Clock<'_>, k: ErrorKind) -> ErrorKind {
    match k {
        ErrorKind::UpstreamReadTimeout | ErrorKind::UpstreamWriteTimeout
            if clock.total.is_some_and(|t| time::now() >= t) =>
        {
            ErrorKind::UpstreamTotalTimeout
        }
        k => k,
    }
}

/// Keeps an HTTP/2 client's body going; the error that ends the exchange, if one does (an
/// upstream that stops reading the body is not one: it may have answered).
fn drive_pump(pump: &mut Pump, cx: &mut Context<'_>) -> Option<Broke> {
    if !pump.active() || pump.body.is_none() {
        return None;
    }
    match pump.poll_drive(cx) {
        Poll::Ready(Err(PumpError::Client(k))) => Some(Broke::Client(k)),
        Poll::Ready(Err(PumpError::Upstream)) => {
            pump.send = None;
            pump.pending = None;
            None
        }
        _ => None,
    }
}

/// Polls for the response head while the request body goes up (its progress pushes the
/// deadline on).
fn poll_head(
    mut response: Pin<&mut h2::client::ResponseFuture>,
    pump: &mut Pump,
    timer: &mut Sleep,
    idle: &mut Idle,
    cx: &mut Context<'_>,
) -> Poll<Head> {
    if let Poll::Ready(r) = response.as_mut().poll(cx) {
        return Poll::Ready(head_of(r));
    }
    let before = pump.sent;
    if let Some(e) = drive_pump(pump, cx) {
        return Poll::Ready(Head::Failed(e));
    }
    if pump.sent != before {
        idle.extend(timer);
    }
    if timer.poll_expired(idle.deadline, cx) {
        return Poll::Ready(Head::Failed(Broke::Kind(ErrorKind::UpstreamReadTimeout)));
    }
    Poll::Pending
}

/// The exchange's idle deadline: `proxy.timeouts.read` after the last byte either way, never
/// past the total deadline.
struct Idle {
    deadline: Instant,
    read: Duration,
    total: Option<Instant>,
}

impl Idle {
    fn new(clock: &Clock<'_>) -> Self {
        let mut idle = Self {
            deadline: time::now(),
            read: clock.options.read_timeout,
            total: clock.total,
        };
        idle.deadline = idle.next();
        idle
    }

    fn next(&self) -> Instant {
        let d = time::now() + self.read;
        self.total.map_or(d, |t| t.min(d))
    }

    /// Bytes moved: the deadline moves on.
    fn extend(&mut self, timer: &mut Sleep) {
        self.deadline = self.next();
        timer.arm(self.deadline);
    }
}

fn head_of(r: Result<http::Response<RecvStream>, h2::Error>) -> Head {
    match r {
        Ok(r) => Head::Got(r),
        Err(e)
            if (e.is_go_away() && e.is_remote())
                || (e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM)) =>
        {
            Head::Failed(Broke::Refused)
        }
        Err(_) => Head::Failed(Broke::Kind(ErrorKind::UpstreamReset)),
    }
}

/// The upstream stopped taking the body: its answer if it has one ready, else a reset.
fn response_or_reset(response: Pin<&mut h2::client::ResponseFuture>, cx: &mut Context<'_>) -> Head {
    match response.poll(cx) {
        Poll::Ready(r) => head_of(r),
        Poll::Pending => Head::Failed(Broke::Kind(ErrorKind::UpstreamReset)),
    }
}

fn resilience_now(needed: bool) -> u64 {
    if needed { millis(time::now()) } else { 0 }
}

/// Says on stderr that a TLS target did not agree to HTTP/2.
fn warn_no_h2(addr: SocketAddr, host: &str) {
    thread_local! {
        static LAST: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }
    if !super::recently_warned(&LAST) {
        anygate_obs::log::server(
            anygate_obs::log::Level::Warn,
            &format!(
                "upstream {host} ({addr}) did not agree to HTTP/2 by ALPN (`protocol: h2`); \
                 use `protocol: auto` for a target that may speak HTTP/1.1"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_refuse_the_rest() {
        assert_eq!(grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(grpc_timeout(b"3S"), Some(Duration::from_secs(3)));
        assert_eq!(grpc_timeout(b"200m"), Some(Duration::from_millis(200)));
        assert_eq!(grpc_timeout(b"5u"), Some(Duration::from_micros(5)));
        assert_eq!(
            grpc_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [
            &b""[..],
            b"S",
            b"123456789S",
            b"1s",
            b"-1S",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_grpc_timeout_value_parses_or_is_refused_without_panicking(
            v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
        ) {
            if let Some(d) = grpc_timeout(&v) {
                proptest::prop_assert!(d <= Duration::from_secs(99_999_999 * 3600));
            }
        }
    }

    #[test]
    fn an_h1_head_becomes_an_h2_request_without_connection_fields() {
        let head = b"POST /svc/Method?x=1 HTTP/1.1\r\nhost: up.example:9000\r\n\
            content-type: application/grpc\r\nconnection: keep-alive\r\nkeep-alive: 5\r\n\
            transfer-encoding: chunked\r\nte: trailers\r\nupgrade: h2c\r\nexpect: 100-continue\r\n\
            x-request-id: abc\r\ncookie: a=1\r\ncookie: b=2\r\n\r\n";
        let req = h2_request(head, false, true).unwrap();
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(
            req.uri().to_string(),
            "http://up.example:9000/svc/Method?x=1"
        );
        let names: Vec<&str> = req.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "x-request-id", "cookie", "te"]);
        assert_eq!(req.headers().get_all("cookie").iter().count(), 2);
        assert_eq!(req.headers()["te"], "trailers");
        let tls = h2_request(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", true, false).unwrap();
        assert_eq!(tls.uri().to_string(), "https://a/");
        assert!(tls.headers().get("te").is_none());
    }

    #[test]
    fn an_h1_head_that_http_refuses_gives_no_request() {
        assert!(h2_request(b"GET / HTTP/1.1\r\n\r\n", false, false).is_none());
        assert!(h2_request(b"GET / HTTP/1.1\r\nhost: a b\r\n\r\n", false, false).is_none());
        assert!(h2_request(b"", false, false).is_none());
    }
}
