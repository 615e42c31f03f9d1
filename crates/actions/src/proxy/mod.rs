//! The proxy action: a request relayed to an upstream over HTTP/1.1, streamed both ways.
//!
//! # One exchange
//! ```text
//! pick a target (the pool's balancer) ─► its addresses (DNS cache) ─► idle connection (LIFO, peeked)
//!                                                            or connect (each address in turn)
//! request head ─► [Expect: 100-continue: wait for the upstream's 100 or its final answer]
//!              ─► body, streamed (chunked re-framed, Content-Length copied)
//! response head (the client's socket watched: a client that leaves cancels)
//!   ├─ 101 to an Upgrade request ─► tunnel bytes both ways until both close or idle
//!   └─ otherwise ─► head relayed (hop-by-hop removed) ─► body streamed as it comes
//! connection back to the pool if the exchange ended cleanly and both sides allow it
//! ```
//!
//! An `https://` rule (or a pool with `tls`) speaks TLS to its targets (`MaybeTls::Tls`):
//! the handshake shares the connect deadline, its failure is a 502 `AG-UPS-5025` (the
//! reason goes to stderr, at most once a second per worker), and TLS connections rest in
//! the idle pool beside plain ones, keyed by their TLS setup too.
//!
//! # Invariants
//! - Nothing is buffered beyond one read of each side: a body of any size passes in
//!   constant memory, and a slow reader slows the writer (backpressure).
//! - A request is sent again (once, on a fresh connection) only when a reused connection
//!   failed before any response byte and no byte of the request body was consumed.
//! - Errors follow SPEC §6: refused, reset or garbage → 502, timeouts → 504, each with
//!   its `AG-UPS-…` code and no internal detail. Once the response head has gone to the
//!   client an upstream failure can only cut the response short: the client connection
//!   closes.
//!
//! # Non-goals (next pieces)
//! Retries beyond the one above, backup targets, slow start, health checks, circuit
//! breaking, HTTP/2 upstreams. Balancing is in [`balance`].

pub mod balance;
mod dns;
mod headers;
mod pool;
mod url;

use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anygate_http::client::{ResponseFraming, UpstreamConn, UpstreamError, keeps_connection};
use anygate_http::h1::chunked::{chunk_size_line, valid_trailers};
use anygate_http::h1::encode;
use anygate_http::message::{BodyFraming, Version};
use anygate_http::{ErrorKind, Exchange, Request};
use anygate_obs::metrics::PoolState;
use anygate_router::dsl::PathPattern;
use anygate_router::dsl::{ProxyTarget, Scheme};
use anygate_runtime::net::TcpStream;
use anygate_runtime::time;
use anygate_tls::{MaybeTls as Wire, TlsClient};

use self::balance::{Balance, Balancer};
use self::dns::HostEntry;
use self::pool::{Slot, Target};

pub use self::headers::HostMode;
pub use self::url::{encoded_traversal, push_upstream_path_and_query, upstream_path_and_query};

/// How long an `Expect: 100-continue` request waits for the upstream's `100 Continue`
/// before sending its body anyway (curl's and RFC 9110 §10.1.1's advice).
const CONTINUE_WAIT: Duration = Duration::from_secs(1);
/// Most interim (1xx) responses read before the final one.
const MAX_INTERIM: usize = 16;
/// A response body piece this small, when it ends the body, joins the client's output
/// buffer instead of being written at once (pipelined responses leave together).
const BUFFER_LAST_PIECE: usize = 16 * 1024;

/// Settings of one proxy rule (`proxy.*` in effect for it).
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// `proxy.timeouts.connect`.
    pub connect_timeout: Duration,
    /// `proxy.timeouts.read`: between two reads from the upstream; also a tunnel's idle
    /// timeout.
    pub read_timeout: Duration,
    /// `proxy.timeouts.write`: between two writes to the upstream (and to the client).
    pub write_timeout: Duration,
    /// `proxy.timeouts.total`.
    pub total_timeout: Option<Duration>,
    /// `proxy.host`.
    pub host: HostMode,
    /// `proxy.via`.
    pub via: bool,
    /// `proxy.max_idle`.
    pub max_idle: usize,
    /// `proxy.max_conns`.
    pub max_conns: usize,
    /// `proxy.idle_timeout`.
    pub idle_timeout: Duration,
    /// `proxy.dns_ttl`.
    pub dns_ttl: Duration,
    /// `proxy.allow_encoded_traversal`.
    pub allow_encoded_traversal: bool,
    /// `proxy.client_cert_header` (lower case).
    pub client_cert_header: Option<Box<str>>,
}

