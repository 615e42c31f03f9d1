//! The HTTP/1.1 connection driver: one task per connection, on the runtime.
//!
//! # A connection's life
//!
//! ```text
//! ┌─► parse head from the buffer ── Partial ──► flush responses, read (idle or head deadline)
//! │        │ Complete                               │ EOF / idle timeout / draining → close
//! │        ▼                                        │ head deadline → 408, close
//! │   Service::call(request, body, response)        └──────────────────────────────────┐
//! │        │ (a panic → 500 and close)                                                  │
//! │        ▼                                                                            │
//! │   discard the unread body (or close) ──► keep-alive? ──no──► flush, close           │
//! └───────────────────────────────────────────── yes ◄───────────────────────────────────┘
//! ```
//!
//! Pipelined requests already in the buffer are answered before anything is written, so
//! their responses leave in one `write`. A connection owns everything it uses: its buffers
//! and its one timer (reset in place for each deadline) are allocated when it opens and
//! reused for every request.
//!
//! # Transports and acceptors
//!
//! The driver runs over any [`Transport`]: [`accept_loop`] hands each accepted TCP
//! connection to an [`Acceptor`] (in the connection's own task, so a slow handshake never
//! holds the accept loop), which returns the stream to serve and what it learnt (TLS facts,
//! the protocol chosen). [`Plain`] serves the TCP stream as it is. A handler sees the
//! connection only through its [`Exchange`].

mod body;
mod edits;
mod exchange;
mod h2meter;
mod http2;
pub(crate) mod io;
mod pages;
pub(crate) mod pool;
pub(crate) mod response;

use std::future::{Future, poll_fn};
use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use anygate_runtime::Handle;
use anygate_runtime::net::{TcpListener, TcpStream};
use anygate_runtime::sync::AtomicWaker;
use anygate_runtime::time::{self, Sleep};
use anygate_runtime::transport::Transport;

use self::body::BodyState;
pub use self::edits::Edits;
use self::exchange::Wire;
pub use self::exchange::{Ctx, Exchange, Marks, TraceCtx, Upgraded};
pub use self::http2::H2Body;
pub use self::pages::{ErrorPages, Page, StatusMatch, accepts_html};
use self::response::Tail;
pub use self::response::{COPY_LIMIT, FileBody, HeadHook, ResponseBody, push_decimal};
use crate::error::ErrorKind;
use crate::h1::chunked::ChunkedDecoder;
use crate::h1::parse::{self, Framing, Head, Parse, Version};
use crate::limits::Limits;
use crate::message::ResponseHead;
use crate::{date, request_id};
use io::{ReadOutcome, read_until, readable_until, shutdown_until, try_read, writev_all_until};

/// Initial size of a connection's input buffer; it grows (up to `max_head`) only for a
/// larger request head.
const INITIAL_BUFFER: usize = 8 * 1024;
/// Flush pipelined responses once this much is pending.
const FLUSH_AT: usize = 64 * 1024;
/// How long, and how much, a closing connection keeps reading what the client still sends.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;
/// How long a connection refused with 503 may take to receive it.
const REJECT_TIME: Duration = Duration::from_secs(1);
/// Room kept after a request head for reading its body.
const MIN_BODY_ROOM: usize = 4096;
/// Room for a large body (a declared length above it, or chunked): read in pieces this big,
/// a streamed upload costs a quarter of the syscalls. The buffer still fits the thread's
/// pool (32 KiB), so it is reused, not allocated, for the next large body.
const LARGE_BODY_ROOM: usize = 28 * 1024;
/// Most unread body bytes read and dropped to keep a connection; past it, close instead
/// (a slow or huge body must not hold the connection).
const DISCARD_LIMIT: u64 = 64 * 1024;
/// Requests answered in a row before the task lets the others of its worker run.
const YIELD_EVERY: u32 = 32;

/// What answers requests. One value serves every connection; [`Service::Conn`] is state a
/// connection keeps between its requests (a cached configuration, say).
pub trait Service: Send + Sync + 'static {
    /// Per-connection state.
    type Conn: Send + 'static;

    /// Called when a connection opens.
    fn connect(&self) -> Self::Conn;

    /// Answers one request: must write exactly one response into `ex` (the driver sends a
    /// 500 if it does not). It may read the body; what it leaves is discarded.
    fn call<'a, 'b: 'a>(
        &'a self,
        conn: &'a mut Self::Conn,
        req: &'a Request<'b>,
        ex: &'a mut Exchange<'b>,
    ) -> impl Future<Output = ()> + Send + 'a;

    /// Called once the request is over (its response produced, its body read or dropped),
    /// with the request's head and everything known about it: the observe phase (access
    /// log, metrics).
    fn finish(&self, _conn: &mut Self::Conn, _req: &Request<'_>, _ctx: &Ctx) {}

    /// Called after the driver answered a request it could not hand to [`Service::call`]
    /// (a malformed or oversized head, a head that did not arrive in time, a body over the
    /// limit, no memory for a large head): `ctx` has its status, error and sizes; `req` is
    /// its head when it was parsed (a body over the limit), else an empty one (no method,
    /// no path). For logs and metrics: the response is already written.
    fn rejected(&self, _conn: &mut Self::Conn, _req: &Request<'_>, _ctx: &Ctx) {}

    /// Called when the connection goes idle, and again whenever it is woken while idle by
    /// [`Drain::reconfigured`]: state that would pin an old configuration is dropped here.
    fn idle(&self, _conn: &mut Self::Conn) {}

    /// Whether connections from `peer` are exempt from `max_connections_per_ip`: a trusted
    /// proxy (a load balancer or CDN in front) carries many clients on few addresses.
    /// Asked once per accepted connection.
    fn uncapped_peer(&self, _peer: IpAddr) -> bool {
        false
    }
}

/// What a TLS handshake established about a connection (filled by the TLS acceptor; `None`
/// on a plain connection).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The server name the client asked for (SNI).
    pub server_name: Option<Box<str>>,
    /// The application protocol agreed by ALPN.
    pub alpn: Option<Box<[u8]>>,
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The cipher suite (`TLS13_AES_128_GCM_SHA256`).
    pub cipher: &'static str,
    /// Whether the session was resumed.
    pub resumed: bool,
    /// The verified client certificate's subject (mTLS), as an RFC 4514 string.
    pub client_subject: Option<Box<str>>,
}

