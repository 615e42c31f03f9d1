//! Metrics: recorded per thread without a lock, summed when scraped, written in the
//! Prometheus text format (0.0.4) or OpenMetrics 1.0.
//!
//! # Design
//!
//! Every thread that records (a worker) owns a [`Shard`]: it alone writes it, with a
//! relaxed load and a relaxed store per counter (no read-modify-write, no lock prefix),
//! and the shard is its own 128-byte-aligned allocation, so no two writers share a cache
//! line. A scrape reads every shard ever created and sums; counters only grow, so a sum
//! read while workers write is a valid moment's value, never a torn one (each counter is
//! one atomic word).
//!
//! Per-route and per-upstream counters live in arrays indexed by a *slot*: the
//! configuration interns each rule label (with its action) and each upstream name once
//! when it is loaded ([`route_slots`], [`upstream_slots`]), and a reload that keeps a label
//! keeps its slot, so its counters go on counting. A shard's array grows when its thread
//! first records a slot beyond it: the owner copies its values into a larger array and
//! publishes it (`ArcSwap`); scrapers read whichever array they see, and both hold the
//! same values, since only the owner writes.
//!
//! Labels are from bounded sets only: rule labels and upstream names of the configurations
//! loaded, eight method classes, five status classes, the error catalog's codes. Never a
//! path, an id or an address.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

/// The method classes (`method` label).
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];

/// The class of `method` (an index into [`METHODS`]).
pub fn method_class(method: &[u8]) -> usize {
    METHODS[..7]
        .iter()
        .position(|m| m.as_bytes() == method)
        .unwrap_or(7)
}

/// The status classes (`status_class` label).
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn status_class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// The request-duration histogram's upper bounds, seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BUCKET_NS: [u64; 14] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The results of an upstream request (`result` label of
/// `anygate_upstream_requests_total`).
pub const UPSTREAM_RESULTS: [&str; 14] = [
    "ok",
    "refused",
    "reset",
    "invalid_response",
    "unresolved",
    "busy",
    "circuit_open",
    "unavailable",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "total_timeout",
    "tls",
    "client_closed",
];

/// How the static action answered (`kind` label of `anygate_static_responses_total`),
/// as bits of [`Sample::statics`] (and of the request context's `static_kinds`): the
/// bit of `STATIC_KINDS[i]` is `1 << i`. A response counts under `hit` or `miss` (its
/// file's cache entry reused, or built from the file system), and under each of the
/// others that applies.
pub const STATIC_KINDS: [&str; 8] = [
    "hit",
    "miss",
    "not_modified",
    "range",
    "precompressed",
    "compressed",
    "spa_fallback",
    "listing",
];

/// The bits of [`STATIC_KINDS`], by name.
pub mod static_kind {
    /// The file's cache entry was reused.
    pub const HIT: u8 = 1 << 0;
    /// The file's entry was built (opened, read, validated) for this request.
    pub const MISS: u8 = 1 << 1;
    /// 304.
    pub const NOT_MODIFIED: u8 = 1 << 2;
    /// 206.
    pub const RANGE: u8 = 1 << 3;
    /// A precompressed sibling (`.br`, `.gz`) was sent.
    pub const PRECOMPRESSED: u8 = 1 << 4;
    /// Compressed by the gateway.
    pub const COMPRESSED: u8 = 1 << 5;
    /// The SPA fallback answered.
    pub const SPA_FALLBACK: u8 = 1 << 6;
    /// A directory listing.
    pub const LISTING: u8 = 1 << 7;
}

/// The upstream connect-time histogram's upper bounds, seconds (a connect includes the
/// TLS handshake over TLS).
pub const CONNECT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The states of upstream connections (`state` label of `anygate_upstream_connections`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolState {
    /// Resting in a worker's pool.
    Idle = 0,
    /// Carrying a request.
    Active = 1,
}

/// Error codes a shard counts (the catalog has fewer).
pub const MAX_ERRORS: usize = 64;

/// Data-path events counted without labels beyond their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// A TLS handshake completed.
    TlsHandshake,
    /// … and resumed a session.
    TlsResumed,
    /// A TLS handshake failed.
    TlsFailed,
    /// An HTTP/2 connection was set up (its handshake completed).
    H2Connection,
    /// An HTTP/2 connection was closed for resetting most of its streams (rapid reset).
    H2ResetFlood,
    /// An HTTP/2 connection was closed by one of h2's own limits (CONTINUATION frames or a
    /// header list past `max_header_list_size`, resets before accept, local error resets).
    H2LimitFlood,
    /// An HTTP/2 connection was closed for a control-frame flood (PING, SETTINGS,
    /// WINDOW_UPDATE, empty DATA... past its budget).
    H2ControlFlood,
}