/// A TLS client setup of a pool, with the id its idle connections are kept under.
#[derive(Debug)]
pub struct PoolTls {
    client: TlsClient,
    id: u64,
}

/// One target of a pool, with its weight there.
#[derive(Clone, Debug)]
struct PoolMember {
    target: Arc<Target>,
    weight: u32,
}

impl balance::Member for PoolMember {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn load(&self) -> usize {
        self.target.busy.load(Ordering::Relaxed)
    }
    fn ring_name(&self) -> String {
        format!("{}:{}", self.target.host.name(), self.target.host.port())
    }
}

/// The targets of one pool, and how a request picks one.
#[derive(Debug)]
pub struct Pool {
    members: Vec<PoolMember>,
    balance: Balance,
    balancer: Balancer,
    /// TLS to the targets, if the pool speaks it.
    tls: Option<Arc<PoolTls>>,
}

impl Pool {
    /// The key idle connections of this pool to `target` are kept under beside their
    /// address: 0 for plain TCP; for TLS the setup's id and the target's, since the
    /// target's host is the name the handshake sent (SNI) and verified (regression: two
    /// names on one address shared connections, one verified for the other name only).
    fn idle_key(&self, target: &Target) -> u64 {
        self.tls
            .as_ref()
            .map_or(0, |t| (t.id << 32) | u64::from(target.id))
    }

    fn new(
        members: Vec<PoolMember>,
        balance: Balance,
        workers: usize,
        tls: Option<Arc<PoolTls>>,
    ) -> Self {
        if matches!(balance, Balance::LeastConn | Balance::Random) {
            // Every request to these targets counts, whichever pool or rule sends it.
            for m in &members {
                m.target.counted.store(true, Ordering::Relaxed);
            }
        }
        Self {
            balancer: Balancer::new(&balance, &members, workers),
            members,
            balance,
            tls,
        }
    }

    /// The target for `req` (`client`: the address `server.trusted_proxies` found), by the
    /// pool's strategy.
    fn pick(&self, req: &Request<'_>, client: Option<std::net::IpAddr>) -> Option<&Arc<Target>> {
        if self.members.len() <= 1 {
            return self.members.first().map(|m| &m.target);
        }
        let i = self
            .balancer
            .pick(&self.members, |k| balance::key_hash(k, req, client));
        self.members.get(i).map(|m| &m.target)
    }
}

/// Every upstream of one configuration: named pools, and targets shared by host and port
/// (so that `max_conns` counts a target once, whichever rules name it).
#[derive(Debug, Default)]
pub struct Upstreams {
    /// The runtime's workers (per-worker balancer state is sized by it).
    workers: usize,
    pools: HashMap<String, Arc<Pool>>,
    targets: HashMap<(String, u16), Arc<Target>>,
    /// TLS to `https://host/` targets that name no pool: system roots, the host as name.
    default_tls: Option<Arc<PoolTls>>,
}

