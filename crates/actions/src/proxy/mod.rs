//! The proxy action: a request relayed to an upstream over HTTP/1.1 or HTTP/2, streamed
//! both ways.
//!
//! # One exchange
//! ```text
//! [pool breaker admits] ─► pick a member (balancer; skips down, ejected, open, busy and
//!                          already-tried members; backups only when no primary is left)
//!   ─► its addresses (DNS cache) ─► idle connection (LIFO, peeked) or connect
//!   ─► request head ─► [Expect: 100-continue: wait for the upstream's 100 or its answer]
//!   ─► body, streamed (chunked re-framed, Content-Length copied), or sent from the copy
//!      kept for retries
//!   ─► response head ─► outcome recorded (outlier detection, breakers)
//!        ├─ failed as `proxy.retries.on` says, and safe to repeat, and the budget allows
//!        │    ─► backoff ─► pick again (another member when there is one)
//!        ├─ 101 to an Upgrade request ─► tunnel bytes both ways until both close or idle
//!        └─ otherwise ─► head relayed (hop-by-hop removed) ─► body streamed as it comes
//! connection back to the pool if the exchange ended cleanly and both sides allow it
//! ```
//!
//! An `https://` rule (or a pool with `tls`) speaks TLS to its targets (`MaybeTls::Tls`):
//! the handshake shares the connect deadline, its failure is a 502 `AG-UPS-5025` (the
//! reason goes to stderr, at most once a second per worker), and TLS connections rest in
//! the idle pool beside plain ones, keyed by their TLS setup too.
//!
//! Resilience (`proxy.retries`, a pool's `health`, `outlier`, `breaker`, `slow_start` and
//! backups) is built from the pure machines of [`resilience`], fed with the worker's cached
//! clock; active checks run on their own thread ([`checker`]). A pool without any of them
//! (`guarded` false) skips their bookkeeping; requests that cannot be retried (a `POST` by
//! default, `attempts: 1`) do not read the clock for it.
//!
//! # Invariants
//! - Nothing is buffered beyond one read of each side, except a request body with a
//!   length up to `proxy.retry_body_limit` on a rule that retries, which is read whole
//!   first so that a retry can send it again.
//! - A request is sent again only when nothing of it is lost and it is safe: nothing was
//!   sent (connect failure, head not written), or the method is idempotent (or the rule
//!   opted in with `non_idempotent`) and the body was kept or none of it read. Never after
//!   the response head has gone to the client.
//! - Retries of a pool stay within its budget: in any 10 s, at most `budget` × requests +
//!   `min_retries_per_s` × 10 (the simulations in `resilience` assert it).
//! - A pool never has more than `max_ejected_percent` of its members ejected by outlier
//!   detection; an open breaker refuses with 503 `AG-UPS-2006` and `Retry-After`, never a
//!   queue; `max_pending` refuses with 503 `AG-UPS-5031` at once.
//! - Errors follow SPEC §6: refused, reset or garbage → 502, timeouts → 504, each with
//!   its `AG-UPS-…` code and no internal detail. Once the response head has gone to the
//!   client an upstream failure can only cut the response short: the client connection
//!   closes.
//!
//! HTTP/2 targets (`h2c://`, a pool's `protocol: h2`, or `auto` when ALPN picks `h2`) take
//! the path of [`h2`](self::h2) after the request head is built: multiplexed connections
//! per worker, both bodies streamed at once, trailers and gRPC's statuses.
//!
//! # Non-goals (next pieces)
//! Health, outlier detection and breakers for ad-hoc
//! `http://host:port/` rules (they need a pool); a shared (cross-process) budget or health
//! state. Balancing is in [`balance`].

pub mod balance;
pub mod checker;
mod dns;
mod h2;
mod headers;
mod pool;
pub mod resilience;
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

use self::balance::{Balance, Balancer, HashKey};
use self::dns::HostEntry;
use self::pool::{Slot, Target};
use self::resilience::{
    Breaker, BreakerPolicy, BreakerState, BudgetPolicy, Outlier, OutlierPolicy, RetryBudget,
    Ticket, Transition,
};

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
    /// `proxy.retries` and `proxy.retry_body_limit`.
    pub retry: RetryOptions,
}

/// What a failed attempt may be retried on (`proxy.retries.on`), as bits.
pub mod retry_on {
    /// The connection could not be opened (refused, timed out, TLS failed, no address).
    pub const CONNECT_FAILURE: u8 = 1;
    /// The connection broke before the response head.
    pub const RESET: u8 = 2;
    /// No response head within `proxy.timeouts.read`.
    pub const TIMEOUT: u8 = 4;
    /// A `502` answer.
    pub const S502: u8 = 8;
    /// A `503` answer.
    pub const S503: u8 = 16;
    /// A `504` answer.
    pub const S504: u8 = 32;
}

