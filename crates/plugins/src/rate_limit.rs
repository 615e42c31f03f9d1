//! `rate_limit`: a token bucket per client, per rule, or per header value.
//!
//! ```yaml
//! - kind: rate_limit
//!   args: { rate: 100, burst: 200, scope: ip }   # ip | route | ip_route | { header: X-Api-Key }
//! ```
//!
//! `rate` tokens per second refill a bucket of `burst` tokens (default `rate`, at least 1);
//! each request takes one. An empty bucket answers **429** `AG-SEC-6003` with
//! `Retry-After` (whole seconds until a token is back) and the IETF fields
//! (draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy: "default";q=BURST;w=SECONDS`
//! (the bucket and the time it takes to fill) and `RateLimit: "default";r=REMAINING;t=SECONDS`
//! (tokens left, seconds until the bucket is full again). With `fields: all` every response
//! carries them, so that clients can slow down before they are refused; it is not the
//! default because it costs two fields on every response (Envoy and Kong make it opt-in
//! too).
//!
//! # Design
//!
//! The bucket is kept as GCRA (the generic cell rate algorithm, which is a token bucket
//! written as one number): the *theoretical arrival time* `tat`, the moment the bucket will
//! be full again. A request at `now` is allowed when `max(tat, now) + T - now <= burst × T`
//! (`T = 1 / rate`), and then moves `tat` by `T`. One `u64` per key, updated with a
//! compare-and-swap: every worker shares one exact limit, and the hot path takes no lock.
//!
//! Keys live in a fixed table of `max_keys` slots (rounded up to a power of two), each a
//! 64-bit key hash and its `tat`, found by linear probing over 8 slots. A slot whose `tat`
//! has passed holds a full bucket, the same as no bucket: it is free for any key, so idle
//! buckets expire by themselves. When all 8 slots of a key are busy, the one closest to
//! full is taken over (its client gets a full bucket back early: counted in `evictions`);
//! memory never grows. Key hashes are foldhash with a per-filter random seed: a client
//! cannot compute which slots another's key uses (and a collision it did find would only
//! make two keys share an 8-slot neighbourhood, not a bucket: buckets are told apart by
//! their full 64-bit hash).
//!
//! With `store: redis://…` the same table is the hot path and a side thread shares it with
//! other gateways (see [`crate::shared`]).
//!
//! Limitations: the state belongs to one configuration and starts over on a reload; two
//! workers that claim a slot for two new keys at the same instant can share one bucket
//! until one of them expires (a brief, bounded over-limit under table pressure only).

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anygate_config::PluginSpec;
use anygate_config::args::Args;
use anygate_http::message::decimal;
use anygate_http::{ErrorKind, Exchange, Request};

use crate::{Built, Flow};

/// Slots probed for one key.
const PROBE: usize = 8;

/// What a bucket is kept for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Ip,
    Route,
    IpRoute,
    /// The value of this field (lowercase name); the client address when it is absent.
    Header(Box<[u8]>),
}

struct Slot {
    /// The key's hash with the low bit set (0: never used).
    tag: AtomicU64,
    /// Theoretical arrival time, in nanoseconds since the filter's epoch.
    tat: AtomicU64,
}

/// What one request's turn at its bucket decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Whole tokens left after this request.
    pub remaining: u64,
    /// Nanoseconds until the bucket is full (allowed) or until one token is back (refused).
    pub wait_ns: u64,
}

/// The pure algorithm: one bucket's `tat` against `now`.
#[derive(Clone, Copy, Debug)]
pub struct Gcra {
    /// Nanoseconds per token (`T`).
    interval: u64,
    /// `burst × T`.
    capacity: u64,
}

impl Gcra {
    /// A bucket of `burst` tokens refilled at `rate` per second.
    pub fn new(rate: f64, burst: u64) -> Self {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "rate is validated to 0.001..=1e9"
        )]
        let interval = ((1e9 / rate).round() as u64).max(1);
        Self {
            interval,
            capacity: interval.saturating_mul(burst.max(1)),
        }
    }

    /// Decides a request at `now` against `tat`; returns the decision and, when allowed,
    /// the new `tat`.
    pub fn decide(&self, tat: u64, now: u64) -> (Decision, Option<u64>) {
        let base = tat.max(now);
        let next = base.saturating_add(self.interval);
        let ahead = next - now;
        if ahead > self.capacity {
            let wait = ahead - self.capacity;
            return (
                Decision {
                    allowed: false,
                    remaining: 0,
                    wait_ns: wait,
                },
                None,
            );
        }
        (
            Decision {
                allowed: true,
                remaining: (self.capacity - ahead) / self.interval,
                wait_ns: ahead,
            },
            Some(next),
        )
    }
}