/// The protocol to speak on an accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// HTTP/1.x (and, on a plain connection with `server.h2c`, HTTP/2 with prior
    /// knowledge, recognised by its preface).
    Http1,
    /// HTTP/2 (agreed by ALPN).
    Http2,
}

/// An accepted connection, ready to serve.
#[derive(Debug)]
pub struct Accepted<T> {
    /// The stream to serve.
    pub stream: T,
    /// The protocol to speak.
    pub protocol: Protocol,
    /// TLS facts, for a TLS connection.
    pub tls: Option<Arc<TlsInfo>>,
}

/// Turns an accepted TCP connection into a stream to serve (a TLS handshake, say). Runs in
/// the connection's task; an error closes the connection.
pub trait Acceptor: Send + Sync + 'static {
    /// The stream served.
    type Stream: Transport + 'static;

    /// Prepares `tcp` from `peer`.
    fn accept(
        &self,
        tcp: TcpStream,
        peer: std::net::SocketAddr,
    ) -> impl Future<Output = std::io::Result<Accepted<Self::Stream>>> + Send;
}

/// Plain TCP: the stream is served as it is, as HTTP/1.x.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Acceptor for Plain {
    type Stream = TcpStream;

    async fn accept(
        &self,
        tcp: TcpStream,
        _peer: std::net::SocketAddr,
    ) -> std::io::Result<Accepted<TcpStream>> {
        Ok(Accepted {
            stream: tcp,
            protocol: Protocol::Http1,
            tls: None,
        })
    }
}

/// A request head, as the handler sees it.
#[derive(Debug)]
pub struct Request<'a> {
    buf: &'a [u8],
    head: &'a Head,
    request_id: &'a [u8],
    peer: Option<std::net::SocketAddr>,
    tls: Option<&'a TlsInfo>,
}

impl<'a> Request<'a> {
    /// The method.
    pub fn method(&self) -> &'a [u8] {
        self.head.method.get(self.buf)
    }

    /// The request target as sent.
    pub fn target(&self) -> &'a [u8] {
        self.head.target.get(self.buf)
    }

    /// The path of the target, not yet normalised.
    pub fn path(&self) -> &'a [u8] {
        self.head.path.get(self.buf)
    }

    /// The query string, without `?`.
    pub fn query(&self) -> Option<&'a [u8]> {
        self.head.query.map(|q| q.get(self.buf))
    }

    /// The protocol version.
    pub fn version(&self) -> crate::message::Version {
        match self.head.version {
            Version::H10 => crate::message::Version::Http10,
            Version::H11 => crate::message::Version::Http11,
            Version::H2 => crate::message::Version::Http2,
        }
    }

    /// Header fields, in order, names as sent.
    pub fn headers(&self) -> impl DoubleEndedIterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.head
            .fields()
            .iter()
            .map(|f| (f.name.get(self.buf), f.value.get(self.buf)))
    }

    /// The request's authority: an absolute-form target's (`GET http://a.example/x`), else
    /// the `Host` field's value; `None` for an HTTP/1.0 request with neither. Validated
    /// when the head was parsed (a bad one is a 400), and a `Host` that disagrees with the
    /// target's authority is refused, so the two never differ but in letter case.
    pub fn host(&self) -> Option<&'a [u8]> {
        self.head.host.map(|h| h.get(self.buf))
    }

    /// The first field named `name` (case-insensitive).
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The request id: the client's `X-Request-Id` if sane, else a generated one.
    pub fn request_id(&self) -> &'a [u8] {
        self.request_id
    }

    /// How the body is framed.
    pub fn framing(&self) -> Framing {
        self.head.framing
    }

    /// The client's address (`None` if the socket could not tell).
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.peer
    }

    /// What the TLS handshake established, on a TLS connection.
    pub fn tls(&self) -> Option<&'a TlsInfo> {
        self.tls
    }
}

/// Shared between the server's tasks and whoever stops it: a shutdown flag and the count of
/// open connections (in all, and per client address).
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    open: AtomicUsize,
    waiter: AtomicWaker,
    /// Bumped by every reload, so that idle connections look at their state again.
    epoch: AtomicUsize,
    per_ip: PerIp,
    /// Connections refused by a cap (`max_connections`, `max_connections_per_ip`).
    refused: AtomicU64,
    /// Bytes input buffers have grown by for large heads, all connections together (see
    /// `Limits::head_memory`). Touched only when a head outgrows its buffer.
    head_memory: AtomicUsize,
}

/// Open connections per client address, without a lock: a count-min sketch of two rows of
/// counters, each address counted in one counter of each row (chosen by a hash seeded per
/// process), its count read as the smaller of the two. Unrelated addresses can share one
/// counter but rarely both, so the count can only err upwards and only when two busy
/// addresses collide twice; accepting costs two atomic adds, and the memory is fixed
/// (256 KiB) whatever the number of clients.
#[derive(Debug)]
struct PerIp {
    seed: u64,
    counts: Box<[AtomicU32]>,
}

/// Counters per row of [`PerIp`].
const PER_IP_ROW: usize = 1 << 15;