/// A process-wide id per TLS client setup, so that idle connections of two setups (or of
/// two configurations, across a reload) never mix.
fn next_tls_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn next_target_id() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Upstreams {
    /// No pools yet, for a runtime of `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            workers,
            ..Self::default()
        }
    }

    /// Defines the pool `name` over `targets` (`host`, `port`, `weight`), balanced by
    /// `balance`, speaking TLS with `tls`.
    pub fn define(
        &mut self,
        name: &str,
        targets: &[(String, u16, u32)],
        balance: Balance,
        dns_ttl: Duration,
        tls: Option<TlsClient>,
    ) {
        let members = targets
            .iter()
            .map(|(h, p, w)| PoolMember {
                target: self.target(h, *p, dns_ttl),
                weight: *w,
            })
            .collect();
        let tls = tls.map(|client| {
            Arc::new(PoolTls {
                client,
                id: next_tls_id(),
            })
        });
        self.pools.insert(
            name.to_ascii_lowercase(),
            Arc::new(Pool::new(members, balance, self.workers, tls)),
        );
    }

    /// Whether the pool `name` is defined with TLS.
    pub fn pool_has_tls(&self, name: &str) -> bool {
        self.pools.get(name).is_some_and(|p| p.tls.is_some())
    }

    /// Sets the TLS client for `https://` targets outside pools (built only when a rule
    /// needs it: the system roots may be missing).
    pub fn set_default_tls(&mut self, client: TlsClient) {
        self.default_tls = Some(Arc::new(PoolTls {
            client,
            id: next_tls_id(),
        }));
    }

    /// Whether [`Upstreams::set_default_tls`] was called.
    pub fn has_default_tls(&self) -> bool {
        self.default_tls.is_some()
    }

    fn target(&mut self, host: &str, port: u16, dns_ttl: Duration) -> Arc<Target> {
        self.targets
            .entry((host.to_ascii_lowercase(), port))
            .or_insert_with(|| {
                Arc::new(Target {
                    host: HostEntry::new(host, port, dns_ttl),
                    busy: AtomicUsize::new(0),
                    counted: std::sync::atomic::AtomicBool::new(false),
                    id: next_target_id(),
                })
            })
            .clone()
    }

    /// The pool for a proxy URI: the named pool if its host names one (and it has no
    /// port), else a one-target pool resolved by DNS.
    fn pool_for(&mut self, target: &ProxyTarget, dns_ttl: Duration) -> Arc<Pool> {
        let https = target.scheme == Scheme::Https;
        if target.port.is_none()
            && let Some(p) = self.pools.get(&target.host)
        {
            if https && p.tls.is_none() {
                // `https://pool/` over a pool without `tls`: the default client settings.
                return Arc::new(Pool::new(
                    p.members.clone(),
                    p.balance.clone(),
                    self.workers,
                    self.default_tls.clone(),
                ));
            }
            return p.clone();
        }
        let default_port = if https { 443 } else { 80 };
        let t = self.target(&target.host, target.port.unwrap_or(default_port), dns_ttl);
        let tls = if https {
            self.default_tls.clone()
        } else {
            None
        };
        Arc::new(Pool::new(
            vec![PoolMember {
                target: t,
                weight: 1,
            }],
            Balance::RoundRobin,
            self.workers,
            tls,
        ))
    }
}

/// A compiled proxy rule.
#[derive(Debug)]
pub struct Proxy {
    pool: Arc<Pool>,
    target: ProxyTarget,
    pattern: PathPattern,
    /// The `Host` sent for [`HostMode::Upstream`]: the URI's authority.
    authority: Box<str>,
    options: ProxyOptions,
    label: Box<str>,
    /// The upstream's metric slot, when metrics are on: its connections are counted by
    /// state, and its connect times.
    metric: Option<u32>,
}

/// Deadlines of one exchange.
struct Clock<'a> {
    total: Option<Instant>,
    options: &'a ProxyOptions,
    /// Whether the last deadline handed out was the total one.
    capped: bool,
}