/// A table of buckets keyed by a 64-bit hash, all of one size and rate: the `rate_limit`
/// filter's, and the failure counters of Basic authentication.
pub(crate) struct Buckets {
    pub(crate) gcra: Gcra,
    slots: Box<[Slot]>,
    /// With a shared store: per slot, the requests let through since the last sync and the
    /// key's fleet-wide name (see [`crate::shared`]).
    pub(crate) sync: Option<Box<[crate::shared::SyncSlot]>>,
    hasher: foldhash::fast::RandomState,
    epoch: Instant,
    /// Buckets taken over before they were full.
    evictions: AtomicU64,
}

impl Buckets {
    /// `max_keys` buckets of `gcra` (rounded up to a power of two, at least [`PROBE`]).
    pub(crate) fn new(gcra: Gcra, max_keys: u64) -> Self {
        let n = usize::try_from(max_keys)
            .unwrap_or(1 << 24)
            .next_power_of_two()
            .max(PROBE);
        Self {
            gcra,
            sync: None,
            slots: (0..n)
                .map(|_| Slot {
                    tag: AtomicU64::new(0),
                    tat: AtomicU64::new(0),
                })
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
            // A little in the past, so that `now` is never 0 (a never-used `tat`).
            epoch: anygate_runtime::time::now()
                .checked_sub(std::time::Duration::from_secs(1))
                .unwrap_or_else(anygate_runtime::time::now),
            evictions: AtomicU64::new(0),
        }
    }