/// `proxy.retries` in effect for a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryOptions {
    /// Attempts in all (1: no retries).
    pub attempts: u32,
    /// [`retry_on`] bits.
    pub on: u8,
    /// The first backoff, doubled per retry up to `backoff_max` (each one jittered).
    pub backoff_base: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
    /// `non_idempotent`: retry `POST` and `PATCH` too.
    pub non_idempotent: bool,
    /// `proxy.retry_body_limit`: a request body up to this size (with a length) is kept so
    /// that it can be sent again.
    pub body_limit: u64,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            attempts: 1,
            on: retry_on::CONNECT_FAILURE,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_secs(1),
            non_idempotent: false,
            body_limit: 64 * 1024,
        }
    }
}

impl RetryOptions {
    /// The pause before retry number `n` (1 for the first): half of `base × 2^(n-1)`
    /// (at most `max`) plus a random part of the other half.
    fn backoff(&self, n: u32) -> Duration {
        let full = self
            .backoff_base
            .saturating_mul(1 << n.saturating_sub(1).min(16))
            .min(self.backoff_max);
        let half = full / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(anygate_obs::trace::random_u64() % nanos)
    }
}

/// What a pool speaks to its targets (`proxy.upstreams.NAME.protocol`; `h2c://` rules).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1.
    #[default]
    H1,
    /// HTTP/2 (prior knowledge over plain TCP, ALPN `h2` over TLS).
    H2,
    /// Over TLS, what ALPN picks; HTTP/1.1 over plain TCP.
    Auto,
}

/// A TLS client setup of a pool, with the id its idle connections are kept under.
#[derive(Debug)]
pub struct PoolTls {
    /// Offers `http/1.1` by ALPN.
    client: TlsClient,
    /// For `protocol: h2` (offers `h2`) or `auto` (`h2`, then `http/1.1`).
    h2: Option<TlsClient>,
    id: u64,
}

/// One target of a pool, with its weight and its state there.
#[derive(Clone, Debug)]
struct PoolMember {
    target: Arc<Target>,
    weight: u32,
    state: Arc<MemberState>,
}

/// What a pool knows of one of its targets' health.
#[derive(Debug, Default)]
struct MemberState {
    outlier: Outlier,
    breaker: Option<Breaker>,
    /// Its active check, if the pool has one.
    health: Option<Arc<checker::Watched>>,
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

/// A target of a pool, as configured.
#[derive(Clone, Debug)]
pub struct TargetSpec {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Weight (1 to 1000).
    pub weight: u32,
    /// Used only when no primary target is available.
    pub backup: bool,
}

/// How a pool guards against failing targets (`proxy.upstreams.NAME.*`); every part off by
/// default.
#[derive(Clone, Debug, Default)]
pub struct Guards {
    /// `health`: active checks.
    pub health: Option<checker::CheckSpec>,
    /// `outlier`: passive ejection.
    pub outlier: Option<OutlierPolicy>,
    /// `breaker`: circuit breakers per target and for the pool.
    pub breaker: Option<BreakerPolicy>,
    /// `breaker.max_pending`: requests in flight per target (0: unbounded).
    pub max_pending: usize,
    /// `slow_start`.
    pub slow_start: Duration,
}

/// The targets of one pool, and how a request picks one.
#[derive(Debug)]
pub struct Pool {
    name: Box<str>,
    /// Primaries, then backups (indices past `primaries` are backups).
    members: Vec<PoolMember>,
    primaries: usize,
    balance: Balance,
    balancer: Balancer,
    backup_balancer: Balancer,
    /// TLS to the targets, if the pool speaks it.
    tls: Option<Arc<PoolTls>>,
    /// HTTP/1.1, HTTP/2, or what ALPN picks.
    protocol: Protocol,
    guards: Arc<Guards>,
    /// Whether any guard can make a member ineligible: if not, every member always is.
    guarded: bool,
    /// The pool's own breaker (over all its requests).
    breaker: Option<Arc<Breaker>>,
    budget: Arc<RetryBudget>,
}

/// The members a request has tried (by index; past 64 members they are not remembered).
#[derive(Clone, Copy, Debug, Default)]
struct Tried(u64);

impl Tried {
    fn has(self, i: usize) -> bool {
        i < 64 && self.0 & (1 << i) != 0
    }
    fn add(&mut self, i: usize) {
        if i < 64 {
            self.0 |= 1 << i;
        }
    }
}

/// The member chosen for an attempt, with its breaker's ticket.
struct Chosen<'p> {
    index: usize,
    member: &'p PoolMember,
    ticket: Option<Ticket<'p>>,
}

/// Why no member could be chosen.
enum NoTarget {
    /// Every one is behind an open breaker: retry after this many ms.
    Open(u64),
    /// Every one has `max_pending` requests in flight.
    Busy,
    /// Every one is down or ejected (or tried).
    Down,
}