const COUNTERS: usize = 7;

#[derive(Default)]
struct RouteCells {
    requests: [[AtomicU64; 5]; 8],
    buckets: [AtomicU64; 15],
    /// Microseconds: a sum in nanoseconds would wrap within months of busy traffic.
    sum_us: AtomicU64,
    rx: AtomicU64,
    tx: AtomicU64,
    statics: [AtomicU64; STATIC_KINDS.len()],
}

#[derive(Default)]
struct UpstreamCells {
    results: [AtomicU64; UPSTREAM_RESULTS.len()],
    connect: [AtomicU64; CONNECT_BUCKETS.len() + 1],
    connect_sum_us: AtomicU64,
    /// Gauges, by [`PoolState`]: this thread's ups and downs (wrapping), which sum to
    /// the thread's count, since a worker's pool is its own.
    pool: [AtomicU64; 2],
    /// Retries sent (`proxy.retries`).
    retries: AtomicU64,
}

/// One recording thread's counters.
#[repr(align(128))]
struct Shard {
    routes: ArcSwap<Vec<RouteCells>>,
    upstreams: ArcSwap<Vec<UpstreamCells>>,
    errors: [AtomicU64; MAX_ERRORS],
    counters: [AtomicU64; COUNTERS],
}

/// The owner's side of its shard.
struct Local {
    shard: Arc<Shard>,
    routes: Arc<Vec<RouteCells>>,
    upstreams: Arc<Vec<UpstreamCells>>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

struct Registry {
    shards: ArcSwap<Vec<Arc<Shard>>>,
    routes: ArcSwap<Vec<(Box<str>, &'static str)>>,
    upstreams: ArcSwap<Vec<Box<str>>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    acme_issued: AtomicU64,
    acme_failed: AtomicU64,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        shards: ArcSwap::from_pointee(Vec::new()),
        routes: ArcSwap::from_pointee(Vec::new()),
        upstreams: ArcSwap::from_pointee(Vec::new()),
        reloads_ok: AtomicU64::new(0),
        reloads_failed: AtomicU64::new(0),
        acme_issued: AtomicU64::new(0),
        acme_failed: AtomicU64::new(0),
    })
}

/// Adds `v` to a counter this thread alone writes.
#[inline]
fn bump(c: &AtomicU64, v: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

fn intern<K: Clone + Eq + std::hash::Hash>(list: &ArcSwap<Vec<K>>, keys: &[K]) -> Vec<u32> {
    let mut slots = Vec::new();
    list.rcu(|old| {
        let mut list = Vec::clone(old);
        let mut index: HashMap<K, u32> = list
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as u32))
            .collect();
        slots = keys
            .iter()
            .map(|k| {
                *index.entry(k.clone()).or_insert_with(|| {
                    list.push(k.clone());
                    (list.len() - 1) as u32
                })
            })
            .collect();
        list
    });
    slots
}

/// The slots of rules (label, action kind), interned: the same pair always has the same
/// slot.
pub fn route_slots(keys: &[(Box<str>, &'static str)]) -> Vec<u32> {
    intern(&registry().routes, keys)
}

/// The slots of upstream names, interned.
pub fn upstream_slots(names: &[Box<str>]) -> Vec<u32> {
    intern(&registry().upstreams, names)
}

/// The rule label and action kind of a route slot.
pub fn route_key(slot: u32) -> Option<(Box<str>, &'static str)> {
    registry().routes.load().get(slot as usize).cloned()
}

/// The slot requests no rule answered are counted under (`route="unmatched"`).
pub fn unmatched_slot() -> u32 {
    route_slots(&[("unmatched".into(), "none")])[0]
}

/// Runs `f` on this thread's shard (created on first use). Nothing happens, and `R`'s
/// default comes back, while the thread is exiting and its shard is already gone (a pool's
/// connections dropped with the thread's other locals).
fn with_local<R: Default>(f: impl FnOnce(&mut Local) -> R) -> R {
    LOCAL
        .try_with(|cell| {
            let mut local = cell.borrow_mut();
            let local = local.get_or_insert_with(|| {
                let shard = Arc::new(Shard {
                    routes: ArcSwap::from_pointee(Vec::new()),
                    upstreams: ArcSwap::from_pointee(Vec::new()),
                    errors: std::array::from_fn(|_| AtomicU64::new(0)),
                    counters: std::array::from_fn(|_| AtomicU64::new(0)),
                });
                registry().shards.rcu(|list| {
                    let mut list = Vec::clone(list);
                    list.push(shard.clone());
                    list
                });
                Local {
                    routes: shard.routes.load_full(),
                    upstreams: shard.upstreams.load_full(),
                    shard,
                }
            });
            f(local)
        })
        .unwrap_or_default()
}

/// The cells at `slot` of the owner's array `mine`, grown (and published to `shared`)
/// when it is too short.
fn grown<'a, T: Default>(
    mine: &'a mut Arc<Vec<T>>,
    shared: &ArcSwap<Vec<T>>,
    slot: usize,
    copy: fn(&T, &T),
) -> &'a T {
    if slot >= mine.len() {
        let len = (slot + 1).next_power_of_two().max(8);
        let bigger: Vec<T> = (0..len).map(|_| T::default()).collect();
        for (old, new) in mine.iter().zip(&bigger) {
            copy(old, new);
        }
        let bigger = Arc::new(bigger);
        shared.store(bigger.clone());
        *mine = bigger;
    }
    &mine[slot]
}