    /// The hash a key is kept under.
    pub(crate) fn key(&self, key: &impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Counts what each slot lets through, for a shared store.
    pub(crate) fn with_sync(mut self) -> Self {
        self.sync = Some(
            (0..self.slots.len())
                .map(|_| crate::shared::SyncSlot::default())
                .collect(),
        );
        self
    }

    /// Nanoseconds per token.
    pub(crate) fn gcra_interval_ns(&self) -> u64 {
        self.gcra.interval
    }

    /// The `tat` of slot `i`.
    pub(crate) fn tat(&self, i: usize) -> &AtomicU64 {
        &self.slots[i].tat
    }

    /// `at` in nanoseconds since the table's epoch.
    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes a token for `hash` now (the worker's cached clock).
    pub(crate) fn take_now(&self, hash: u64) -> Decision {
        self.take(hash, self.nanos(anygate_runtime::time::now()))
    }

    /// Seconds until `hash` has a token again, if its bucket is empty now; nothing taken.
    pub(crate) fn blocked(&self, hash: u64) -> Option<u64> {
        let now = self.nanos(anygate_runtime::time::now());
        let tat = self.slots[self.cell(hash, 0, now)]
            .tat
            .load(Ordering::Acquire);
        let (d, _) = self.gcra.decide(tat, now);
        (!d.allowed).then(|| secs_ceil(d.wait_ns).max(1))
    }

    /// The `tat` cell of `hash`, claiming a slot if the key has none.
    /// The slot of `hash`, claiming one if the key has none; `global` is the key's
    /// fleet-wide name (used with a shared store only).
    fn cell(&self, hash: u64, global: u64, now: u64) -> usize {
        let tag = hash | 1;
        let mask = self.slots.len() - 1;
        let start = (hash >> 7) as usize & mask;
        let slot = |i: usize| &self.slots[(start + i) & mask];
        for i in 0..PROBE {
            if slot(i).tag.load(Ordering::Acquire) == tag {
                return (start + i) & mask;
            }
        }
        // A free slot (never used, or its bucket full again), else the fullest.
        let mut victim = 0;
        let mut lowest = u64::MAX;
        for i in 0..PROBE {
            let s = slot(i);
            let tat = s.tat.load(Ordering::Relaxed);
            if s.tag.load(Ordering::Relaxed) == 0 || tat <= now {
                victim = i;
                lowest = 0;
                break;
            }
            if tat < lowest {
                lowest = tat;
                victim = i;
            }
        }
        let index = (start + victim) & mask;
        let s = &self.slots[index];
        let old = s.tag.load(Ordering::Relaxed);
        if s.tag
            .compare_exchange(old, tag, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // A full bucket (an expired `tat` is one already).
            s.tat.store(0, Ordering::Release);
            if let Some(sync) = &self.sync {
                sync[index].claim(global);
            }
            if lowest != 0 {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        index
    }

    /// Takes a token for the request's key at `now` (nanoseconds since the epoch).
    fn take(&self, hash: u64, now: u64) -> Decision {
        self.take_global(hash, 0, now)
    }

    /// [`Buckets::take`], counting the request for the shared store under `global`.
    fn take_global(&self, hash: u64, global: u64, now: u64) -> Decision {
        let index = self.cell(hash, global, now);
        let cell = &self.slots[index].tat;
        let mut tat = cell.load(Ordering::Acquire);
        loop {
            let (decision, next) = self.gcra.decide(tat, now);
            let Some(next) = next else {
                return decision;
            };
            match cell.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if let Some(sync) = &self.sync {
                        sync[index].count();
                    }
                    return decision;
                }
                Err(actual) => tat = actual,
            }
        }
    }
}

/// A compiled `rate_limit` filter.
pub struct RateLimit {
    scope: Scope,
    rate: f64,
    burst: u64,
    buckets: Arc<Buckets>,
    /// The fleet-wide store, with `store: redis://…`.
    store: Option<Arc<crate::shared::Store>>,
    /// Names keys alike in every gateway (a fixed seed), for the shared store.
    global: foldhash::fast::FixedState,
    /// The `RateLimit-Policy` value.
    policy: Box<str>,
    /// `fields: all`: the IETF fields on every response, not only on a 429.
    fields_always: bool,
    /// Requests refused.
    limited: AtomicU64,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("scope", &self.scope)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("slots", &self.buckets.slots.len())
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    pub(crate) fn build(spec: &PluginSpec) -> Built<Self> {
        let mut args = Args::new(spec.args.as_ref(), spec.span, "`rate_limit` args");
        let rate = args.number("rate", 0.001, 1e9).map(|(r, _)| r);
        if rate.is_none() && !args.failed() {
            let span = args.span();
            args.error_help(
                span,
                "`rate_limit` needs `rate` (requests per second)",
                "`args: { rate: 100, burst: 200 }`",
            );
        }
        let burst = args.integer("burst", 1, 1 << 40);
        let scope = match args.take("scope") {
            None => Scope::Ip,
            Some(node) => match (&node.kind, node.as_str()) {
                (_, Some("ip")) => Scope::Ip,
                (_, Some("route")) => Scope::Route,
                (_, Some("ip_route")) => Scope::IpRoute,
                (anygate_config::Kind::Map(_), _) => {
                    let mut m = Args::new(Some(node), node.span, "`rate_limit` scope");
                    let header = m.string("header");
                    let scope = match header {
                        Some((h, _)) if anygate_http::message::is_token(h.as_bytes()) => {
                            Some(Scope::Header(h.to_ascii_lowercase().into_bytes().into()))
                        }
                        Some((h, n)) => {
                            m.error(n.span, format!("`{h}` is not a field name"));
                            None
                        }
                        None => {
                            m.error(node.span, "a map scope is `{ header: NAME }`");
                            None
                        }
                    };
                    args.absorb(m, &["header"]);
                    scope.unwrap_or(Scope::Ip)
                }
                _ => {
                    args.error_help(
                        node.span,
                        "unknown `scope`",
                        "one of `ip`, `route`, `ip_route`, or `{ header: NAME }`",
                    );
                    Scope::Ip
                }
            },
        };
        let max_keys = args.integer("max_keys", 1, 1 << 24).unwrap_or(65_536);
        let fields_always = match args.string("fields") {
            None | Some(("limited", _)) => false,
            Some(("all", _)) => true,
            Some((other, node)) => {
                args.error_help(
                    node.span,
                    format!("unknown `fields` value `{other}`"),
                    "`limited` (on a 429 only, the default) or `all` (on every response)",
                );
                false
            }
        };
        let store = crate::shared::Settings::read(&mut args);
        args.finish(&[
            "rate",
            "burst",
            "scope",
            "max_keys",
            "fields",
            "store",
            "sync_interval",
            "on_store_error",
        ])?;
        let rate = rate.unwrap_or(1.0);
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "rate is at most 1e9"
        )]
        let burst = burst.unwrap_or((rate.ceil() as u64).max(1));
        let mut rl = Self::new(scope, rate, burst, max_keys, store.is_some());
        rl.fields_always = fields_always;
        if let Some(settings) = store {
            let prefix = format!("anygate:rl:{}:{}:{}:", rl.rate, rl.burst, rl.scope_name());
            rl.store = Some(crate::shared::Store::start(settings, prefix, &rl.buckets));
        }
        Ok(rl)
    }