/// How an attempt ended, for outlier detection and the breakers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    /// Says nothing of the target (the client left, the target was busy).
    Neutral,
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

    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &str,
        members: Vec<PoolMember>,
        primaries: usize,
        balance: Balance,
        workers: usize,
        tls: Option<Arc<PoolTls>>,
        protocol: Protocol,
        guards: Arc<Guards>,
        budget: Arc<RetryBudget>,
    ) -> Self {
        if matches!(balance, Balance::LeastConn | Balance::Random) || guards.max_pending != 0 {
            // Every request to these targets counts, whichever pool or rule sends it.
            for m in &members {
                m.target.counted.store(true, Ordering::Relaxed);
            }
        }
        let guarded = primaries < members.len()
            || guards.health.is_some()
            || guards.outlier.is_some()
            || guards.breaker.is_some()
            || guards.max_pending != 0
            || !guards.slow_start.is_zero();
        Self {
            name: name.into(),
            balancer: Balancer::new(&balance, &members[..primaries], workers),
            backup_balancer: Balancer::new(&balance, &members[primaries..], workers),
            breaker: guards.breaker.map(|p| Arc::new(Breaker::new(p, workers))),
            members,
            primaries,
            // `auto` over plain TCP is HTTP/1.1: there is no ALPN to ask.
            protocol: if protocol == Protocol::Auto && tls.is_none() {
                Protocol::H1
            } else {
                protocol
            },
            balance,
            tls,
            guards,
            guarded,
            budget,
        }
    }

    /// A copy of this pool speaking TLS with `tls` and `protocol` (its members' state
    /// shared).
    fn with(&self, tls: Option<Arc<PoolTls>>, protocol: Protocol, workers: usize) -> Self {
        let mut p = Self::new(
            &self.name,
            self.members.clone(),
            self.primaries,
            self.balance.clone(),
            workers,
            tls,
            protocol,
            self.guards.clone(),
            self.budget.clone(),
        );
        p.breaker = self.breaker.clone();
        p
    }

    /// Whether `m` may take a request at `now`: up, not ejected, its breaker not open, not
    /// at `max_pending`.
    fn available(&self, m: &PoolMember, now: u64) -> bool {
        let s = &m.state;
        s.health.as_ref().is_none_or(|h| h.is_up())
            && !s.outlier.ejected(now)
            && s.breaker.as_ref().is_none_or(|b| b.may_admit(now))
            && (self.guards.max_pending == 0
                || m.target.busy.load(Ordering::Relaxed) < self.guards.max_pending)
    }

    /// The member for an attempt of `req` (`client`: the address `server.trusted_proxies`
    /// found), by the pool's strategy: a primary that is available and not `tried`, else a
    /// backup; the ones tried are taken again only when nothing else is left.
    fn choose(
        &self,
        req: &Request<'_>,
        client: Option<std::net::IpAddr>,
        tried: Tried,
        now: u64,
    ) -> Result<Chosen<'_>, NoTarget> {
        let mut key = None;
        let mut key_of =
            |k: &HashKey| *key.get_or_insert_with(|| balance::key_hash(k, req, client));
        if !self.guarded {
            let n = self.members.len();
            let i = if n == 1 {
                0
            } else {
                let fresh = self
                    .balancer
                    .pick(&self.members, &mut key_of, |i| !tried.has(i));
                match fresh {
                    Some(i) => i,
                    None => self
                        .balancer
                        .pick(&self.members, &mut key_of, |_| true)
                        .ok_or(NoTarget::Down)?,
                }
            };
            return Ok(Chosen {
                index: i,
                member: &self.members[i],
                ticket: None,
            });
        }
        let mut skip = tried;
        let mut open: Option<u64> = None;
        let mut busy = false;
        for again in [false, true] {
            if again {
                // Everything untried is out: the tried ones may be tried again.
                skip = Tried::default();
            }
            for (set, balancer, offset) in [
                (&self.members[..self.primaries], &self.balancer, 0),
                (
                    &self.members[self.primaries..],
                    &self.backup_balancer,
                    self.primaries,
                ),
            ] {
                // A member passed over by slow start, taken if nothing else is.
                let mut deferred = None;
                for _ in 0..set.len() {
                    let eligible = |i: usize| !skip.has(offset + i) && self.available(&set[i], now);
                    let Some(i) = balancer.pick(set, &mut key_of, eligible) else {
                        break;
                    };
                    skip.add(offset + i);
                    if !self.admitted_by_slow_start(&set[i], now) {
                        deferred = deferred.or(Some(i));
                        continue;
                    }
                    match admit(offset + i, &set[i], now, &mut open) {
                        Some(c) => return Ok(c),
                        None => continue,
                    }
                }
                if let Some(c) = deferred.and_then(|i| admit(offset + i, &set[i], now, &mut open)) {
                    return Ok(c);
                }
            }
            busy |= self.guards.max_pending != 0
                && self
                    .members
                    .iter()
                    .any(|m| m.target.busy.load(Ordering::Relaxed) >= self.guards.max_pending);
            if tried.0 == 0 {
                break;
            }
        }
        if let Some(ms) = open.or_else(|| self.open_for(now)) {
            return Err(NoTarget::Open(ms));
        }
        Err(if busy { NoTarget::Busy } else { NoTarget::Down })
    }

    /// The shortest wait until a breaker of a primary member half-opens, if every
    /// available-but-for-its-breaker member is open.
    fn open_for(&self, now: u64) -> Option<u64> {
        self.members[..self.primaries]
            .iter()
            .filter_map(|m| match m.state.breaker.as_ref()?.state(now) {
                BreakerState::Open(ms) => Some(ms),
                _ => None,
            })
            .min()
    }

    /// Slow start: a member that rejoined lately is taken with the probability of its
    /// share so far.
    fn admitted_by_slow_start(&self, m: &PoolMember, now: u64) -> bool {
        let over = resilience::millis_of(self.guards.slow_start);
        if over == 0 || matches!(self.balance, Balance::Hash(_)) {
            return true;
        }
        let ejection_end = m.state.outlier.until();
        let health_back = m.state.health.as_ref().map_or(0, |h| h.rejoined());
        let since = ejection_end.max(health_back);
        resilience::slow_start_admits(now, since, over, anygate_obs::trace::random_u64())
    }

    /// Notes how a request ended in the pool's own breaker (`ticket`, if it has one).
    fn finish(&self, ticket: Option<Ticket<'_>>, outcome: Outcome, now: u64) {
        if let (Some(t), true) = (ticket, outcome != Outcome::Neutral)
            && let Some(t) = t.record(outcome == Outcome::Success, now)
        {
            log_transition(&format!("upstream {}", self.name), t);
        }
    }

    /// Notes how an attempt on `chosen` ended (outlier detection, the target's breaker).
    fn record(&self, chosen: Chosen<'_>, outcome: Outcome, now: u64) {
        let m = chosen.member;
        let name = || {
            format!(
                "upstream {} target {}:{}",
                self.name,
                m.target.host.name(),
                m.target.host.port()
            )
        };
        if let Some(policy) = &self.guards.outlier {
            match outcome {
                Outcome::Success => m.state.outlier.success(),
                Outcome::Failure => {
                    let pool = self.members.iter().map(|m| &m.state.outlier);
                    if let Some(until) = Outlier::failure(policy, pool, &m.state.outlier, now) {
                        anygate_obs::log::server(
                            anygate_obs::log::Level::Warn,
                            &format!(
                                "{}: ejected for {} ms after {} failures in a row",
                                name(),
                                until - now,
                                policy.consecutive
                            ),
                        );
                    }
                }
                Outcome::Neutral => {}
            }
        }
        if let Some(ticket) = chosen.ticket {
            if outcome == Outcome::Neutral {
                return;
            }
            if let Some(t) = ticket.record(outcome == Outcome::Success, now) {
                log_transition(&name(), t);
            }
        }
    }
}