impl Local {
    /// This thread's cells of the upstream at `slot`, grown to hold it.
    fn upstream(&mut self, slot: u32) -> &UpstreamCells {
        grown(
            &mut self.upstreams,
            &self.shard.upstreams,
            slot as usize,
            copy_upstream,
        )
    }
}

fn copy_all<const N: usize>(from: &[AtomicU64; N], to: &[AtomicU64; N]) {
    for (a, b) in from.iter().zip(to) {
        b.store(a.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

fn copy_route(from: &RouteCells, to: &RouteCells) {
    for (a, b) in from.requests.iter().zip(&to.requests) {
        copy_all(a, b);
    }
    copy_all(&from.buckets, &to.buckets);
    copy_all(&from.statics, &to.statics);
    for (a, b) in [
        (&from.sum_us, &to.sum_us),
        (&from.rx, &to.rx),
        (&from.tx, &to.tx),
    ] {
        b.store(a.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

fn copy_upstream(from: &UpstreamCells, to: &UpstreamCells) {
    copy_all(&from.results, &to.results);
    copy_all(&from.connect, &to.connect);
    copy_all(&from.pool, &to.pool);
    to.retries
        .store(from.retries.load(Ordering::Relaxed), Ordering::Relaxed);
    to.connect_sum_us.store(
        from.connect_sum_us.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
}

/// One finished request, as metrics see it.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// The rule's slot ([`route_slots`]), or [`unmatched_slot`].
    pub route: u32,
    /// [`method_class`].
    pub method: usize,
    /// The status sent.
    pub status: u16,
    /// From routing to the end of the response; `None` for a request refused before
    /// routing (counted, not timed).
    pub elapsed: Option<Duration>,
    /// Request bytes read.
    pub rx: u64,
    /// Response bytes written.
    pub tx: u64,
    /// The upstream's slot and the result's index in [`UPSTREAM_RESULTS`], for a proxied
    /// request.
    pub upstream: Option<(u32, usize)>,
    /// The gateway error's index (below [`MAX_ERRORS`]), when it answered with one.
    pub error: Option<usize>,
    /// How the static action answered ([`static_kind`] bits; 0 for other actions).
    pub statics: u8,
    /// How long opening the upstream connection took, when the request opened one.
    pub connect: Option<Duration>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Records a finished request into this thread's shard.
pub fn record(s: &Sample) {
    with_local(|l| {
        let cells = grown(&mut l.routes, &l.shard.routes, s.route as usize, copy_route);
        bump(&cells.requests[s.method.min(7)][status_class(s.status)], 1);
        if let Some(elapsed) = s.elapsed {
            let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
            let bucket = BUCKET_NS.iter().position(|&b| ns <= b).unwrap_or(14);
            bump(&cells.buckets[bucket], 1);
            bump(&cells.sum_us, ns / 1000);
        }
        bump(&cells.rx, s.rx);
        bump(&cells.tx, s.tx);
        let mut bits = s.statics;
        while bits != 0 {
            bump(&cells.statics[bits.trailing_zeros() as usize], 1);
            bits &= bits - 1;
        }
        if let Some((slot, result)) = s.upstream {
            let up = l.upstream(slot);
            bump(&up.results[result.min(UPSTREAM_RESULTS.len() - 1)], 1);
            if let Some(d) = s.connect {
                let secs = d.as_secs_f64();
                let b = CONNECT_BUCKETS
                    .iter()
                    .position(|&b| secs <= b)
                    .unwrap_or(CONNECT_BUCKETS.len());
                bump(&up.connect[b], 1);
                bump(&up.connect_sum_us, micros(d));
            }
        }
        if let Some(e) = s.error
            && let Some(c) = l.shard.errors.get(e)
        {
            bump(c, 1);
        }
    });
}

/// Moves one connection of the upstream at `slot` into (`delta` 1) or out of (-1)
/// `state`, on this thread's shard. Call it from the thread that owns the connection's
/// pool, for each move, so that the thread's count never goes below zero. Out of line: the
/// proxy's path stays small where metrics are off.
#[inline(never)]
pub fn pool(slot: u32, state: PoolState, delta: i64) {
    with_local(|l| {
        let up = l.upstream(slot);
        bump(&up.pool[state as usize], delta as u64);
    });
}

/// Counts a retry to the upstream at `slot`, on this thread's shard (out of line: retries
/// are rare).
#[inline(never)]
pub fn retried(slot: u32) {
    with_local(|l| {
        let up = l.upstream(slot);
        bump(&up.retries, 1);
    });
}

/// Counts one data-path event on this thread's shard.
pub fn count(c: Counter) {
    with_local(|l| bump(&l.shard.counters[c as usize], 1));
}

/// Counts an ACME order, issued or failed (the ACME thread: not the data path).
pub fn acme_order(issued: bool) {
    let r = registry();
    let c = if issued {
        &r.acme_issued
    } else {
        &r.acme_failed
    };
    c.fetch_add(1, Ordering::Relaxed);
}

/// Counts a configuration reload (from any thread: not the data path).
pub fn reload(ok: bool) {
    let r = registry();
    let c = if ok { &r.reloads_ok } else { &r.reloads_failed };
    c.fetch_add(1, Ordering::Relaxed);
}

/// One error code of the catalog, for the exposition.
#[derive(Clone, Copy, Debug)]
pub struct ErrorName {
    /// `AG-RTE-4040`.
    pub code: &'static str,
    /// Its status.
    pub status: u16,
    /// For a filter's refusal: the filter kind and the reason (`rate_limit`, `limited`).
    pub denial: Option<(&'static str, &'static str)>,
}

/// What the process knows at scrape time, beside the shards.
#[derive(Clone, Copy, Debug)]
pub struct Process<'a> {
    /// The version (`anygate_build_info`).
    pub version: &'a str,
    /// Open client connections.
    pub open_connections: u64,
    /// Connections refused over a limit, since the start.
    pub refused_connections: u64,
    /// The error catalog, by index.
    pub errors: &'a [ErrorName],
    /// Whether the server is ready (`anygate_ready`).
    pub ready: bool,
    /// Targets of each pool by state (`anygate_upstream_targets`): pool, state, count.
    pub upstream_targets: &'a [(String, &'static str, u64)],
    /// Pools whose own circuit breaker is open (`anygate_upstream_circuit_open`): pool,
    /// open.
    pub upstream_circuits: &'a [(String, bool)],
    /// Each certificate a TLS listener serves, by its first DNS name, and its `notAfter`
    /// in seconds since the Unix epoch (`anygate_tls_certificate_expiry_seconds`).
    pub certificates: &'a [(String, i64)],
}

/// One rule's sums.
#[derive(Clone, Default)]
struct RouteSums {
    requests: [[u64; 5]; 8],
    buckets: [u64; 15],
    sum_us: u64,
    rx: u64,
    tx: u64,
    statics: [u64; STATIC_KINDS.len()],
}

/// One upstream's sums.
#[derive(Clone, Default)]
struct UpstreamSums {
    results: [u64; UPSTREAM_RESULTS.len()],
    connect: [u64; CONNECT_BUCKETS.len() + 1],
    connect_sum_us: u64,
    pool: [u64; 2],
    retries: u64,
}

fn add_all<const N: usize>(sum: &mut [u64; N], cells: &[AtomicU64; N]) {
    for (s, c) in sum.iter_mut().zip(cells) {
        *s = s.wrapping_add(c.load(Ordering::Relaxed));
    }
}

/// Summed values of every shard.
struct Totals {
    routes: Vec<RouteSums>,
    upstreams: Vec<UpstreamSums>,
    errors: [u64; MAX_ERRORS],
    counters: [u64; COUNTERS],
}

fn totals() -> Totals {
    let r = registry();
    let mut t = Totals {
        routes: vec![Default::default(); r.routes.load().len()],
        upstreams: vec![Default::default(); r.upstreams.load().len()],
        errors: [0; MAX_ERRORS],
        counters: [0; COUNTERS],
    };
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    for shard in r.shards.load().iter() {
        for (cells, sum) in shard.routes.load().iter().zip(t.routes.iter_mut()) {
            for (row, c) in sum.requests.iter_mut().zip(&cells.requests) {
                add_all(row, c);
            }
            add_all(&mut sum.buckets, &cells.buckets);
            add_all(&mut sum.statics, &cells.statics);
            sum.sum_us += get(&cells.sum_us);
            sum.rx += get(&cells.rx);
            sum.tx += get(&cells.tx);
        }
        for (cells, sum) in shard.upstreams.load().iter().zip(t.upstreams.iter_mut()) {
            add_all(&mut sum.results, &cells.results);
            add_all(&mut sum.connect, &cells.connect);
            add_all(&mut sum.pool, &cells.pool);
            sum.connect_sum_us += get(&cells.connect_sum_us);
            sum.retries += get(&cells.retries);
        }
        add_all(&mut t.errors, &shard.errors);
        add_all(&mut t.counters, &shard.counters);
    }
    t
}

/// The exposition's content type: OpenMetrics when `accept` asks for it.
pub fn content_type(openmetrics: bool) -> &'static str {
    if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    }
}

/// Whether an `Accept` value asks for OpenMetrics.
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.contains("application/openmetrics-text")
}

/// Writes a label value, escaped (`\`, `"`, newline).
fn label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

struct Writer<'a> {
    out: &'a mut String,
    om: bool,
}