impl Clock<'_> {
    /// `d`, no later than the total deadline, without marking the total as the one in
    /// force (for a grace wait whose failure reports an earlier error).
    fn cap_quiet(&self, d: Instant) -> Instant {
        self.total.map_or(d, |t| t.min(d))
    }

    fn cap(&mut self, d: Instant) -> Instant {
        match self.total {
            Some(t) if t <= d => {
                self.capped = true;
                t
            }
            _ => {
                self.capped = false;
                d
            }
        }
    }
    fn read(&mut self) -> Instant {
        self.cap(time::now() + self.options.read_timeout)
    }
    fn write(&mut self) -> Instant {
        self.cap(time::now() + self.options.write_timeout)
    }
    fn connect(&mut self) -> Instant {
        self.cap(time::now() + self.options.connect_timeout)
    }
    /// The client-facing error, a timeout past the total deadline being the total's.
    fn kind(&self, e: UpstreamError) -> ErrorKind {
        let timed_out = matches!(
            e,
            UpstreamError::ConnectTimeout
                | UpstreamError::ReadTimeout
                | UpstreamError::WriteTimeout
        );
        if timed_out && self.capped {
            ErrorKind::UpstreamTotalTimeout
        } else {
            e.kind()
        }
    }
}

/// A connection in use, with its share of `max_conns`.
struct Leased {
    conn: UpstreamConn<Wire>,
    /// Its idle-pool key beside the address (see `Pool::idle_key`).
    key: u64,
    _slot: Slot,
}

/// The response head is in: relay it.
struct Sent {
    framing: ResponseFraming,
    /// False when the exchange left the connection in doubt: the upstream answered before
    /// the whole request body was sent, or the body went without the `100 Continue` that
    /// was asked for.
    reusable: bool,
}

/// Methods whose request may be sent twice (RFC 9110 §9.2.2).
fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// Whether a warning of this kind was said less than a second ago on this worker (and if
/// not, records that it is said now): what an upstream does must not flood stderr.
fn recently_warned(last: &'static std::thread::LocalKey<std::cell::Cell<Option<Instant>>>) -> bool {
    let now = time::now();
    last.with(|l| {
        let recent = l
            .get()
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
        if !recent {
            l.set(Some(now));
        }
        recent
    })
}

/// Says on stderr (the log until there is one) why a TLS handshake with an upstream
/// failed: the client sees only a 502.
fn warn_tls_failure(upstream: std::net::SocketAddr, host: &str, e: &std::io::Error) {
    thread_local! {
        static LAST: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }
    if !recently_warned(&LAST) {
        anygate_obs::log::server(
            anygate_obs::log::Level::Warn,
            &format!("TLS handshake with upstream {host} ({upstream}) failed: {e}"),
        );
    }
}

/// Says on stderr that an upstream's trailer section was dropped.
fn warn_dropped_trailers(upstream: std::net::SocketAddr, rule: &str) {
    thread_local! {
        static LAST: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }
    if !recently_warned(&LAST) {
        anygate_obs::log::server(
            anygate_obs::log::Level::Warn,
            &format!(
                "rule `{rule}`: upstream {upstream} sent a malformed trailer section (or \
             fields kept out of trailers); it was dropped"
            ),
        );
    }
}

impl Proxy {
    /// Compiles a rule: `target` is its URI, `pattern` its path (for URL building).
    pub fn new(
        target: &ProxyTarget,
        pattern: &PathPattern,
        options: ProxyOptions,
        upstreams: &mut Upstreams,
        label: &str,
    ) -> Self {
        let authority = match target.port {
            Some(p) => format!("{}:{p}", target.host),
            None => target.host.clone(),
        };
        Self {
            pool: upstreams.pool_for(target, options.dns_ttl),
            target: target.clone(),
            pattern: pattern.clone(),
            authority: authority.into(),
            options,
            label: label.into(),
            metric: None,
        }
    }

    /// Counts this rule's upstream connections (by state) and connect times under the
    /// upstream's metric slot.
    pub fn count_under(&mut self, slot: u32) {
        self.metric = Some(slot);
    }