/// `member` through its breaker (a probe's place when it is half-open); `open` keeps the
/// shortest wait of the breakers that refused.
fn admit<'p>(
    index: usize,
    member: &'p PoolMember,
    now: u64,
    open: &mut Option<u64>,
) -> Option<Chosen<'p>> {
    let ticket = match &member.state.breaker {
        None => None,
        Some(b) => match b.admit(now) {
            Ok(t) => Some(t),
            Err(ms) => {
                *open = Some(open.map_or(ms, |o| o.min(ms)));
                return None;
            }
        },
    };
    Some(Chosen {
        index,
        member,
        ticket,
    })
}

/// Says that a breaker opened or closed.
fn log_transition(what: &str, t: Transition) {
    let (level, said) = match t {
        Transition::Opened => (anygate_obs::log::Level::Warn, "circuit open"),
        Transition::Closed => (anygate_obs::log::Level::Info, "circuit closed"),
    };
    anygate_obs::log::server(level, &format!("{what}: {said}"));
}

/// Every upstream of one configuration: named pools, and targets shared by host and port
/// (so that `max_conns` counts a target once, whichever rules name it).
#[derive(Debug)]
pub struct Upstreams {
    /// The runtime's workers (per-worker balancer state is sized by it).
    workers: usize,
    pools: HashMap<String, Arc<Pool>>,
    targets: HashMap<(String, u16), Arc<Target>>,
    /// TLS to `https://host/` targets that name no pool: system roots, the host as name.
    default_tls: Option<Arc<PoolTls>>,
    /// `proxy.retries.budget` and `min_retries_per_s`: each pool's budget.
    budget: BudgetPolicy,
    /// The budgets of targets named outside pools, by target (rules naming one share it).
    lone_budgets: HashMap<u32, Arc<RetryBudget>>,
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
    /// No pools yet, for a runtime of `workers` workers, each pool with a retry budget of
    /// `budget`.
    pub fn new(workers: usize, budget: BudgetPolicy) -> Self {
        Self {
            workers,
            pools: HashMap::new(),
            targets: HashMap::new(),
            default_tls: None,
            budget,
            lone_budgets: HashMap::new(),
        }
    }