    /// A filter of `max_keys` buckets; `shared` counts what each lets through for a store.
    fn new(scope: Scope, rate: f64, burst: u64, max_keys: u64, shared: bool) -> Self {
        // A bucket per rule needs few slots.
        let keys = if scope == Scope::Route {
            max_keys.min(4096)
        } else {
            max_keys
        };
        let gcra = Gcra::new(rate, burst);
        let window = secs_ceil(gcra.capacity);
        let buckets = Buckets::new(gcra, keys);
        let buckets = if shared { buckets.with_sync() } else { buckets };
        Self {
            policy: format!("\"default\";q={burst};w={window}").into(),
            fields_always: false,
            scope,
            rate,
            burst,
            buckets: Arc::new(buckets),
            store: None,
            global: foldhash::fast::FixedState::with_seed(0x616e_7967_6174_6521),
            limited: AtomicU64::new(0),
        }
    }

    /// Requests refused so far.
    pub fn limited(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }

    /// Failed exchanges with the shared store (0 without one).
    pub fn store_errors(&self) -> u64 {
        self.store.as_ref().map_or(0, |s| s.errors())
    }

    /// Buckets taken over before they were full.
    pub fn evictions(&self) -> u64 {
        self.buckets.evictions.load(Ordering::Relaxed)
    }

    fn key_hash(&self, req: &Request<'_>, route: Option<u32>, client: Option<IpAddr>) -> u64 {
        self.hash_with(self.buckets.hasher.build_hasher(), req, route, client)
    }

    /// The key's name in the shared store: the same in every gateway.
    fn global_hash(&self, req: &Request<'_>, route: Option<u32>, client: Option<IpAddr>) -> u64 {
        self.hash_with(self.global.build_hasher(), req, route, client) | 1
    }

    fn hash_with(
        &self,
        mut h: impl Hasher,
        req: &Request<'_>,
        route: Option<u32>,
        client: Option<IpAddr>,
    ) -> u64 {
        match &self.scope {
            Scope::Ip => client.hash(&mut h),
            Scope::Route => route.hash(&mut h),
            Scope::IpRoute => (client, route).hash(&mut h),
            Scope::Header(name) => match req.header(name) {
                Some(v) => (1u8, v).hash(&mut h),
                None => (0u8, client).hash(&mut h),
            },
        }
        h.finish()
    }

    pub(crate) fn pre(&self, req: &Request<'_>, ex: &mut Exchange<'_>) -> Flow {
        let ctx = ex.ctx();
        let hash = self.key_hash(req, ctx.route, ctx.client);
        // The worker's cached clock (the pipeline's stamp when the chain is timed).
        let at = ctx.start.unwrap_or_else(anygate_runtime::time::now);
        let now = self.buckets.nanos(at);
        let d = match &self.store {
            None => self.buckets.take(hash, now),
            Some(store) => {
                if store.refuses() {
                    ex.error_with(ErrorKind::Overloaded, None, &[(b"retry-after", b"1")]);
                    return Flow::Answered;
                }
                let global = self.global_hash(req, ctx.route, ctx.client);
                self.buckets.take_global(hash, global, now)
            }
        };
        if d.allowed && !self.fields_always {
            return Flow::Continue;
        }
        let mut buf = [0u8; 64];
        ex.add_response_field(b"ratelimit-policy", self.policy.as_bytes());
        let value = state_value(&mut buf, d.remaining, secs_ceil(d.wait_ns));
        ex.add_response_field(b"ratelimit", value);
        if d.allowed {
            return Flow::Continue;
        }
        self.limited.fetch_add(1, Ordering::Relaxed);
        let mut digits = [0u8; 20];
        let retry = decimal(secs_ceil(d.wait_ns).max(1), &mut digits);
        ex.error_with(ErrorKind::RateLimited, None, &[(b"retry-after", retry)]);
        Flow::Answered
    }