    /// Relays the request. `scratch` is the connection's reusable buffer; `path` the
    /// normalised request path, `splat` what the rule's prefix or `*` matched.
    pub async fn respond(
        &self,
        req: &Request<'_>,
        path: &[u8],
        splat: Option<&[u8]>,
        res: &mut Exchange<'_>,
        scratch: &mut Vec<u8>,
    ) {
        let mut clock = Clock {
            total: self.options.total_timeout.map(|t| time::now() + t),
            options: &self.options,
            capped: false,
        };
        if !self.options.allow_encoded_traversal && encoded_traversal(path) {
            return self.fail(res, ErrorKind::BadPath);
        }
        let upgrade = headers::upgrade_requested(req);
        scratch.clear();
        let edits = res.edits();
        encode::request_line(scratch, req.method(), |out| {
            if edits.changes_query() {
                push_upstream_path_and_query(out, &self.target, &self.pattern, path, splat, None);
                edits.push_query(out, req.query());
            } else {
                push_upstream_path_and_query(
                    out,
                    &self.target,
                    &self.pattern,
                    path,
                    splat,
                    req.query(),
                );
            }
        });
        let span_at =
            headers::request_head(scratch, req, &self.options, &self.authority, res, upgrade);
        let outcome = self
            .exchange(req, scratch, span_at, res, &mut clock, upgrade.is_some())
            .await;
        scratch.clear();
        let (mut leased, sent) = match outcome {
            Ok(v) => v,
            Err(kind) => return self.fail(res, kind),
        };
        let Sent {
            mut framing,
            reusable,
        } = sent;
        let status = leased.conn.head.status();
        if status == 101 {
            if upgrade.is_none() {
                return self.fail(res, ErrorKind::UpstreamInvalid);
            }
            return self.tunnel(leased, res, scratch).await;
        }
        let client_h11 = req.version() == Version::Http11;
        let pass_chunked = client_h11 && matches!(framing, ResponseFraming::Chunked(_));
        if matches!(framing, ResponseFraming::UntilClose)
            || (matches!(framing, ResponseFraming::Chunked(_)) && !pass_chunked)
            || !res.body_done()
        {
            // The body ends with the connection, or the upstream answered before the
            // request body was all read (the rest is not worth reading).
            res.close();
        }
        // 1xx and 204 have no length; a 304 or a response to `HEAD` keeps the one that
        // describes the representation.
        let bodiless = status < 200 || status == 204;
        let framing_field = match leased.conn.info.content_length {
            Some(n) if !bodiless => BodyFraming::Length(n),
            _ if pass_chunked => BodyFraming::Chunked,
            _ => BodyFraming::Unframed,
        };
        headers::relay_head(&mut leased.conn.head, self.options.via, scratch);
        std::mem::swap(res.head(), &mut leased.conn.head);
        res.start_stream(framing_field);
        scratch.clear();
        loop {
            let piece = match leased.conn.body_piece(&mut framing, clock.read()).await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(_) => {
                    // The head is gone: all that is left is to cut the response short.
                    res.close();
                    return;
                }
            };
            let finished = framing.is_finished();
            if pass_chunked {
                // Chunked both ways: the body is framed again here, so the upstream's
                // chunk extensions never reach the client, and its trailer section is
                // collected (bounded by the decoder), checked, and written again.
                let (trailer, _) = leased.conn.piece(piece.trailer.clone());
                scratch.extend_from_slice(trailer);
                let (bytes, timer) = leased.conn.piece(piece.data);
                if !bytes.is_empty() {
                    let mut line = [0u8; 18];
                    let n = chunk_size_line(bytes.len(), &mut line);
                    res.push_body(&line[..n]);
                    if !res
                        .write_body(bytes, timer, self.options.write_timeout)
                        .await
                    {
                        return;
                    }
                    res.push_body(b"\r\n");
                }
                if finished {
                    res.push_body(b"0\r\n");
                    // A malformed trailer section (a control byte, a line that is no
                    // field, a field kept out of trailers) is dropped whole, and said;
                    // the body is still complete.
                    if valid_trailers(scratch) {
                        res.push_body(scratch);
                    } else {
                        warn_dropped_trailers(leased.conn.addr, &self.label);
                    }
                    res.push_body(b"\r\n");
                    break;
                }
                continue;
            }
            let (bytes, timer) = leased.conn.piece(piece.data);
            if finished && bytes.len() <= BUFFER_LAST_PIECE {
                res.push_body(bytes);
                break;
            }
            if !res
                .write_body(bytes, timer, self.options.write_timeout)
                .await
            {
                // The client went away: dropping the connection cancels the upstream's work.
                return;
            }
        }
        if reusable
            && keeps_connection(&leased.conn.info, &framing)
            && !leased.conn.has_extra()
            && res.body_done()
        {
            let (mut conn, key) = (leased.conn, leased.key);
            conn.reset();
            pool::checkin(
                conn,
                key,
                self.options.max_idle,
                self.options.idle_timeout,
                self.metric,
            );
        }
    }

    fn fail(&self, res: &mut Exchange<'_>, kind: ErrorKind) {
        if kind == ErrorKind::ClientClosed {
            res.close();
        }
        res.error(kind, Some(&self.label));
    }

    /// Sends the request (again on a fresh connection, once, if a reused one turns out
    /// dead before anything irreversible happened) and reads the response head.
    async fn exchange(
        &self,
        req: &Request<'_>,
        head: &mut [u8],
        span_at: Option<usize>,
        res: &mut Exchange<'_>,
        clock: &mut Clock<'_>,
        upgrade: bool,
    ) -> Result<(Leased, Sent), ErrorKind> {
        let target = self
            .pool
            .pick(req, res.ctx().client)
            .ok_or(ErrorKind::UpstreamUnresolved)?
            .clone();
        let mut fresh_only = false;
        // Timed for sampled traces only (the span id is sent either way).
        let traced = span_at.is_some() && res.ctx().marks.is_some();
        // Connects are timed for metrics too, where they cost two clock reads beside a
        // connect's syscalls.
        let timed = traced || self.metric.is_some();
        loop {
            let connect_start = timed.then(time::precise_now);
            let got = self.connection(&target, clock, fresh_only).await;
            if let Some(from) = connect_start
                && !matches!(got, Ok((_, true)))
            {
                note_connect(res.ctx_mut(), from, got.is_ok());
            }
            let (mut leased, reused) = got?;
            if let Some(m) = self.metric {
                leased.conn.count_as(Some((m, PoolState::Active)));
            }
            let ctx = res.ctx_mut();
            ctx.upstream = Some(leased.conn.addr);
            ctx.attempt = ctx.attempt.saturating_add(1);
            // Each attempt is a span of its own: the upstream's parent.
            let attempt = span_at.map(|at| {
                let id = anygate_obs::trace::new_span_id();
                headers::set_span(head, at, &id);
                (
                    id,
                    if traced {
                        Some(time::precise_now())
                    } else {
                        None
                    },
                )
            });
            let result = self.send(&mut leased, req, head, res, clock, upgrade).await;
            if let (Some((id, Some(from))), Some(m)) = (attempt, &mut res.ctx_mut().marks) {
                m.upstream = Some((id, from, time::precise_now()));
            }
            match result {
                Ok(sent) => return Ok((leased, sent)),
                Err(e) => {
                    // A reused connection that turns out dead: the upstream closed it as we
                    // took it. Send again, once, on a new one, if nothing irreversible
                    // happened: no byte of the body was read from the client, and either
                    // the head could not even be written or the method is idempotent.
                    let retry = match e {
                        Failure::HeadNotSent => true,
                        Failure::Upstream(UpstreamError::ClosedBeforeResponse) => {
                            idempotent(req.method())
                        }
                        _ => false,
                    };
                    if reused && !fresh_only && retry && res.body_received() == 0 {
                        fresh_only = true;
                        continue;
                    }
                    return Err(match e {
                        Failure::Upstream(e) => clock.kind(e),
                        Failure::HeadNotSent => ErrorKind::UpstreamReset,
                        Failure::Client(k) => k,
                    });
                }
            }
        }
    }

    /// An idle connection to the target (checked alive), or a new one.
    async fn connection(
        &self,
        target: &Arc<Target>,
        clock: &mut Clock<'_>,
        fresh_only: bool,
    ) -> Result<(Leased, bool), ErrorKind> {
        // One deadline for the name lookup and the connect together.
        let deadline = clock.connect();
        // Almost always ready at once (cached): `timeout_at` sets no timer then.
        let resolved = time::timeout_at(deadline, target.host.addrs())
            .await
            .map_err(|_| clock.kind(UpstreamError::ConnectTimeout))?;
        if resolved.addrs.is_empty() {
            return Err(ErrorKind::UpstreamUnresolved);
        }
        let slot = Slot::take(target, self.options.max_conns).ok_or(ErrorKind::UpstreamBusy)?;
        let key = self.pool.idle_key(target);
        if !fresh_only && self.options.max_idle > 0 {
            for &addr in &resolved.addrs {
                while let Some(mut conn) = pool::checkout(addr, key) {
                    if conn.is_reusable() {
                        return Ok((
                            Leased {
                                conn,
                                key,
                                _slot: slot,
                            },
                            true,
                        ));
                    }
                }
            }
        }
        for &addr in &resolved.addrs {
            let tcp = match time::timeout_at(deadline, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(_)) => continue,
                Err(_) => return Err(clock.kind(UpstreamError::ConnectTimeout)),
            };
            let _ = tcp.set_nodelay(true);
            let wire = match &self.pool.tls {
                None => Wire::Plain(tcp),
                Some(tls) => {
                    let host = target.host.name();
                    // Boxed: the handshake's state (a whole rustls connection) would
                    // otherwise sit in every proxy request's future, plain ones too, and
                    // be copied with it (about 100 instructions per plain request).
                    let handshake = Box::pin(tls.client.connect(tcp, host));
                    match time::timeout_at(deadline, handshake).await {
                        Ok(Ok((stream, _))) => Wire::Tls(Box::new(stream)),
                        Ok(Err(e)) => {
                            warn_tls_failure(addr, host, &e);
                            return Err(ErrorKind::UpstreamTls);
                        }
                        Err(_) => return Err(clock.kind(UpstreamError::ConnectTimeout)),
                    }
                }
            };
            return Ok((
                Leased {
                    conn: UpstreamConn::new(wire, addr),
                    key,
                    _slot: slot,
                },
                false,
            ));
        }
        Err(clock.kind(UpstreamError::Refused))
    }

    /// Writes the request and its body, reads the response head.
    async fn send(
        &self,
        leased: &mut Leased,
        req: &Request<'_>,
        head: &[u8],
        res: &mut Exchange<'_>,
        clock: &mut Clock<'_>,
        upgrade: bool,
    ) -> Result<Sent, Failure> {
        let conn = &mut leased.conn;
        let head_request = req.method() == b"HEAD";
        conn.write(head, &[], clock.write())
            .await
            .map_err(|e| match e {
                UpstreamError::Reset => Failure::HeadNotSent,
                e => Failure::Upstream(e),
            })?;
        let mut reusable = true;
        if res.body_present() && res.expects_continue() {
            // Pass the expectation on: the upstream decides whether the body is wanted.
            let wait = clock.cap(time::now() + CONTINUE_WAIT.min(self.options.read_timeout));
            match conn.read_head(head_request, wait).await {
                Ok(framing) if conn.head.status() >= 200 => {
                    return Ok(Sent {
                        framing,
                        reusable: false,
                    });
                }
                // 100 (or another interim answer): the body is wanted.
                Ok(_) => {}
                // No answer in time: send the body anyway (RFC 9110 §10.1.1), but never
                // reuse the connection: an upstream that answers without reading it would
                // take the body for a next request.
                Err(UpstreamError::ReadTimeout) => reusable = false,
                Err(e) => return Err(e.into()),
            }
        }
        if let Err(e) = send_body(conn, res, clock).await {
            // The upstream may have answered already (413, 401, ...) and stopped reading or
            // closed: relay its answer if there is one (after any interim ones).
            if let Failure::Upstream(UpstreamError::Reset | UpstreamError::WriteTimeout) = e {
                let wait =
                    clock.cap_quiet(time::now() + CONTINUE_WAIT.min(self.options.read_timeout));
                for _ in 0..MAX_INTERIM {
                    match conn.read_head(head_request, wait).await {
                        Ok(_) if conn.head.status() < 200 => continue,
                        Ok(framing) => {
                            return Ok(Sent {
                                framing,
                                reusable: false,
                            });
                        }
                        Err(_) => break,
                    }
                }
            }
            return Err(e);
        }
        for _ in 0..MAX_INTERIM {
            // The client is watched while the upstream thinks: if it leaves, the exchange is
            // abandoned (dropping the upstream connection cancels the upstream's work).
            let framing = {
                let read = pin!(conn.read_head(head_request, clock.read()));
                match res.unless_client_gone(read).await {
                    Some(r) => r?,
                    None => return Err(Failure::Client(ErrorKind::ClientClosed)),
                }
            };
            let status = conn.head.status();
            if (100..200).contains(&status) && !(status == 101 && upgrade) {
                // 100 without an expectation, 102, 103 (and a 101 nobody asked for is
                // refused by the caller): interim, not relayed.
                if status == 101 {
                    return Ok(Sent {
                        framing,
                        reusable: false,
                    });
                }
                continue;
            }
            return Ok(Sent { framing, reusable });
        }
        // An upstream that keeps sending interim answers never gets to its response.
        Err(Failure::Upstream(UpstreamError::Invalid))
    }

    /// Relays `101 Switching Protocols`, then bytes both ways.
    async fn tunnel(&self, mut leased: Leased, res: &mut Exchange<'_>, scratch: &mut Vec<u8>) {
        headers::relay_head(&mut leased.conn.head, self.options.via, scratch);
        std::mem::swap(res.head(), &mut leased.conn.head);
        res.start_stream(BodyFraming::Unframed);
        scratch.clear();
        let Some(client) = res
            .upgrade(leased.conn.relay_timer(), self.options.write_timeout)
            .await
        else {
            return;
        };
        leased
            .conn
            .tunnel(client.io, client.pending, self.options.read_timeout)
            .await;
    }
}