    /// Defines the pool `name` over `targets`, balanced by `balance`, speaking `protocol`
    /// (over TLS with `tls`: an HTTP/1.1 client, and for HTTP/2 one that offers `h2`),
    /// guarded by `guards`.
    #[allow(clippy::too_many_arguments)]
    pub fn define(
        &mut self,
        name: &str,
        targets: &[TargetSpec],
        balance: Balance,
        dns_ttl: Duration,
        tls: Option<(TlsClient, Option<TlsClient>)>,
        protocol: Protocol,
        guards: Guards,
    ) {
        let tls = tls.map(|(client, h2)| {
            Arc::new(PoolTls {
                client,
                h2,
                id: next_tls_id(),
            })
        });
        let breaker = guards.breaker;
        let mut primaries = Vec::new();
        let mut backups = Vec::new();
        for t in targets {
            let target = self.target(&t.host, t.port, dns_ttl);
            let state = MemberState {
                breaker: breaker.map(|p| Breaker::new(p, self.workers)),
                health: guards
                    .health
                    .as_ref()
                    .map(|spec| checker::watch(name, &target, spec, tls.clone())),
                ..MemberState::default()
            };
            let m = PoolMember {
                target,
                weight: t.weight,
                state: Arc::new(state),
            };
            if t.backup {
                backups.push(m);
            } else {
                primaries.push(m);
            }
        }
        let n = primaries.len();
        primaries.extend(backups);
        let budget = Arc::new(RetryBudget::new(self.budget, self.workers));
        self.pools.insert(
            name.to_ascii_lowercase(),
            Arc::new(Pool::new(
                name,
                primaries,
                n,
                balance,
                self.workers,
                tls,
                protocol,
                Arc::new(guards),
                budget,
            )),
        );
    }

    /// Whether the pool `name` is defined with TLS.
    pub fn pool_has_tls(&self, name: &str) -> bool {
        self.pools.get(name).is_some_and(|p| p.tls.is_some())
    }

    /// The protocol of the pool `name`, if it is defined.
    pub fn pool_protocol(&self, name: &str) -> Option<Protocol> {
        self.pools.get(name).map(|p| p.protocol)
    }

    /// Sets the TLS client for `https://` targets outside pools (built only when a rule
    /// needs it: the system roots may be missing).
    pub fn set_default_tls(&mut self, client: TlsClient) {
        self.default_tls = Some(Arc::new(PoolTls {
            client,
            h2: None,
            id: next_tls_id(),
        }));
    }

    /// Whether [`Upstreams::set_default_tls`] was called.
    pub fn has_default_tls(&self) -> bool {
        self.default_tls.is_some()
    }