impl Writer<'_> {
    /// `# HELP` and `# TYPE` of a family. `name` is the sample name; OpenMetrics names a
    /// counter family without its `_total`.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let family = match (self.om, kind) {
            (true, "counter") => name.strip_suffix("_total").unwrap_or(name),
            (true, "info") => name.strip_suffix("_info").unwrap_or(name),
            _ => name,
        };
        let kind = if !self.om && kind == "info" {
            "gauge"
        } else {
            kind
        };
        let _ = writeln!(self.out, "# HELP {family} {help}");
        let _ = writeln!(self.out, "# TYPE {family} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                label(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The `_bucket`, `_sum` and `_count` samples of one histogram series (none when it
    /// counted nothing). `counts` has one more entry than `bounds` (`+Inf`).
    fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum_us: u64,
    ) {
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return;
        }
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, &n) in counts.iter().enumerate() {
            cumulative += n;
            let le = match bounds.get(i) {
                Some(b) => format!("{b}"),
                None => "+Inf".to_owned(),
            };
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative);
        }
        self.sample(&format!("{name}_sum"), labels, sum_us as f64 / 1e6);
        self.sample(&format!("{name}_count"), labels, count);
    }
}

/// Writes every metric. `openmetrics` picks OpenMetrics 1.0 (ends with `# EOF`) over
/// the Prometheus text format 0.0.4.
pub fn render(out: &mut String, openmetrics: bool, p: &Process<'_>) {
    let r = registry();
    let t = totals();
    let routes = r.routes.load();
    let upstreams = r.upstreams.load();
    let mut w = Writer {
        out,
        om: openmetrics,
    };

    w.family(
        "anygate_http_requests_total",
        "counter",
        "Requests answered, by rule, action, method class and status class.",
    );
    for ((route, action), sums) in routes.iter().zip(&t.routes) {
        for (m, row) in sums.requests.iter().enumerate() {
            for (s, &n) in row.iter().enumerate() {
                if n > 0 {
                    w.sample(
                        "anygate_http_requests_total",
                        &[
                            ("route", route),
                            ("action", action),
                            ("method", METHODS[m]),
                            ("status_class", STATUS_CLASSES[s]),
                        ],
                        n,
                    );
                }
            }
        }
    }

    w.family(
        "anygate_http_request_duration_seconds",
        "histogram",
        "Time from routing to the end of the response, by rule.",
    );
    for ((route, action), sums) in routes.iter().zip(&t.routes) {
        w.histogram(
            "anygate_http_request_duration_seconds",
            &[("route", route), ("action", action)],
            &BUCKETS,
            &sums.buckets,
            sums.sum_us,
        );
    }

    for (name, help, pick) in [
        (
            "anygate_http_request_bytes_total",
            "Request bytes read (head and body), by rule.",
            true,
        ),
        (
            "anygate_http_response_bytes_total",
            "Response bytes written (head and body), by rule.",
            false,
        ),
    ] {
        w.family(name, "counter", help);
        for ((route, action), sums) in routes.iter().zip(&t.routes) {
            let v = if pick { sums.rx } else { sums.tx };
            if sums.requests.iter().flatten().any(|&n| n > 0) {
                w.sample(name, &[("route", route), ("action", action)], v);
            }
        }
    }

    w.family(
        "anygate_static_responses_total",
        "counter",
        "Static responses, by rule and kind (hit or miss of the file cache, and each of \
         not_modified, range, precompressed, compressed, spa_fallback, listing that applies).",
    );
    for ((route, _), sums) in routes.iter().zip(&t.routes) {
        for (kind, &n) in STATIC_KINDS.iter().zip(&sums.statics) {
            if n > 0 {
                w.sample(
                    "anygate_static_responses_total",
                    &[("route", route), ("kind", kind)],
                    n,
                );
            }
        }
    }

    w.family(
        "anygate_upstream_requests_total",
        "counter",
        "Proxied requests, by upstream and result.",
    );
    for (name, sums) in upstreams.iter().zip(&t.upstreams) {
        for (i, &n) in sums.results.iter().enumerate() {
            if n > 0 {
                w.sample(
                    "anygate_upstream_requests_total",
                    &[("upstream", name), ("result", UPSTREAM_RESULTS[i])],
                    n,
                );
            }
        }
    }
    w.family(
        "anygate_upstream_connect_duration_seconds",
        "histogram",
        "Time to open an upstream connection (TCP, and the TLS handshake over TLS), by upstream.",
    );
    for (name, sums) in upstreams.iter().zip(&t.upstreams) {
        w.histogram(
            "anygate_upstream_connect_duration_seconds",
            &[("upstream", name)],
            &CONNECT_BUCKETS,
            &sums.connect,
            sums.connect_sum_us,
        );
    }
    w.family(
        "anygate_upstream_connections",
        "gauge",
        "Upstream connections now, by upstream and state (idle in a pool, or active).",
    );
    for (name, sums) in upstreams.iter().zip(&t.upstreams) {
        if sums.results.iter().all(|&n| n == 0) && sums.pool == [0, 0] {
            continue;
        }
        for (state, &n) in ["idle", "active"].iter().zip(&sums.pool) {
            // Each thread's count is never negative; a sum read while threads move
            // connections could be, for a moment.
            let n = (n as i64).max(0);
            w.sample(
                "anygate_upstream_connections",
                &[("upstream", name), ("state", state)],
                n,
            );
        }
    }

    w.family(
        "anygate_upstream_retries_total",
        "counter",
        "Retries sent to an upstream (proxy.retries), by upstream.",
    );
    for (name, sums) in upstreams.iter().zip(&t.upstreams) {
        if sums.retries > 0 {
            w.sample(
                "anygate_upstream_retries_total",
                &[("upstream", name)],
                sums.retries,
            );
        }
    }
    w.family(
        "anygate_upstream_targets",
        "gauge",
        "Targets of each pool, by state (up, down, unchecked, ejected, open, half_open).",
    );
    for (pool, state, n) in p.upstream_targets {
        w.sample(
            "anygate_upstream_targets",
            &[("upstream", pool), ("state", state)],
            *n,
        );
    }
    w.family(
        "anygate_upstream_circuit_open",
        "gauge",
        "Whether a pool's own circuit breaker is open (1) or not (0), for pools with a breaker.",
    );
    for (pool, open) in p.upstream_circuits {
        w.sample(
            "anygate_upstream_circuit_open",
            &[("upstream", pool)],
            u64::from(*open),
        );
    }

    w.family(
        "anygate_gateway_errors_total",
        "counter",
        "Error responses the gateway produced, by code.",
    );
    for (i, e) in p.errors.iter().enumerate() {
        if let Some(&n) = t.errors.get(i)
            && n > 0
        {
            let status = e.status.to_string();
            w.sample(
                "anygate_gateway_errors_total",
                &[("code", e.code), ("status", &status)],
                n,
            );
        }
    }
    w.family(
        "anygate_filter_denials_total",
        "counter",
        "Requests a filter refused, by filter and reason.",
    );
    for (i, e) in p.errors.iter().enumerate() {
        if let (Some((filter, reason)), Some(&n)) = (e.denial, t.errors.get(i))
            && n > 0
        {
            w.sample(
                "anygate_filter_denials_total",
                &[("filter", filter), ("reason", reason)],
                n,
            );
        }
    }

    w.family(
        "anygate_tls_handshakes_total",
        "counter",
        "TLS handshakes, by result.",
    );
    let tls = &t.counters;
    for (result, n) in [
        ("ok", tls[Counter::TlsHandshake as usize]),
        ("failed", tls[Counter::TlsFailed as usize]),
    ] {
        w.sample("anygate_tls_handshakes_total", &[("result", result)], n);
    }
    w.family(
        "anygate_tls_resumptions_total",
        "counter",
        "TLS handshakes that resumed a session.",
    );
    w.sample(
        "anygate_tls_resumptions_total",
        &[],
        tls[Counter::TlsResumed as usize],
    );
    w.family(
        "anygate_http2_connections_total",
        "counter",
        "HTTP/2 connections set up (ALPN h2 or prior knowledge).",
    );
    w.sample(
        "anygate_http2_connections_total",
        &[],
        tls[Counter::H2Connection as usize],
    );
    w.family(
        "anygate_http2_flood_closes_total",
        "counter",
        "HTTP/2 connections closed with ENHANCE_YOUR_CALM, by the flood that closed them.",
    );
    for (reason, n) in [
        ("reset", tls[Counter::H2ResetFlood as usize]),
        ("limit", tls[Counter::H2LimitFlood as usize]),
        ("control", tls[Counter::H2ControlFlood as usize]),
    ] {
        w.sample("anygate_http2_flood_closes_total", &[("reason", reason)], n);
    }
    w.family(
        "anygate_tls_certificate_expiry_seconds",
        "gauge",
        "When each served certificate expires (notAfter), in seconds since the Unix epoch.",
    );
    for (name, not_after) in p.certificates {
        w.sample(
            "anygate_tls_certificate_expiry_seconds",
            &[("name", name)],
            not_after,
        );
    }

    w.family(
        "anygate_acme_orders_total",
        "counter",
        "ACME certificate orders, by result (issued, failed).",
    );
    for (result, c) in [("issued", &r.acme_issued), ("failed", &r.acme_failed)] {
        w.sample(
            "anygate_acme_orders_total",
            &[("result", result)],
            c.load(Ordering::Relaxed),
        );
    }

    w.family(
        "anygate_open_connections",
        "gauge",
        "Client connections open now.",
    );
    w.sample("anygate_open_connections", &[], p.open_connections);
    w.family(
        "anygate_refused_connections_total",
        "counter",
        "Client connections refused over max_connections or max_connections_per_ip.",
    );
    w.sample(
        "anygate_refused_connections_total",
        &[],
        p.refused_connections,
    );

    w.family(
        "anygate_config_reloads_total",
        "counter",
        "Configuration reloads, by result.",
    );
    for (result, c) in [("success", &r.reloads_ok), ("failure", &r.reloads_failed)] {
        w.sample(
            "anygate_config_reloads_total",
            &[("result", result)],
            c.load(Ordering::Relaxed),
        );
    }

    w.family(
        "anygate_log_dropped_lines_total",
        "counter",
        "Log lines dropped because the log writer could not keep up.",
    );
    w.sample(
        "anygate_log_dropped_lines_total",
        &[],
        crate::log::dropped(),
    );

    let (spans, dropped, failures) = crate::otlp::stats();
    for (name, help, v) in [
        (
            "anygate_trace_spans_exported_total",
            "Spans the OTLP exporter delivered.",
            spans,
        ),
        (
            "anygate_trace_dropped_total",
            "Traces dropped: the export queue was full or an export request failed.",
            dropped,
        ),
        (
            "anygate_trace_export_failures_total",
            "OTLP export requests that failed.",
            failures,
        ),
    ] {
        w.family(name, "counter", help);
        w.sample(name, &[], v);
    }

    w.family(
        "anygate_ready",
        "gauge",
        "1 when the server is ready for traffic (what /ready answers).",
    );
    w.sample("anygate_ready", &[], u8::from(p.ready));

    w.family("anygate_build_info", "info", "The running build.");
    w.sample("anygate_build_info", &[("version", p.version)], 1);
    if openmetrics {
        w.out.push_str("# EOF\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(method_class(b"GET"), 0);
        assert_eq!(method_class(b"OPTIONS"), 6);
        assert_eq!(method_class(b"PROPFIND"), 7);
        assert_eq!(status_class(101), 0);
        assert_eq!(status_class(204), 1);
        assert_eq!(status_class(499), 3);
        assert_eq!(status_class(599), 4);
        assert_eq!(status_class(0), 0);
        assert_eq!(status_class(999), 4);
    }

    #[test]
    fn regression_a_connection_dropped_as_its_thread_exits_does_not_abort() {
        // A worker's idle pool is a thread local: its connections leave their gauge when
        // the thread's locals are destroyed, possibly after this thread's shard.
        struct LeavesOnDrop;
        impl Drop for LeavesOnDrop {
            fn drop(&mut self) {
                pool(0, PoolState::Idle, -1);
            }
        }
        thread_local! {
            static HELD: RefCell<Option<LeavesOnDrop>> = const { RefCell::new(None) };
        }
        let slot = upstream_slots(&["t-exit".into()])[0];
        std::thread::spawn(move || {
            // Registered before the shard, so destroyed after it.
            HELD.with(|h| *h.borrow_mut() = Some(LeavesOnDrop));
            pool(slot, PoolState::Idle, 1);
        })
        .join()
        .expect("the thread exits cleanly");
    }

    #[test]
    fn interning_keeps_slots_across_loads() {
        let a = route_slots(&[("GET /t-a".into(), "fixed"), ("GET /t-b".into(), "echo")]);
        let b = route_slots(&[("GET /t-b".into(), "echo"), ("GET /t-c".into(), "fixed")]);
        assert_eq!(a[1], b[0]);
        assert_ne!(b[1], a[0]);
        assert_ne!(b[1], a[1]);
        // The same label with another action is another series.
        let c = route_slots(&[("GET /t-a".into(), "proxy")]);
        assert_ne!(c[0], a[0]);
    }

    #[test]
    fn shards_of_several_threads_sum_and_grow() {
        let slots = route_slots(&[("GET /t-sum".into(), "fixed")]);
        let far = route_slots(
            &(0..100)
                .map(|i| (format!("GET /t-far/{i}").into(), "fixed"))
                .collect::<Vec<_>>(),
        );
        let sample = |route, status| Sample {
            route,
            method: 0,
            status,
            elapsed: Some(Duration::from_micros(700)),
            rx: 10,
            tx: 20,
            upstream: None,
            error: None,
            statics: 0,
            connect: None,
        };
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (s, f) = (slots[0], far[99]);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        record(&sample(s, 200));
                    }
                    // Grows this thread's array after recording: the counts survive.
                    record(&sample(f, 503));
                    record(&sample(s, 404));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut out = String::new();
        render(
            &mut out,
            false,
            &Process {
                version: "test",
                open_connections: 0,
                refused_connections: 0,
                errors: &[],
                ready: true,
                upstream_targets: &[("users".to_owned(), "down", 2)],
                upstream_circuits: &[("users".to_owned(), true)],
                certificates: &[("example.com".to_owned(), 1_796_240_400)],
            },
        );
        let has = |line: &str| out.lines().any(|l| l == line);
        assert!(
            has(
                r#"anygate_http_requests_total{route="GET /t-sum",action="fixed",method="GET",status_class="2xx"} 3000"#
            ),
            "{out}"
        );
        assert!(has(
            r#"anygate_upstream_targets{upstream="users",state="down"} 2"#
        ));
        assert!(has(r#"anygate_upstream_circuit_open{upstream="users"} 1"#));
        assert!(has(
            r#"anygate_tls_certificate_expiry_seconds{name="example.com"} 1796240400"#
        ));
        assert!(has(
            r#"anygate_http_requests_total{route="GET /t-sum",action="fixed",method="GET",status_class="4xx"} 3"#
        ));
        assert!(has(
            r#"anygate_http_requests_total{route="GET /t-far/99",action="fixed",method="GET",status_class="5xx"} 3"#
        ));
        // 700 µs falls in the 0.001 bucket.
        assert!(has(
            r#"anygate_http_request_duration_seconds_bucket{route="GET /t-sum",action="fixed",le="0.0005"} 0"#
        ));
        assert!(has(
            r#"anygate_http_request_duration_seconds_bucket{route="GET /t-sum",action="fixed",le="0.001"} 3003"#
        ));
        assert!(has(
            r#"anygate_http_request_duration_seconds_bucket{route="GET /t-sum",action="fixed",le="+Inf"} 3003"#
        ));
        assert!(has(
            r#"anygate_http_request_duration_seconds_count{route="GET /t-sum",action="fixed"} 3003"#
        ));
        assert!(has(
            r#"anygate_http_request_bytes_total{route="GET /t-sum",action="fixed"} 30030"#
        ));
        assert!(has(
            r#"anygate_http_response_bytes_total{route="GET /t-sum",action="fixed"} 60060"#
        ));
    }

    #[test]
    fn label_values_are_escaped_and_openmetrics_ends_with_eof() {
        let slot = route_slots(&[("GET /t-\"q\"\\n".into(), "fixed")])[0];
        record(&Sample {
            route: slot,
            method: 7,
            status: 200,
            elapsed: Some(Duration::ZERO),
            rx: 0,
            tx: 0,
            upstream: None,
            error: None,
            statics: 0,
            connect: None,
        });
        let mut out = String::new();
        let p = Process {
            version: "v",
            open_connections: 1,
            refused_connections: 0,
            errors: &[],
            ready: false,
            upstream_targets: &[],
            upstream_circuits: &[],
            certificates: &[],
        };
        render(&mut out, true, &p);
        assert!(out.contains(r#"route="GET /t-\"q\"\\n""#), "{out}");
        assert!(out.ends_with("# EOF\n"));
        assert!(out.contains("# TYPE anygate_http_requests counter\n"));
        assert!(out.contains("# TYPE anygate_build info\n"));
        assert!(out.contains("anygate_build_info{version=\"v\"} 1\n"));
    }
}