    fn scope_name(&self) -> String {
        match &self.scope {
            Scope::Ip => "ip".to_owned(),
            Scope::Route => "route".to_owned(),
            Scope::IpRoute => "ip_route".to_owned(),
            Scope::Header(h) => format!("header {}", String::from_utf8_lossy(h)),
        }
    }

    pub(crate) fn summary(&self) -> String {
        let shared = match &self.store {
            Some(s) => format!(", shared via {}", s.url()),
            None => String::new(),
        };
        format!(
            "{}/s, burst {}, per {}{shared}",
            self.rate,
            self.burst,
            self.scope_name()
        )
    }
}

/// Whole seconds, rounded up.
fn secs_ceil(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

/// `"default";r=R;t=T` in `buf`.
fn state_value(buf: &mut [u8; 64], remaining: u64, reset: u64) -> &[u8] {
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        buf[n..n + bytes.len()].copy_from_slice(bytes);
        n += bytes.len();
    };
    let mut d = [0u8; 20];
    put(b"\"default\";r=");
    put(decimal(remaining, &mut d));
    put(b";t=");
    put(decimal(reset, &mut d));
    &buf[..n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_bucket_allows_its_burst_then_the_rate() {
        let g = Gcra::new(10.0, 5);
        let mut tat = 0;
        let now = 100 * S;
        for left in (0..5).rev() {
            let (d, next) = g.decide(tat, now);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            tat = next.unwrap();
        }
        let (d, next) = g.decide(tat, now);
        assert!(!d.allowed && next.is_none());
        assert_eq!(d.wait_ns, S / 10, "one token is back after T");
        // After T, exactly one more.
        let (d, next) = g.decide(tat, now + S / 10);
        assert!(d.allowed && d.remaining == 0);
        assert!(!g.decide(next.unwrap(), now + S / 10).0.allowed);
        // Idle long enough: full again.
        assert_eq!(g.decide(tat, now + 10 * S).0.remaining, 4);
    }

    #[test]
    fn the_table_keeps_keys_apart_and_reuses_full_buckets() {
        let rl = RateLimit::new(Scope::Ip, 1.0, 2, 8, false);
        let now = 5 * S;
        assert!(rl.buckets.take(11, now).allowed && rl.buckets.take(11, now).allowed);
        assert!(!rl.buckets.take(11, now).allowed, "key 11 spent its burst");
        assert!(
            rl.buckets.take(22, now).allowed,
            "another key has its own bucket"
        );
        // Many more keys than slots: the table never grows, buckets are taken over.
        for k in 100..200u64 {
            assert!(rl.buckets.take(k << 7, now).allowed);
        }
        assert_eq!(rl.buckets.slots.len(), 8);
        assert!(rl.evictions() > 0);
        // Long after: every bucket is full, nothing counts as an eviction.
        let before = rl.evictions();
        for k in 300..308u64 {
            assert!(rl.buckets.take(k << 7, now + 100 * S).allowed);
        }
        assert_eq!(rl.evictions(), before);
    }

    #[test]
    fn header_values_are_written_like_the_draft() {
        let mut buf = [0u8; 64];
        assert_eq!(state_value(&mut buf, 7, 3), b"\"default\";r=7;t=3");
        let rl = RateLimit::new(Scope::Route, 100.0, 200, 10, false);
        assert_eq!(&*rl.policy, "\"default\";q=200;w=2");
    }

    proptest! {
        /// Over any schedule of request times, a bucket never allows more than
        /// `burst + rate × elapsed` requests, and allows exactly that many when asked
        /// continuously.
        #[test]
        fn gcra_never_allows_more_than_burst_plus_rate(
            rate in 1u32..1000,
            burst in 1u64..100,
            gaps in proptest::collection::vec(0u64..50_000_000, 1..400),
        ) {
            let g = Gcra::new(f64::from(rate), burst);
            let start = 10 * S;
            let (mut tat, mut now, mut allowed) = (0u64, start, 0u64);
            for gap in gaps {
                now += gap;
                let (d, next) = g.decide(tat, now);
                if let Some(n) = next {
                    tat = n;
                    allowed += 1;
                }
                prop_assert_eq!(d.allowed, next.is_some());
                let elapsed = now - start;
                let bound = burst + elapsed / g.interval + 1;
                prop_assert!(allowed <= bound, "{} > {}", allowed, bound);
            }
        }
    }
}