    /// Each pool's targets and their state now, for the admin listener, the metrics and
    /// `explain`, sorted by pool name.
    pub fn states(&self) -> Vec<PoolStates> {
        let now = resilience::millis(time::now());
        let mut out: Vec<PoolStates> = self
            .pools
            .iter()
            .map(|(name, p)| PoolStates {
                name: name.clone(),
                circuit: p.breaker.as_ref().map(|b| match b.state(now) {
                    BreakerState::Closed => "closed",
                    BreakerState::Open(_) => "open",
                    BreakerState::HalfOpen => "half_open",
                }),
                targets: p
                    .members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| TargetState::of(m, i >= p.primaries, now))
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
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
        let h2c = target.scheme == Scheme::H2c;
        if target.port.is_none()
            && let Some(p) = self.pools.get(&target.host)
        {
            if h2c && p.protocol != Protocol::H2 {
                // (A pool with `tls` refuses `h2c://` when the configuration is compiled.)
                // `h2c://pool/`: HTTP/2 with prior knowledge to the pool's targets.
                return Arc::new(p.with(None, Protocol::H2, self.workers));
            }
            if https && p.tls.is_none() {
                // `https://pool/` over a pool without `tls`: the default client settings.
                return Arc::new(p.with(self.default_tls.clone(), p.protocol, self.workers));
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
        let (workers, policy) = (self.workers, self.budget);
        let budget = self
            .lone_budgets
            .entry(t.id)
            .or_insert_with(|| Arc::new(RetryBudget::new(policy, workers)))
            .clone();
        let name = format!("{}:{}", t.host.name(), t.host.port());
        Arc::new(Pool::new(
            &name,
            vec![PoolMember {
                target: t,
                weight: 1,
                state: Arc::default(),
            }],
            1,
            Balance::RoundRobin,
            self.workers,
            tls,
            if h2c { Protocol::H2 } else { Protocol::H1 },
            Arc::default(),
            budget,
        ))
    }
}

/// One pool's state, as [`Upstreams::states`] reports it.
#[derive(Clone, Debug)]
pub struct PoolStates {
    /// The pool's name.
    pub name: String,
    /// Its own breaker's state (`closed`, `open`, `half_open`), if it has one.
    pub circuit: Option<&'static str>,
    /// Its targets, primaries first.
    pub targets: Vec<TargetState>,
}

/// One target's state, as [`Upstreams::states`] reports it.
#[derive(Clone, Debug)]
pub struct TargetState {
    /// `host:port`.
    pub target: String,
    /// A backup target.
    pub backup: bool,
    /// `up`, `down` (active checks), `ejected` (outlier detection), `open` or `half_open`
    /// (its breaker), `unchecked` (before its first check).
    pub state: &'static str,
    /// Why (the last failed check), or when it comes back.
    pub detail: String,
}

impl TargetState {
    fn of(m: &PoolMember, backup: bool, now: u64) -> Self {
        let s = &m.state;
        let mut detail = String::new();
        let mut state = "up";
        if let Some(h) = &s.health {
            let (st, why) = h.describe();
            state = st;
            detail = why;
        }
        if state != "down" {
            if s.outlier.ejected(now) {
                state = "ejected";
                detail = format!("for {} ms more", s.outlier.until() - now);
            } else if let Some(b) = &s.breaker {
                match b.state(now) {
                    BreakerState::Open(ms) => {
                        state = "open";
                        detail = format!("circuit open for {ms} ms more");
                    }
                    BreakerState::HalfOpen => state = "half_open",
                    BreakerState::Closed => {}
                }
            }
        }
        Self {
            target: format!("{}:{}", m.target.host.name(), m.target.host.port()),
            backup,
            state,
            detail,
        }
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
        if self.pool.protocol != Protocol::H1 && !h2::speaks_h1(&self.pool) {
            if upgrade.is_none() {
                // Boxed: the HTTP/1.1 path's future does not carry the HTTP/2 one's state.
                let h2 = Box::pin(self.respond_h2(req, span_at, res, &mut clock, scratch));
                if h2.await {
                    scratch.clear();
                    return;
                }
            } else if self.pool.protocol == Protocol::H2 {
                // An upgrade (WebSocket) has no HTTP/2 form here (RFC 8441 is not spoken
                // to upstreams).
                scratch.clear();
                return self.fail(res, ErrorKind::NotImplemented);
            }
        }
        let outcome = self
            .exchange(req, scratch, span_at, res, &mut clock, upgrade.is_some())
            .await;
        scratch.clear();
        let (mut leased, sent) = match outcome {
            Ok(v) => v,
            Err(r) => return self.refuse(res, r),
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
        if status >= 400 && res.intercepts(status) {
            // `errors.intercept_upstream`: the page replaces the upstream's body, which is
            // not read (so its connection is not reused); the status is kept.
            if !res.body_done() {
                res.close();
            }
            return res.send_error_page(status, anygate_router::status::reason(status));
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
                    // The head is gone: all that is left is to cut the response short (the
                    // connection closes over HTTP/1.1, the stream is reset over HTTP/2).
                    res.abort();
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

    /// Answers with the refusal's error (with `Retry-After` for an open breaker).
    fn refuse(&self, res: &mut Exchange<'_>, r: Refusal) {
        match r.retry_after {
            Some(secs) => {
                let mut digits = [0u8; 20];
                let secs = anygate_http::message::decimal(secs, &mut digits);
                res.error_with(r.kind, Some(&self.label), &[(b"retry-after", secs)]);
            }
            None => self.fail(res, r.kind),
        }
    }

    fn fail(&self, res: &mut Exchange<'_>, kind: ErrorKind) {
        if kind == ErrorKind::ClientClosed {
            res.close();
        }
        res.error(kind, Some(&self.label));
    }

    /// Sends the request to a target of the pool and reads the response head, retrying
    /// on another target (`proxy.retries`) when the attempt failed in a way the rule
    /// retries on, the method may be sent twice, the body can be sent again, and the pool's
    /// budget has a retry left. Within an attempt, a reused connection that turns out dead
    /// before anything irreversible happened is replaced, once, by a fresh one to the same
    /// target.
    ///
    /// One loop for both, not an `async fn` per attempt: each level of futures moves its
    /// child's whole state, and its result, once more (an attempt of its own cost about 400
    /// instructions per proxied request; `bench/reports/20261203-1510-callgrind-resilience.md`).
    async fn exchange(
        &self,
        req: &Request<'_>,
        head: &mut [u8],
        span_at: Option<usize>,
        res: &mut Exchange<'_>,
        clock: &mut Clock<'_>,
        upgrade: bool,
    ) -> Result<(Leased, Sent), Refusal> {
        let pool = &*self.pool;
        let retry = &self.options.retry;
        let retries = retry.attempts > 1 && (retry.non_idempotent || idempotent(req.method()));
        let mut now = if pool.guarded || retries {
            resilience::millis(time::now())
        } else {
            0
        };
        let pool_ticket = match &pool.breaker {
            None => None,
            Some(b) => Some(b.admit(now).map_err(Refusal::open)?),
        };
        // A body small enough is kept, to be sent again by a retry.
        let mut body: Option<Vec<u8>> = None;
        if retries {
            pool.budget.request(now);
            if res.body_present()
                && !res.expects_continue()
                && res.body_length().is_some_and(|n| n <= retry.body_limit)
            {
                body = Some(read_body(res).await.map_err(Refusal::from)?);
            }
        }
        let finish = |t, outcome, now| pool.finish(t, outcome, now);
        // Timed for sampled traces only (the span id is sent either way).
        let traced = span_at.is_some() && res.ctx().marks.is_some();
        // Connects are timed for metrics too, where they cost two clock reads beside a
        // connect's syscalls.
        let timed = traced || self.metric.is_some();
        let mut tried = Tried::default();
        let mut attempt = 0u32;
        // The attempt's member, kept while a dead reused connection is replaced.
        let mut current: Option<Chosen<'_>> = None;
        loop {
            let fresh_only = current.is_some();
            let chosen = match current.take() {
                Some(c) => c,
                None => {
                    attempt += 1;
                    match pool.choose(req, res.ctx().client, tried, now) {
                        Ok(c) => c,
                        Err(no) => {
                            finish(pool_ticket, Outcome::Neutral, now);
                            return Err(no.into());
                        }
                    }
                }
            };
            tried.add(chosen.index);
            let target = &chosen.member.target;
            let connect_start = timed.then(time::precise_now);
            let got = self.connection(target, clock, fresh_only).await;
            if let Some(from) = connect_start
                && !matches!(got, Ok((_, true)))
            {
                note_connect(res.ctx_mut(), from, got.is_ok());
            }
            let result = match got {
                Err(kind) => Err(Failure::Connect(kind)),
                Ok((mut leased, reused)) => {
                    if let Some(m) = self.metric {
                        leased.conn.count_as(Some((m, PoolState::Active)));
                    }
                    let ctx = res.ctx_mut();
                    ctx.upstream = Some(leased.conn.addr);
                    ctx.attempt = ctx.attempt.saturating_add(1);
                    // Each attempt is a span of its own: the upstream's parent.
                    let span = span_at.map(|at| {
                        let id = anygate_obs::trace::new_span_id();
                        headers::set_span(head, at, &id);
                        (id, traced.then(time::precise_now))
                    });
                    let sent = self
                        .send(&mut leased, req, head, res, clock, upgrade, body.as_deref())
                        .await;
                    if let (Some((id, Some(from))), Some(m)) = (span, &mut res.ctx_mut().marks) {
                        m.upstream = Some((id, from, time::precise_now()));
                    }
                    match sent {
                        Ok(sent) => Ok((leased, sent)),
                        Err(e) => {
                            // A reused connection that turns out dead: the upstream closed
                            // it as we took it. Send again, once, on a new one, if nothing
                            // irreversible happened: no byte of the body was read from the
                            // client (or it was kept), and either the head could not even
                            // be written or the method is idempotent.
                            let again = match e {
                                Failure::HeadNotSent => true,
                                Failure::Upstream(UpstreamError::ClosedBeforeResponse) => {
                                    idempotent(req.method())
                                }
                                _ => false,
                            };
                            if reused
                                && !fresh_only
                                && again
                                && (body.is_some() || res.body_received() == 0)
                            {
                                drop(leased);
                                current = Some(chosen);
                                continue;
                            }
                            Err(e)
                        }
                    }
                }
            };
            // Nothing of the request is lost if it is sent again: the body was kept, or
            // none of it was read.
            let replayable = body.is_some() || res.body_received() == 0;
            let may_retry = |on: u8| {
                retries
                    && retry.on & on != 0
                    && attempt < retry.attempts
                    && replayable
                    && clock.total.is_none_or(|t| time::now() < t)
            };
            let (outcome, retry_on, result) = match result {
                Ok((leased, sent)) => {
                    let on = match leased.conn.head.status() {
                        502 => retry_on::S502,
                        503 => retry_on::S503,
                        504 => retry_on::S504,
                        _ => 0,
                    };
                    let outcome = if on != 0 {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    (outcome, on, Ok((leased, sent)))
                }
                Err(f) => {
                    let (outcome, on) = f.class();
                    (outcome, on, Err(f.kind(clock)))
                }
            };
            // The clock again only where a machine reads it: a guarded pool's record, a
            // retry's budget.
            if pool.guarded || (retries && retry_on != 0) {
                now = resilience::millis(time::now());
            }
            pool.record(chosen, outcome, now);
            if retry_on != 0 && may_retry(retry_on) && pool.budget.try_retry(now) {
                // The answer (if any) is dropped with its connection.
                drop(result);
                if let Some(slot) = self.metric {
                    anygate_obs::metrics::retried(slot);
                }
                let pause = retry.backoff(attempt);
                if clock.total.is_some_and(|t| time::now() + pause >= t) {
                    finish(pool_ticket, Outcome::Failure, now);
                    return Err(ErrorKind::UpstreamTotalTimeout.into());
                }
                time::sleep(pause).await;
                now = resilience::millis(time::now());
                continue;
            }
            finish(pool_ticket, outcome, now);
            return result.map_err(Refusal::from);
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
        let tls = self.pool.tls.as_ref().map(|t| &t.client);
        let (wire, addr, _) = self
            .dial(target, &resolved.addrs, deadline, clock, tls)
            .await?;
        Ok((
            Leased {
                conn: UpstreamConn::new(wire, addr),
                key,
                _slot: slot,
            },
            false,
        ))
    }

    /// A new connection to the first of `addrs` that accepts one before `deadline`, with
    /// the TLS handshake (`tls`, the target's host as its name) under the same deadline;
    /// and the protocol TLS agreed by ALPN.
    async fn dial(
        &self,
        target: &Target,
        addrs: &[std::net::SocketAddr],
        deadline: Instant,
        clock: &Clock<'_>,
        tls: Option<&TlsClient>,
    ) -> Result<(Wire, std::net::SocketAddr, Option<Box<[u8]>>), ErrorKind> {
        for &addr in addrs {
            let tcp = match time::timeout_at(deadline, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(_)) => continue,
                Err(_) => return Err(clock.kind(UpstreamError::ConnectTimeout)),
            };
            let _ = tcp.set_nodelay(true);
            let Some(client) = tls else {
                return Ok((Wire::Plain(tcp), addr, None));
            };
            let host = target.host.name();
            // Boxed: the handshake's state (a whole rustls connection) would otherwise sit
            // in every proxy request's future, plain ones too, and be copied with it (about
            // 100 instructions per plain request).
            let handshake = Box::pin(client.connect(tcp, host));
            return match time::timeout_at(deadline, handshake).await {
                Ok(Ok((stream, facts))) => Ok((Wire::Tls(Box::new(stream)), addr, facts.alpn)),
                Ok(Err(e)) => {
                    warn_tls_failure(addr, host, &e);
                    Err(ErrorKind::UpstreamTls)
                }
                Err(_) => Err(clock.kind(UpstreamError::ConnectTimeout)),
            };
        }
        Err(clock.kind(UpstreamError::Refused))
    }

    /// Writes the request and its body (`body`, if it was kept), reads the response head.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        leased: &mut Leased,
        req: &Request<'_>,
        head: &[u8],
        res: &mut Exchange<'_>,
        clock: &mut Clock<'_>,
        upgrade: bool,
        body: Option<&[u8]>,
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
        let sent = match body {
            Some(b) => conn
                .write(b, &[], clock.write())
                .await
                .map_err(Failure::from),
            None => send_body(conn, res, clock).await,
        };
        if let Err(e) = sent {
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
    /// No connection could be had (nothing was sent): answer with this.
    Connect(ErrorKind),
}

impl Failure {
    /// What it says of the target, and the [`retry_on`] condition it is.
    fn class(&self) -> (Outcome, u8) {
        match self {
            Self::Connect(ErrorKind::UpstreamBusy) => (Outcome::Neutral, retry_on::CONNECT_FAILURE),
            Self::Connect(ErrorKind::UpstreamTotalTimeout) => (Outcome::Failure, 0),
            Self::Connect(_) => (Outcome::Failure, retry_on::CONNECT_FAILURE),
            Self::HeadNotSent
            | Self::Upstream(UpstreamError::Reset | UpstreamError::ClosedBeforeResponse) => {
                (Outcome::Failure, retry_on::RESET)
            }
            Self::Upstream(
                UpstreamError::ReadTimeout
                | UpstreamError::WriteTimeout
                | UpstreamError::ConnectTimeout,
            ) => (Outcome::Failure, retry_on::TIMEOUT),
            Self::Upstream(_) => (Outcome::Failure, 0),
            Self::Client(_) => (Outcome::Neutral, 0),
        }
    }

    /// The client-facing error.
    fn kind(self, clock: &Clock<'_>) -> ErrorKind {
        match self {
            Self::Upstream(e) => clock.kind(e),
            Self::HeadNotSent => ErrorKind::UpstreamReset,
            Self::Client(k) | Self::Connect(k) => k,
        }
    }
}

/// Why the proxy answers itself: the error, and for an open breaker when to come back.
struct Refusal {
    kind: ErrorKind,
    /// `Retry-After`, in seconds.
    retry_after: Option<u64>,
}

impl From<ErrorKind> for Refusal {
    fn from(kind: ErrorKind) -> Self {
        Self {
            kind,
            retry_after: None,
        }
    }
}

impl From<NoTarget> for Refusal {
    fn from(no: NoTarget) -> Self {
        match no {
            NoTarget::Open(ms) => Self::open(ms),
            NoTarget::Busy => ErrorKind::UpstreamBusy.into(),
            NoTarget::Down => ErrorKind::UpstreamUnavailable.into(),
        }
    }
}

impl Refusal {
    /// A breaker is open for `ms` more.
    fn open(ms: u64) -> Self {
        Self {
            kind: ErrorKind::UpstreamCircuitOpen,
            retry_after: Some(ms.div_ceil(1000).max(1)),
        }
    }
}

/// Reads the whole request body (its length is known and small), to send it again if a
/// retry needs it.
async fn read_body(res: &mut Exchange<'_>) -> Result<Vec<u8>, ErrorKind> {
    let mut body = Vec::with_capacity(usize::try_from(res.body_length().unwrap_or(0)).unwrap_or(0));
    while let Some(d) = res.body_chunk().await? {
        body.extend_from_slice(d);
    }
    Ok(body)
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