/// Notes how long opening an upstream connection took (`opened`: it succeeded), for the
/// connect-time histogram and a sampled trace's `upstream.connect` span. Out of line: new
/// connections are rare next to reused ones.
#[cold]
#[inline(never)]
fn note_connect(ctx: &mut anygate_http::server::Ctx, from: Instant, opened: bool) {
    let to = time::precise_now();
    if opened {
        ctx.connect = Some(to.saturating_duration_since(from));
    }
    if let Some(m) = &mut ctx.marks {
        m.connect = Some((from, to));
    }
}

/// A failure of one attempt.
enum Failure {
    Upstream(UpstreamError),
    /// The connection failed while the request head was written: nothing reached the
    /// upstream's application.
    HeadNotSent,
    /// The client's side failed (its body broke off or it left): answer with this.
    Client(ErrorKind),
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Self {
        Self::Upstream(e)
    }
}

/// Streams the request body: `Content-Length` bodies as they are, chunked ones re-framed.
async fn send_body(
    conn: &mut UpstreamConn<Wire>,
    body: &mut Exchange<'_>,
    clock: &mut Clock<'_>,
) -> Result<(), Failure> {
    if !body.body_present() {
        return Ok(());
    }
    let chunked = body.body_length().is_none();
    // A chunk's closing CRLF leaves with the next chunk's size line: one write per chunk.
    let (mut frame, mut line) = ([0u8; 20], [0u8; 18]);
    let mut first = true;
    loop {
        let data = match body.body_chunk().await {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(k) => return Err(Failure::Client(k)),
        };
        if chunked {
            let at = if first { 0 } else { 2 };
            frame[..2].copy_from_slice(b"\r\n");
            let n = chunk_size_line(data.len(), &mut line);
            frame[at..at + n].copy_from_slice(&line[..n]);
            conn.write(&frame[..at + n], data, clock.write()).await?;
            first = false;
        } else {
            conn.write(data, &[], clock.write()).await?;
        }
    }
    if chunked {
        let end: &[u8] = if first {
            b"0\r\n\r\n"
        } else {
            b"\r\n0\r\n\r\n"
        };
        conn.write(end, &[], clock.write()).await?;
    }
    Ok(())
}