/// A 64-bit finaliser (splitmix64's): every input bit moves every output bit.
fn mix(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Default for PerIp {
    fn default() -> Self {
        use std::hash::BuildHasher;
        Self {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64),
            counts: (0..2 * PER_IP_ROW).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

impl PerIp {
    /// The counters of `ip`: an IPv4 address, or an IPv6 address's /64 (one client's
    /// network: a host picks any of its 2^64 addresses at will). The seed goes in before
    /// any bit of the address, and the family is part of the key, so two clients that
    /// share counters cannot be chosen without knowing the seed.
    fn slots(&self, ip: IpAddr) -> [usize; 2] {
        let (family, bits) = match ip.to_canonical() {
            IpAddr::V4(v4) => (4u64, u64::from(u32::from(v4))),
            IpAddr::V6(v6) => (6u64, (u128::from(v6) >> 64) as u64),
        };
        let h = mix(mix(self.seed ^ family) ^ bits);
        let mask = PER_IP_ROW as u64 - 1;
        [
            (h & mask) as usize,
            PER_IP_ROW + ((h >> 32) & mask) as usize,
        ]
    }

    /// Counts a connection from `ip`, unless `cap` (0: none) are open from it already.
    fn enter(&self, ip: IpAddr, cap: usize) -> Option<[usize; 2]> {
        let slots = self.slots(ip);
        let a = self.counts[slots[0]].fetch_add(1, Ordering::AcqRel);
        let b = self.counts[slots[1]].fetch_add(1, Ordering::AcqRel);
        if cap != 0 && a.min(b) as usize >= cap {
            self.leave(slots);
            return None;
        }
        Some(slots)
    }

    fn leave(&self, slots: [usize; 2]) {
        for s in slots {
            self.counts[s].fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drain {
    /// A fresh, running state.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Open connections.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Begins a graceful shutdown: accept loops stop, idle connections close, busy ones
    /// answer their current request with `Connection: close`. Every task of `handle` is
    /// woken once so that idle ones look at the flag.
    pub fn start(&self, handle: &Handle) {
        self.draining.store(true, Ordering::Release);
        handle.wake_all();
    }

    /// Announces a new configuration: every idle connection is woken once and calls
    /// [`Service::idle`] (so that none keeps the old configuration alive).
    pub fn reconfigured(&self, handle: &Handle) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        handle.wake_all();
    }

    /// The reload counter (see [`Drain::reconfigured`]).
    pub(crate) fn epoch(&self) -> usize {
        self.epoch.load(Ordering::Acquire)
    }

    /// Completes when shutdown has begun and no connection is open.
    pub async fn closed(&self) {
        poll_fn(|cx| {
            self.waiter.register(cx.waker());
            if self.is_draining() && self.open_connections() == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Takes `extra` bytes of the large-head budget `limit` (0: none); `false` when they
    /// would not fit.
    fn reserve_head_memory(&self, extra: usize, limit: usize) -> bool {
        let before = self.head_memory.fetch_add(extra, Ordering::AcqRel);
        if limit != 0 && before + extra > limit {
            self.head_memory.fetch_sub(extra, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn release_head_memory(&self, bytes: usize) {
        if bytes != 0 {
            self.head_memory.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    /// Bytes input buffers hold beyond their first size for heads not yet complete (the
    /// large-head budget in use).
    pub fn head_memory_in_use(&self) -> usize {
        self.head_memory.load(Ordering::Relaxed)
    }

    /// Connections refused so far by `max_connections` or `max_connections_per_ip`.
    pub fn refused_connections(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts a connection from `ip`; `None` (and counted as refused) past
    /// `max_connections`, or past `per_ip` (0: none) from that address.
    fn enter(
        self: &Arc<Self>,
        ip: IpAddr,
        max_connections: usize,
        per_ip: usize,
    ) -> Option<ConnGuard> {
        let slots = if self.open_connections() >= max_connections {
            None
        } else {
            self.per_ip.enter(ip, per_ip)
        };
        let Some(slots) = slots else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.open.fetch_add(1, Ordering::AcqRel);
        Some(ConnGuard(self.clone(), slots))
    }
}

struct ConnGuard(Arc<Drain>, [usize; 2]);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.per_ip.leave(self.1);
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 && self.0.is_draining() {
            self.0.waiter.wake();
        }
    }
}

/// Accepts connections until shutdown begins, one task each, each prepared by `acceptor`.
/// Past `max_connections` a connection gets a 503 and is closed at once.
pub async fn accept_loop<A: Acceptor, S: Service>(
    listener: TcpListener,
    acceptor: Arc<A>,
    service: Arc<S>,
    limits: Arc<Limits>,
    drain: Arc<Drain>,
) {
    loop {
        let accepted = {
            let mut accept = pin!(listener.accept());
            poll_fn(|cx| {
                if drain.is_draining() {
                    return Poll::Ready(None);
                }
                accept.as_mut().poll(cx).map(Some)
            })
            .await
        };
        match accepted {
            None => return,
            Some(Ok((stream, peer))) => {
                let per_ip = if service.uncapped_peer(peer.ip()) {
                    0
                } else {
                    limits.max_connections_per_ip
                };
                let Some(guard) = drain.enter(peer.ip(), limits.max_connections, per_ip) else {
                    anygate_runtime::spawn(reject_overloaded(stream, drain.clone()));
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, service) = (acceptor.clone(), service.clone());
                let (limits, drain) = (limits.clone(), drain.clone());
                anygate_runtime::spawn(async move {
                    let _guard = guard;
                    let Ok(accepted) = acceptor.accept(stream, peer).await else {
                        return;
                    };
                    let conn = Connection {
                        peer: Some(peer),
                        tls: accepted.tls,
                    };
                    // HTTP/2 boxed: an HTTP/1.1 connection's task does not carry its state.
                    match accepted.protocol {
                        Protocol::Http1 => {
                            let handoff =
                                serve_h1(accepted.stream, conn, &*service, &limits, &drain).await;
                            if let Some((stream, facts, read)) = handoff {
                                let stream = http2::Rewind::new(read, stream);
                                Box::pin(http2::serve(stream, facts, service, limits, drain)).await;
                            }
                        }
                        Protocol::Http2 => {
                            let stream = accepted.stream;
                            Box::pin(http2::serve(stream, conn, service, limits, drain)).await;
                        }
                    }
                });
            }
            Some(Err(_)) => {
                // Out of descriptors or memory: let the in-flight connections finish some
                // work before accepting again, instead of spinning.
                time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Answers 503 and closes, spending at most a second on it.
async fn reject_overloaded(mut stream: TcpStream, drain: Arc<Drain>) {
    let (mut out, mut scratch, mut tail) = (Vec::new(), Vec::new(), Tail::None);
    let mut head = ResponseHead::default();
    let mut edits = Edits::default();
    let id = request_id::generate();
    let date = date::now();
    let mut timer = time::sleep(REJECT_TIME);
    let deadline = timer.deadline();
    let mut ex = Exchange {
        io: Wire::H1(&mut stream),
        body: BodyState::none(),
        timer: &mut timer,
        out: &mut out,
        scratch: &mut scratch,
        tail: &mut tail,
        head_only: false,
        close: true,
        http10_keep_alive: false,
        request_id: &id,
        date: &date,
        drain: &drain,
        expecting: false,
        status: 0,
        error: None,
        head: &mut head,
        hook: None,
        pages: None,
        edits: &mut edits,
        ctx: Ctx::new(),
        send_rate: crate::limits::MinRate::OFF,
        send_started: None,
        grpc: false,
    };
    ex.error_with(ErrorKind::Overloaded, None, &[(b"retry-after", b"1")]);
    if io::write_all_until(&mut stream, &out, &mut timer, deadline).await
        && shutdown_until(&mut stream, &mut timer, deadline).await
    {
        // Read what the client sends until it closes, so that its request does not reset
        // the connection before the 503 arrives.
        let mut sink = [0u8; 1024];
        while let ReadOutcome::Data(_) =
            read_until(&mut stream, &mut sink, &mut timer, deadline, None).await
        {}
    }
}

/// What the driver knows about a connection besides its stream.
#[derive(Debug, Default)]
pub struct Connection {
    /// The client's address (`None` if the socket could not tell).
    pub peer: Option<std::net::SocketAddr>,
    /// What the TLS handshake established, on a TLS connection.
    pub tls: Option<Arc<TlsInfo>>,
}

/// How a request ended, for [`Conn::settle`].
struct Ended {
    /// The response asked for the connection to close.
    close: bool,
    /// The response is an error.
    error: bool,
    /// The request body was read to its end.
    body_done: bool,
    /// Reading the body failed, or it was too large to drop.
    body_failed: bool,
    /// The client still waits for `100 Continue` (the body was never asked for).
    still_expecting: bool,
    /// Unread bytes after the head: `(start, end)` relative to the head's end.
    body: (usize, usize),
}

/// A connection's buffers and state, allocated once.
struct Conn<'s, S: Service, T> {
    stream: T,
    facts: Connection,
    service: &'s S,
    state: S::Conn,
    limits: &'s Limits,
    drain: &'s Drain,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The request head being parsed and the response head being built: taken from the
    /// thread's pool while the connection has a request; `None` when idle.
    heads: Option<Box<pool::Heads>>,
    out: Vec<u8>,
    scratch: Vec<u8>,
    /// What the next flush sends after `out` (a large shared body, a file).
    tail: Tail,
    timer: Sleep,
    /// When the head being received must be complete.
    head_deadline: Option<Instant>,
    generated_id: [u8; 32],
    /// Whether closing should linger (an error was sent, or input may still come).
    linger: bool,
    /// No request head has arrived yet: a drain gives the first request
    /// [`FRESH_DRAIN_GRACE`] to arrive (it may be on its way: a client writes right after
    /// connecting), where an idle keep-alive connection is closed at once.
    fresh: bool,
    /// Requests answered since the task last yielded.
    streak: u32,
    /// Bytes of the pending partial head that have been parsed (or scanned) without finding
    /// its end: a head that arrives in pieces is parsed again only once a piece brings a
    /// line end that may close it, so its cost stays linear in its size.
    head_scanned: usize,
    /// Bytes this connection's input buffer grew by for a large head, held against the
    /// process's budget for them (`Limits::head_memory`) until the buffer goes back.
    head_reserved: Reserved<'s>,
}

/// Bytes of the large-head budget a connection holds; a connection dropped mid-head (its
/// task cancelled) gives them back too.
struct Reserved<'s> {
    drain: &'s Drain,
    bytes: usize,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.drain
            .release_head_memory(std::mem::take(&mut self.bytes));
    }
}

/// How long a drain waits for the first request of a connection that has sent none.
const FRESH_DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Serves one HTTP/1.x connection over `stream` until it closes. (An HTTP/2 client with
/// prior knowledge is served by [`accept_loop`] only: here its connection closes.)
pub fn serve_connection<'a, S: Service, T: Transport + 'a>(
    stream: T,
    facts: Connection,
    service: &'a S,
    limits: &'a Limits,
    drain: &'a Drain,
) -> impl Future<Output = ()> + 'a {
    let serve = serve_h1(stream, facts, service, limits, drain);
    async move {
        serve.await;
    }
}

/// Serves one connection as HTTP/1.x until it closes, or until it turns out to start with
/// the HTTP/2 preface (`server.h2c`): then the stream, its facts and the bytes read from
/// it are handed back, for the HTTP/2 driver.
///
/// Not an `async fn`: its arguments would stay in the future beside the [`Conn`] they are
/// moved into (an async fn keeps its parameters for its whole life), and every idle
/// connection's task would carry them twice. The returned future holds the `Conn` only.
fn serve_h1<'a, S: Service, T: Transport + 'a>(
    stream: T,
    facts: Connection,
    service: &'a S,
    limits: &'a Limits,
    drain: &'a Drain,
) -> impl Future<Output = Option<(T, Connection, Vec<u8>)>> + 'a {
    let mut conn = Conn {
        stream,
        facts,
        service,
        state: service.connect(),
        limits,
        drain,
        buf: Vec::new(),
        start: 0,
        end: 0,
        heads: None,
        out: Vec::new(),
        scratch: Vec::new(),
        tail: Tail::None,
        timer: time::sleep_until(time::now() + limits.idle_timeout),
        head_deadline: None,
        generated_id: [0; 32],
        linger: false,
        fresh: true,
        streak: 0,
        head_scanned: 0,
        head_reserved: Reserved { drain, bytes: 0 },
    };
    async move {
        let read = conn.run().await?;
        let Conn { stream, facts, .. } = conn;
        Some((stream, facts, read))
    }
}

/// Whether `pending` (a partial head of which the first `scanned` bytes held no end) may
/// now hold the empty line that ends a head (`LF CR LF` or `LF LF`; a bare LF is refused
/// by the parser, so it must see it too). A head never looked at is parsed straight away:
/// the usual head arrives whole, and parsing it costs less than scanning it first.
fn may_end_head(pending: &[u8], scanned: usize) -> bool {
    if scanned == 0 {
        return true;
    }
    // The new bytes, and the two before them (an end split across two reads).
    let from = scanned.saturating_sub(2).min(pending.len());
    memchr::memchr_iter(b'\n', &pending[from..]).any(|i| {
        let rest = &pending[from + i + 1..];
        rest.first() == Some(&b'\n') || rest.starts_with(b"\r\n")
    })
}

impl<S: Service, T: Transport> Conn<'_, S, T> {
    /// Takes the per-request buffers from the thread's pools (no allocation once warm).
    fn acquire(&mut self) {
        if self.buf.is_empty() {
            self.buf = pool::take_input(INITIAL_BUFFER.min(self.limits.max_head.max(1024)));
        }
        if self.out.capacity() == 0 {
            self.out = pool::take_output();
        }
        if self.scratch.capacity() == 0 {
            self.scratch = pool::take_output();
        }
        if self.heads.is_none() {
            self.heads = Some(pool::take_heads());
        }
    }

    /// Gives the per-request buffers back while the connection waits for its next request.
    fn release(&mut self) {
        self.drain
            .release_head_memory(std::mem::take(&mut self.head_reserved.bytes));
        pool::give_input(std::mem::take(&mut self.buf));
        pool::give_output(std::mem::take(&mut self.out));
        pool::give_output(std::mem::take(&mut self.scratch));
        if let Some(heads) = self.heads.take() {
            pool::give_heads(heads);
        }
        self.start = 0;
        self.end = 0;
    }

    /// Returns every buffer to the pools (the connection is closing).
    fn give_back(&mut self) {
        self.out.clear();
        self.start = 0;
        self.end = 0;
        self.release();
    }

    /// Serves requests until the connection should close (`None`), or hands it over: the
    /// bytes read, which begin the HTTP/2 preface.
    async fn run(&mut self) -> Option<Vec<u8>> {
        loop {
            self.acquire();
            let parsed = match self.heads.as_deref_mut().map(|h| &mut h.request) {
                Some(head) if self.start < self.end => {
                    let pending = &self.buf[self.start..self.end];
                    if may_end_head(pending, self.head_scanned)
                        || pending.len() >= self.limits.max_head
                    {
                        parse::parse(pending, self.limits, head)
                    } else {
                        Parse::Partial
                    }
                }
                _ => Parse::Partial,
            };
            self.head_scanned = match parsed {
                Parse::Partial => self.end - self.start,
                _ => 0,
            };
            let keep_going = match parsed {
                Parse::Complete(n) => {
                    self.fresh = false;
                    self.streak += 1;
                    if self.streak >= YIELD_EVERY {
                        self.streak = 0;
                        anygate_runtime::yield_now().await;
                    }
                    self.request(n).await
                }
                Parse::Partial => self.read_more().await,
                Parse::Invalid(kind) => {
                    if self.h2c_preface(kind) {
                        let read = self.buf[self.start..self.end].to_vec();
                        self.give_back();
                        return Some(read);
                    }
                    self.reject(kind, None).await;
                    false
                }
            };
            if !keep_going {
                if self.flush().await && self.linger {
                    self.linger().await;
                }
                self.give_back();
                return None;
            }
        }
    }

    /// Whether a head refused as `kind` is the HTTP/2 preface on a fresh plain connection
    /// of a server that takes h2c with prior knowledge (RFC 9113 §3.3).
    #[cold]
    fn h2c_preface(&self, kind: ErrorKind) -> bool {
        kind == ErrorKind::VersionNotSupported
            && self.fresh
            && self.limits.h2.h2c
            && self.facts.tls.is_none()
            && http2::starts_preface(&self.buf[self.start..self.end])
    }

    /// Waits for more of a request head. `false` when the connection should close.
    async fn read_more(&mut self) -> bool {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                // Full with a partial head below the limit (parse checked): grow, if the
                // budget for large heads allows (slow clients holding many of them would
                // otherwise pin max_head bytes each).
                let size = (self.buf.len() * 2).min(self.limits.max_head + 1);
                let extra = size - self.buf.len();
                if !self
                    .drain
                    .reserve_head_memory(extra, self.limits.head_memory)
                {
                    self.reject(ErrorKind::Overloaded, None).await;
                    return false;
                }
                self.head_reserved.bytes += extra;
                self.buf.resize(size, 0);
            }
        }
        if !self.flush().await {
            return false;
        }
        let idle = self.start == self.end;
        if idle {
            // Nothing buffered and nothing to send: wait without holding any buffer. A
            // readiness can be stale (the last read filled its buffer exactly), so a read
            // that would block sends the connection back to waiting, buffers released.
            let mut deadline = time::now() + self.limits.idle_timeout;
            let mut close_on_drain = true;
            loop {
                self.release();
                // The reload counter is read before the service lets go of its state: a
                // reload in between still wakes the wait below.
                let epoch = self.drain.epoch();
                self.service.idle(&mut self.state);
                match readable_until(
                    &mut self.stream,
                    &mut self.timer,
                    deadline,
                    self.drain,
                    epoch,
                    close_on_drain,
                )
                .await
                {
                    ReadOutcome::Data(_) => self.acquire(),
                    ReadOutcome::Reconfigured => continue,
                    ReadOutcome::Draining if self.fresh => {
                        // Accepted just before the drain: its request is likely in flight.
                        deadline = deadline.min(time::now() + FRESH_DRAIN_GRACE);
                        close_on_drain = false;
                        continue;
                    }
                    _ => return false,
                }
                match try_read(&mut self.stream, &mut self.buf).await {
                    Some(0) => return false,
                    Some(n) => {
                        self.end = n;
                        self.head_deadline = Some(time::now() + self.limits.head_timeout);
                        return true;
                    }
                    None => {}
                }
            }
        }
        let deadline = match (idle, self.head_deadline) {
            (true, _) => time::now() + self.limits.idle_timeout,
            (false, Some(d)) => d,
            (false, None) => {
                let d = time::now() + self.limits.head_timeout;
                self.head_deadline = Some(d);
                d
            }
        };
        let drain = idle.then_some(self.drain);
        let end = self.end;
        match read_until(
            &mut self.stream,
            &mut self.buf[end..],
            &mut self.timer,
            deadline,
            drain,
        )
        .await
        {
            ReadOutcome::Data(n) => {
                if idle {
                    self.head_deadline = Some(time::now() + self.limits.head_timeout);
                }
                self.end += n;
                true
            }
            ReadOutcome::Timeout if !idle => {
                self.reject(ErrorKind::HeadTimeout, None).await;
                false
            }
            _ => false,
        }
    }

    /// Answers a request that cannot be handled, and marks the connection for closing.
    /// `parsed`: where its head ends, when it was parsed (in `heads.request`).
    async fn reject(&mut self, kind: ErrorKind, parsed: Option<usize>) {
        self.acquire();
        self.linger = true;
        self.generated_id = request_id::generate();
        let date = date::now();
        let Some(pool::Heads {
            request,
            response: head,
            edits,
        }) = self.heads.as_deref_mut()
        else {
            return;
        };
        edits.clear();
        let empty;
        let (parsed_head, head_bytes): (&Head, &[u8]) = match parsed {
            Some(end) => (request, &self.buf[self.start..end]),
            None => {
                empty = Head::default();
                (&empty, &[])
            }
        };
        let mut ctx = Ctx::new();
        ctx.bytes_in = (self.end - self.start) as u64;
        ctx.tls = self.facts.tls.is_some();
        let mut ex = Exchange {
            io: Wire::H1(&mut self.stream),
            body: BodyState::none(),
            timer: &mut self.timer,
            out: &mut self.out,
            scratch: &mut self.scratch,
            tail: &mut self.tail,
            head_only: false,
            close: true,
            http10_keep_alive: false,
            request_id: &self.generated_id,
            date: &date,
            drain: self.drain,
            expecting: false,
            status: 0,
            error: None,
            head,
            hook: None,
            pages: None,
            edits,
            ctx,
            send_rate: crate::limits::MinRate::OFF,
            send_started: None,
            grpc: false,
        };
        ex.error(kind, None);
        ex.ctx.status = ex.status;
        ex.ctx.error = ex.error;
        let req = Request {
            buf: head_bytes,
            head: parsed_head,
            request_id: &self.generated_id,
            peer: self.facts.peer,
            tls: self.facts.tls.as_deref(),
        };
        self.service.rejected(&mut self.state, &req, &ex.ctx);
    }

    /// Handles the request whose head is the first `n` bytes of the window. `false` when
    /// the connection should close afterwards.
    async fn request(&mut self, n: usize) -> bool {
        self.head_deadline = None;
        self.linger = false;
        let head_end = self.start + n;
        let limits = self.limits;
        let Some(head) = self.heads.as_deref().map(|h| &h.request) else {
            return false;
        };
        let framing = head.framing;
        if let Framing::Length(len) = framing
            && limits.max_body > 0
            && len > limits.max_body
        {
            self.reject(ErrorKind::BodyTooLarge, Some(head_end)).await;
            return false;
        }
        let expect_continue = head.expect_continue && framing != Framing::None;
        if expect_continue && !self.flush().await {
            return false;
        }
        let head_end = self.make_room_for_body(head_end, framing);
        let Some(pool::Heads {
            request: head,
            response,
            edits,
        }) = self.heads.as_deref_mut()
        else {
            return false;
        };
        edits.clear();
        let head = &*head;
        let id_span = head
            .request_id
            .filter(|s| request_id::is_sane(s.get(&self.buf[self.start..])));
        if id_span.is_none() {
            // Without an `X-Request-Id`, the request's id is its trace's: the caller's
            // `traceparent` trace id when it sent a valid one, else a fresh id of that shape
            // (which a traced request then uses as its trace id).
            self.generated_id = fresh_id(head, &self.buf[self.start..]);
        }
        let date = date::now();
        let draining = self.drain.is_draining();
        let (head_bytes, rest) = self.buf.split_at_mut(head_end);
        let head_bytes = &head_bytes[self.start..];
        let request_id: &[u8] = match id_span {
            Some(s) => s.get(head_bytes),
            None => &self.generated_id,
        };
        let req = Request {
            buf: head_bytes,
            head,
            request_id,
            peer: self.facts.peer,
            tls: self.facts.tls.as_deref(),
        };
        let out_before = self.out.len();
        let mut ctx = Ctx::new();
        ctx.bytes_in = (head_end - self.start) as u64;
        let mut ex = Exchange {
            io: Wire::H1(&mut self.stream),
            body: BodyState {
                buf: rest,
                start: 0,
                end: self.end - head_end,
                framing: head.framing,
                remaining: match head.framing {
                    Framing::Length(n) => n,
                    _ => 0,
                },
                decoder: ChunkedDecoder::new(),
                received: 0,
                limit: limits.max_body,
                timeout: limits.body_timeout,
                send_continue: expect_continue,
                done: false,
                failed: None,
                fills: 0,
                // The body bytes that came with the head count toward the minimum rate.
                wire: match head.framing {
                    Framing::Length(n) => ((self.end - head_end) as u64).min(n),
                    Framing::Chunked => (self.end - head_end) as u64,
                    Framing::None => 0,
                },
                rate: limits.min_body_rate,
                started: None,
            },
            timer: &mut self.timer,
            out: &mut self.out,
            scratch: &mut self.scratch,
            tail: &mut self.tail,
            head_only: req.method() == b"HEAD",
            close: !head.keep_alive || draining,
            http10_keep_alive: head.version == Version::H10 && head.keep_alive && !draining,
            request_id,
            date: &date,
            drain: self.drain,
            expecting: expect_continue,
            status: 0,
            error: None,
            head: response,
            hook: None,
            pages: None,
            edits,
            ctx,
            send_rate: limits.min_send_rate,
            send_started: None,
            grpc: false,
        };
        let panicked = {
            let mut call = pin!(self.service.call(&mut self.state, &req, &mut ex));
            poll_fn(|cx| poll_caught(call.as_mut(), cx)).await
        };
        if panicked || !ex.is_sent() {
            ex.internal_error(out_before);
        }
        let mut ended = Ended {
            close: ex.close,
            error: ex.error_kind().is_some(),
            body_done: ex.body_done(),
            body_failed: false,
            still_expecting: false,
            body: (0, 0),
        };
        if !ended.close && !ended.body_done {
            // Drop a small unread body to keep the connection; close on a large one. A
            // failure here comes after the response was written: it is sent, then the
            // connection closes.
            if !matches!(ex.discard_body_up_to(DISCARD_LIMIT).await, Ok(true)) {
                ended.close = true;
                ended.body_failed = true;
            }
        }
        ended.body_failed |= ex.body.failed.is_some();
        ended.body_done = ex.body_done();
        ended.still_expecting = ex.expecting;
        ended.body = (ex.body.start, ex.body.end);
        ex.ctx.status = ex.status;
        ex.ctx.error = ex.error;
        if ex.ctx.start.is_some() {
            ex.ctx.end = Some(time::precise_now());
        }
        self.service.finish(&mut self.state, &req, &ex.ctx);
        self.settle(head_end, ended).await
    }

    /// Room after the head (at `head_end`) for reading a body framed by `framing`: the
    /// window moves to the front of the buffer (its spans are relative to it) when the head
    /// ends near the end, and the buffer grows if that is not enough. Returns where the head
    /// now ends.
    fn make_room_for_body(&mut self, mut head_end: usize, framing: Framing) -> usize {
        let room = match framing {
            Framing::None => return head_end,
            Framing::Length(n) => usize::try_from(n)
                .unwrap_or(usize::MAX)
                .clamp(MIN_BODY_ROOM, LARGE_BODY_ROOM),
            Framing::Chunked => LARGE_BODY_ROOM,
        };
        if self.buf.len() - head_end < room {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            head_end -= self.start;
            self.start = 0;
            if self.buf.len() - head_end < room {
                self.buf.resize(head_end + room, 0);
            }
        }
        head_end
    }

    /// After a response: where the next request starts, whether the connection goes on
    /// (`false`: close), and whether closing must linger.
    async fn settle(&mut self, head_end: usize, ended: Ended) -> bool {
        // A response written while the client still waited for `100 Continue` said
        // `connection: close` (see `Exchange::head_committed`): the body will not come.
        let close = ended.close || ended.body_failed;
        if ended.error || ended.body_failed {
            self.linger = true;
        }
        self.start = head_end + ended.body.0;
        self.end = head_end + ended.body.1;
        if close {
            // Input may still be on its way: close without resetting the response.
            if !ended.body_done || self.start < self.end || ended.still_expecting {
                self.linger = true;
            }
            return false;
        }
        if !self.tail.is_none() || self.out.len() >= FLUSH_AT {
            return self.flush().await;
        }
        true
    }

    /// Closes gracefully: our side first, then reads and drops what the client still sends
    /// for a moment, so that closing with unread input does not reset the connection and
    /// destroy the response in flight (nginx's lingering close).
    async fn linger(&mut self) {
        let deadline = time::now() + LINGER_TIME;
        if !shutdown_until(&mut self.stream, &mut self.timer, deadline).await {
            return;
        }
        self.acquire();
        let mut budget = LINGER_BYTES;
        while budget > 0 {
            match read_until(
                &mut self.stream,
                &mut self.buf,
                &mut self.timer,
                deadline,
                None,
            )
            .await
            {
                ReadOutcome::Data(n) => budget = budget.saturating_sub(n),
                _ => return,
            }
        }
    }

    /// Writes the pending responses. `false` when the peer is gone or too slow.
    async fn flush(&mut self) -> bool {
        if self.out.is_empty() && self.tail.is_none() {
            return true;
        }
        let timeout = self.limits.idle_timeout;
        let deadline = time::now() + timeout;
        let tail = std::mem::take(&mut self.tail);
        let ok = match &tail {
            Tail::None => {
                writev_all_until(
                    &mut self.stream,
                    [&self.out, &[]],
                    &mut self.timer,
                    deadline,
                )
                .await
            }
            Tail::Shared(body, range) => {
                let part = body.get(range.clone()).unwrap_or_default();
                writev_all_until(
                    &mut self.stream,
                    [&self.out, part],
                    &mut self.timer,
                    deadline,
                )
                .await
            }
            Tail::File(file) => {
                let mut pace = io::Pace::new(timeout, self.limits.min_send_rate);
                io::write_file_body(
                    &mut self.stream,
                    &self.out,
                    file,
                    &mut self.timer,
                    &mut pace,
                )
                .await
            }
        };
        self.out.clear();
        ok
    }
}

/// Polls a handler's future, a panic caught: `Ready(true)` when it panicked (its request
/// then gets a 500, or over HTTP/2 a reset once its head left; the worker goes on).
#[inline(always)]
fn poll_caught<F: Future<Output = ()>>(
    call: std::pin::Pin<&mut F>,
    cx: &mut std::task::Context<'_>,
) -> Poll<bool> {
    match catch_unwind(AssertUnwindSafe(|| call.poll(cx))) {
        Ok(Poll::Ready(())) => Poll::Ready(false),
        Ok(Poll::Pending) => Poll::Pending,
        Err(_) => Poll::Ready(true),
    }
}

/// The id of a request that came without `X-Request-Id`: its `traceparent`'s trace id
/// when it sent a valid one, else a fresh id of that shape. Looked for here rather than in
/// the parser, and kept out of line, so that the parser and the driver's request loop stay
/// as small as they were for requests that carry none.
#[inline(never)]
fn fresh_id(head: &Head, window: &[u8]) -> [u8; 32] {
    head.fields[..head.count]
        .iter()
        .find(|f| {
            f.name.end - f.name.start == 11
                && f.name.get(window).eq_ignore_ascii_case(b"traceparent")
        })
        .and_then(|f| request_id::from_traceparent(f.value.get(window)))
        .unwrap_or_else(request_id::generate)
}

#[cfg(test)]
mod tests {
    use super::{PerIp, may_end_head};

    #[test]
    fn per_ip_counts_cap_one_address_and_leave_the_others_alone() {
        let p = PerIp::default();
        let ip = |i: u32| std::net::IpAddr::from((0x0a00_0000 + i).to_be_bytes());
        let one: Vec<_> = (0..256).map(|_| p.enter(ip(1), 256).unwrap()).collect();
        assert!(p.enter(ip(1), 256).is_none(), "the 257th");
        // 2 000 other addresses with 4 connections each are all let in meanwhile.
        let others: Vec<_> = (2..2002)
            .flat_map(|i| (0..4).map(move |_| i))
            .map(|i| p.enter(ip(i), 256).expect("another address"))
            .collect();
        // The mapped form of an IPv4 address is the same address.
        let mapped: std::net::IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(p.enter(mapped, 256).is_none());
        for s in one.into_iter().chain(others) {
            p.leave(s);
        }
        assert!(
            p.counts
                .iter()
                .all(|c| c.load(std::sync::atomic::Ordering::Relaxed) == 0)
        );
        assert!(p.enter(ip(1), 256).is_some());
        assert!(p.enter(ip(1), 0).is_some(), "0 means no cap");
        // An IPv6 client is its /64: another address of it does not get a fresh count.
        let v6 = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let _held: Vec<_> = (0..256)
            .map(|_| p.enter(v6("2001:db8:1:2::1"), 256).unwrap())
            .collect();
        assert!(p.enter(v6("2001:db8:1:2:ffff::9"), 256).is_none());
        assert!(p.enter(v6("2001:db8:1:3::1"), 256).is_some());
    }

    /// How many times a head arriving `step` bytes at a time would be parsed, following the
    /// driver's bookkeeping (`scanned` is what the last look covered).
    fn parses(head: &[u8], step: usize) -> usize {
        let (mut scanned, mut parses) = (0, 0);
        for end in (step..head.len() + step).step_by(step) {
            let pending = &head[..end.min(head.len())];
            if may_end_head(pending, scanned) {
                parses += 1;
                let ended = pending.windows(3).any(|w| w == b"\n\r\n")
                    || pending.windows(2).any(|w| w == b"\n\n");
                if ended {
                    return parses;
                }
            }
            scanned = pending.len();
        }
        panic!("the end of the head was never seen");
    }

    #[test]
    fn regression_a_trickled_head_is_parsed_again_on_every_read() {
        // 60 KiB in one field, one byte per read: parsed on the first byte and at its end,
        // not 61 440 times.
        let mut head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
        head.resize(60 * 1024, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parses(&head, 1), 2);
        // An end split at every place between two reads is still found.
        for step in 1..8 {
            assert!(parses(&head, step) <= 3, "step {step}");
        }
        let short = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
        for step in 1..short.len() {
            assert!(parses(short, step) <= 3, "step {step}");
        }
        // Bare-LF heads end too (the parser refuses them).
        assert_eq!(parses(b"GET / HTTP/1.1\nHost: t\n\n", 1), 2);
    }
}
