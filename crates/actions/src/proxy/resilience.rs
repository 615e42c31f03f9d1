//! The state machines that keep a failing upstream from hurting more than it must: the
//! retry budget, outlier ejection, the circuit breaker, the fall/rise of active health
//! checks and slow start's ramp.
//!
//! # Design
//!
//! Each machine is pure: it reads no clock and does no I/O. Time is passed in as
//! milliseconds on a monotonic scale ([`millis`] maps the runtime's clock onto it; the
//! simulation tests drive a virtual one). State shared by the workers is kept in atomics, so
//! that recording an outcome takes no lock; counters that every request touches (requests
//! for the budget, outcomes for the breaker's window) are kept in one row per worker
//! (`Rows`), each on its own cache line, and summed only when a decision needs them (a
//! retry, a failure), never per request.
//!
//! - **Retry budget** ([`RetryBudget`]): over a sliding window of ten one-second buckets,
//!   retries may be at most `ratio` of the requests plus a reserve of `min_per_s` per second
//!   of the window (linkerd's and Envoy's budget): a failing pool never sees more than
//!   `1 + ratio` times its traffic.
//! - **Outlier ejection** ([`Outlier`]): `consecutive` failures in a row eject a target for
//!   `base × n` (n: its recent ejections, capped at ten times the base), never more than
//!   `max_percent` of a pool at once; each quiet `base × n` after an ejection forgets one.
//! - **Circuit breaker** ([`Breaker`]): closed while the failure ratio over the window stays
//!   under `ratio` or fewer than `min_requests` were seen; then open for `open_for`; then
//!   half-open: one probe at a time, whose success closes it and whose failure opens it
//!   again. A probe whose request is abandoned gives its place back ([`Ticket`]'s drop).
//! - **Health** ([`Health`]): the first check's result is taken at once; after it `fall`
//!   failures in a row take a target down and `rise` successes bring it back.
//! - **Slow start** ([`slow_start_share`]): a target that rejoins takes a share of its
//!   traffic that grows linearly from 10 % to all of it over `slow_start`.
//!
//! # Invariants (asserted by the simulations in the tests)
//! - Retries in any window ≤ ratio × requests in it + the reserve.
//! - Never more than `max_percent` of a pool ejected by outlier detection.
//! - An ejected target is eligible again when its ejection ends; an open breaker admits a
//!   probe when `open_for` has passed, and at most one at a time.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Milliseconds since the process's first call: the scale the machines run on (0 means
/// "never" in their fields, so the scale starts at 1).
pub fn millis(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| now);
    u64::try_from(now.saturating_duration_since(epoch).as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// `d` in whole milliseconds.
pub fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Buckets of a sliding window.
const BUCKETS: usize = 10;

/// One bucket: its slot number (`now / width`) and two counters.
#[derive(Debug, Default)]
struct Bucket {
    slot: AtomicU64,
    a: AtomicU32,
    b: AtomicU32,
}

/// One worker's buckets, alone on their cache lines.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Row([Bucket; BUCKETS]);

/// A sliding window of two counters, one row per worker (plus one for other threads).
#[derive(Debug)]
struct Rows {
    rows: Box<[Row]>,
    /// Each bucket's width, in milliseconds.
    width: u64,
}

impl Rows {
    fn new(workers: usize, window: Duration) -> Self {
        Self {
            rows: (0..workers.clamp(1, 1024) + 1)
                .map(|_| Row::default())
                .collect(),
            width: (millis_of(window) / BUCKETS as u64).max(1),
        }
    }

    /// The calling thread's bucket for `now`, emptied if it held an older slot, and whether
    /// the calling thread is its row's only writer (a worker).
    fn bucket(&self, now: u64) -> (&Bucket, bool) {
        let n = self.rows.len();
        let worker = anygate_runtime::worker_index();
        let row = worker.map_or(n - 1, |i| i % (n - 1));
        let slot = now / self.width;
        let b = &self.rows[row].0[(slot % BUCKETS as u64) as usize];
        if b.slot.load(Ordering::Relaxed) != slot {
            b.a.store(0, Ordering::Relaxed);
            b.b.store(0, Ordering::Relaxed);
            b.slot.store(slot, Ordering::Relaxed);
        }
        (b, worker.is_some_and(|i| i < n - 1))
    }

    fn add(&self, now: u64, a: u32, b: u32) {
        let (bucket, alone) = self.bucket(now);
        // A worker's row has one writer (others only read), so a load and a store lose no
        // update and take no locked instruction; the row of other threads is shared.
        let bump = |c: &AtomicU32, by: u32| match (by, alone) {
            (0, _) => {}
            (_, true) => c.store(
                c.load(Ordering::Relaxed).wrapping_add(by),
                Ordering::Relaxed,
            ),
            (_, false) => {
                c.fetch_add(by, Ordering::Relaxed);
            }
        };
        bump(&bucket.a, a);
        bump(&bucket.b, b);
    }

    /// Both counters summed over the window ending at `now` (every row).
    fn sum(&self, now: u64) -> (u64, u64) {
        let slot = now / self.width;
        let oldest = slot.saturating_sub(BUCKETS as u64 - 1);
        let (mut a, mut b) = (0u64, 0u64);
        for row in &*self.rows {
            for bucket in &row.0 {
                let s = bucket.slot.load(Ordering::Relaxed);
                if (oldest..=slot).contains(&s) {
                    a += u64::from(bucket.a.load(Ordering::Relaxed));
                    b += u64::from(bucket.b.load(Ordering::Relaxed));
                }
            }
        }
        (a, b)
    }

    fn clear(&self) {
        for row in &*self.rows {
            for bucket in &row.0 {
                bucket.slot.store(u64::MAX, Ordering::Relaxed);
            }
        }
    }
}

/// `proxy.retries.budget` and `min_retries_per_s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetPolicy {
    /// Retries allowed per thousand requests (`budget: 20%` is 200).
    pub per_mille: u32,
    /// Retries always allowed per second of the window.
    pub min_per_s: u32,
}

/// The budget's window.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// A pool's retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    policy: BudgetPolicy,
    /// a: requests, b: retries.
    window: Rows,
}

impl RetryBudget {
    /// An empty budget.
    pub fn new(policy: BudgetPolicy, workers: usize) -> Self {
        Self {
            policy,
            window: Rows::new(workers, BUDGET_WINDOW),
        }
    }

    /// Counts a request (its first attempt).
    pub fn request(&self, now: u64) {
        self.window.add(now, 1, 0);
    }

    /// The retries the window allows for `requests`.
    pub fn allowed(&self, requests: u64) -> u64 {
        requests * u64::from(self.policy.per_mille) / 1000
            + u64::from(self.policy.min_per_s) * BUDGET_WINDOW.as_secs()
    }

    /// Takes a retry from the budget, if it has one.
    pub fn try_retry(&self, now: u64) -> bool {
        let (requests, retries) = self.window.sum(now);
        if retries >= self.allowed(requests) {
            return false;
        }
        self.window.add(now, 0, 1);
        true
    }
}

/// `proxy.upstreams.NAME.outlier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// Failures in a row that eject a target.
    pub consecutive: u32,
    /// The first ejection's length, in ms.
    pub base: u64,
    /// Most of a pool ejected at once, in percent.
    pub max_percent: u32,
}

/// One target's outlier state in one pool.
#[derive(Debug, Default)]
pub struct Outlier {
    failures: AtomicU32,
    /// When the current (or last) ejection ends; 0: never ejected.
    until: AtomicU64,
    /// Recent ejections (the next one lasts `base × (this + 1)`).
    ejections: AtomicU32,
}

impl Outlier {
    /// Whether the target is ejected at `now`.
    pub fn ejected(&self, now: u64) -> bool {
        self.until.load(Ordering::Relaxed) > now
    }

    /// When the last ejection ends (or ended); 0 if never ejected.
    pub fn until(&self) -> u64 {
        self.until.load(Ordering::Relaxed)
    }

    /// Notes a success.
    pub fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Notes a failure of `pool[me]`; returns when its ejection ends if it is ejected now.
    /// `pool` is every member's outlier state (for the `max_percent` cap).
    pub fn failure<'a>(
        policy: &OutlierPolicy,
        pool: impl Iterator<Item = &'a Outlier> + Clone,
        me: &Outlier,
        now: u64,
    ) -> Option<u64> {
        let failures = me.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < policy.consecutive || me.ejected(now) {
            return None;
        }
        let members = pool.clone().count() as u64;
        let ejected = pool.filter(|o| o.ejected(now)).count() as u64;
        if (ejected + 1) * 100 > u64::from(policy.max_percent) * members {
            return None;
        }
        let last = me.until.load(Ordering::Relaxed);
        let mut n = u64::from(me.ejections.load(Ordering::Relaxed));
        if last != 0 && n != 0 {
            // One ejection forgotten per quiet `base × n` since the last one ended.
            let quiet = now.saturating_sub(last);
            n = n.saturating_sub(quiet / (policy.base * n).max(1));
        }
        n = (n + 1).min(10);
        let until = now.saturating_add(policy.base.saturating_mul(n));
        me.ejections.store(n as u32, Ordering::Relaxed);
        me.failures.store(0, Ordering::Relaxed);
        me.until.store(until, Ordering::Relaxed);
        Some(until)
    }
}

/// `proxy.upstreams.NAME.breaker`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures per thousand requests that open it.
    pub ratio_per_mille: u32,
    /// Fewest requests in the window before it may open.
    pub min_requests: u32,
    /// The window.
    pub window: Duration,
    /// How long it stays open, in ms.
    pub open_for: u64,
}

/// A circuit breaker (of a target, or of a whole pool).
#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    /// 0: closed; else open until then, half-open after.
    open_until: AtomicU64,
    /// 1 while a half-open probe is out.
    probing: AtomicU32,
    /// a: requests, b: failures.
    window: Rows,
}

/// The breaker's state at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests pass.
    Closed,
    /// Requests are refused for this many more ms.
    Open(u64),
    /// One probe may pass.
    HalfOpen,
}

/// A change of a breaker's state, to be logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Closed (or half-open) to open.
    Opened,
    /// Half-open to closed.
    Closed,
}

/// What [`Breaker::admit`] let through: record its outcome with [`Ticket::record`].
#[derive(Debug)]
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy, workers: usize) -> Self {
        Self {
            policy,
            open_until: AtomicU64::new(0),
            probing: AtomicU32::new(0),
            window: Rows::new(workers, policy.window),
        }
    }

    /// Its state at `now`.
    pub fn state(&self, now: u64) -> BreakerState {
        match self.open_until.load(Ordering::Relaxed) {
            0 => BreakerState::Closed,
            until if until > now => BreakerState::Open(until - now),
            _ => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may be sent at `now` (without taking a probe's place).
    pub fn may_admit(&self, now: u64) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open(_) => false,
            BreakerState::HalfOpen => self.probing.load(Ordering::Relaxed) == 0,
        }
    }

    /// Lets a request through, or says in how many ms to try again.
    pub fn admit(&self, now: u64) -> Result<Ticket<'_>, u64> {
        match self.state(now) {
            BreakerState::Closed => Ok(Ticket {
                breaker: self,
                probe: false,
            }),
            BreakerState::Open(left) => Err(left),
            BreakerState::HalfOpen => self
                .probing
                .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
                .map(|_| Ticket {
                    breaker: self,
                    probe: true,
                })
                // Another probe is out: its answer decides soon.
                .map_err(|_| 1000),
        }
    }

    fn open(&self, now: u64) {
        self.open_until.store(
            now.saturating_add(self.policy.open_for).max(1),
            Ordering::Relaxed,
        );
    }
}

impl Ticket<'_> {
    /// Records the request's outcome; says if the breaker changed state.
    pub fn record(mut self, ok: bool, now: u64) -> Option<Transition> {
        let b = self.breaker;
        if std::mem::take(&mut self.probe) {
            let t = if ok {
                b.window.clear();
                b.open_until.store(0, Ordering::Relaxed);
                Transition::Closed
            } else {
                b.open(now);
                Transition::Opened
            };
            b.probing.store(0, Ordering::Release);
            return Some(t);
        }
        b.window.add(now, 1, u32::from(!ok));
        if ok || b.open_until.load(Ordering::Relaxed) != 0 {
            return None;
        }
        let (requests, failures) = b.window.sum(now);
        if requests >= u64::from(b.policy.min_requests)
            && failures * 1000 >= u64::from(b.policy.ratio_per_mille) * requests
            && b.open_until
                .compare_exchange(
                    0,
                    now.saturating_add(b.policy.open_for).max(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            b.window.clear();
            return Some(Transition::Opened);
        }
        None
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe {
            // Abandoned (the client left): the next request probes instead.
            self.breaker.probing.store(0, Ordering::Release);
        }
    }
}

/// `health.fall` and `health.rise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Failed checks in a row that take a target down.
    pub fall: u32,
    /// Passed checks in a row that bring it back.
    pub rise: u32,
}

/// A target's active-check state (owned by its checker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// `None` until the first check.
    pub up: Option<bool>,
    /// Results in a row against the current state.
    against: u32,
}

impl Health {
    /// Takes a check's result; returns the new state if it changed (the first result
    /// always counts as a change).
    pub fn observe(&mut self, policy: &HealthPolicy, passed: bool) -> Option<bool> {
        match self.up {
            None => {
                self.up = Some(passed);
                Some(passed)
            }
            Some(up) if up == passed => {
                self.against = 0;
                None
            }
            Some(up) => {
                self.against += 1;
                let needed = if up { policy.fall } else { policy.rise };
                if self.against >= needed.max(1) {
                    self.against = 0;
                    self.up = Some(passed);
                    Some(passed)
                } else {
                    None
                }
            }
        }
    }
}

/// The share, per thousand, of its traffic that a target which rejoined at `since` takes at
/// `now` with slow start `over` ms: from 100 at once to 1000 when `over` has passed.
pub fn slow_start_share(now: u64, since: u64, over: u64) -> u32 {
    if over == 0 || since == 0 || now >= since.saturating_add(over) {
        return 1000;
    }
    let elapsed = now.saturating_sub(since);
    (100 + 900 * elapsed / over) as u32
}

/// Whether slow start lets a request go to a target that rejoined at `since` (share from
/// [`slow_start_share`]); `draw` is a uniform random number.
pub fn slow_start_admits(now: u64, since: u64, over: u64, draw: u64) -> bool {
    let share = slow_start_share(now, since, over);
    share >= 1000 || draw % 1000 < u64::from(share)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded generator for the simulations (splitmix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn simulation_retries_never_exceed_the_budget() {
        for seed in 0..2000u64 {
            let mut rng = Rng(seed);
            let policy = BudgetPolicy {
                per_mille: 50 + rng.below(500) as u32,
                min_per_s: rng.below(5) as u32,
            };
            let budget = RetryBudget::new(policy, 2);
            // (time, is_retry) of what was let through, for a reference count.
            let mut log: Vec<(u64, bool)> = Vec::new();
            let mut now = 1u64;
            let failing = rng.below(1000); // per mille of requests that want a retry
            for _ in 0..400 {
                now += rng.below(200);
                budget.request(now);
                log.push((now, false));
                if !(rng.below(1000) < failing && budget.try_retry(now)) {
                    continue;
                }
                log.push((now, true));
                // Each retry granted fits the budget of the window it was granted in
                // (older requests leave the window later; what was granted stays granted).
                // The window the budget counts: the current 1 s bucket and the nine before.
                let from = (now / 1000).saturating_sub(9) * 1000;
                let (req, ret) =
                    log.iter()
                        .filter(|(t, _)| *t >= from)
                        .fold(
                            (0u64, 0u64),
                            |(a, b), (_, r)| {
                                if *r { (a, b + 1) } else { (a + 1, b) }
                            },
                        );
                assert!(
                    ret <= budget.allowed(req),
                    "seed {seed}: {ret} retries for {req} requests"
                );
            }
        }
    }

    #[test]
    fn a_budget_refuses_a_retry_storm_and_recovers_as_the_window_slides() {
        let budget = RetryBudget::new(
            BudgetPolicy {
                per_mille: 200,
                min_per_s: 0,
            },
            1,
        );
        for _ in 0..100 {
            budget.request(1);
        }
        let granted = (0..100).filter(|_| budget.try_retry(1)).count();
        assert_eq!(granted, 20);
        // Ten seconds later the window has forgotten both.
        assert!(!budget.try_retry(10_500));
        budget.request(11_000);
        assert!(!budget.try_retry(11_000), "1 request × 20 % is 0 retries");
    }

    fn pool(n: usize) -> Vec<Outlier> {
        (0..n).map(|_| Outlier::default()).collect()
    }

    #[test]
    fn simulation_outlier_ejection_never_passes_its_cap_and_targets_come_back() {
        for seed in 0..2000u64 {
            let mut rng = Rng(seed);
            let n = 1 + rng.below(8) as usize;
            let policy = OutlierPolicy {
                consecutive: 1 + rng.below(5) as u32,
                base: 100 + rng.below(5000),
                max_percent: rng.below(101) as u32,
            };
            let members = pool(n);
            let bad: Vec<u64> = (0..n).map(|_| rng.below(1000)).collect();
            let mut now = 1u64;
            let mut last_pick = vec![0u64; n];
            for _ in 0..3000 {
                now += rng.below(50);
                let i = rng.below(n as u64) as usize;
                let me = &members[i];
                if me.ejected(now) {
                    continue;
                }
                last_pick[i] = now;
                if rng.below(1000) < bad[i] {
                    if let Some(until) = Outlier::failure(&policy, members.iter(), me, now) {
                        assert!(until > now);
                        assert!(until - now <= policy.base * 10);
                    }
                } else {
                    me.success();
                }
                let ejected = members.iter().filter(|o| o.ejected(now)).count() as u64;
                assert!(
                    ejected * 100 <= u64::from(policy.max_percent) * n as u64,
                    "seed {seed}: {ejected} of {n} ejected, cap {}%",
                    policy.max_percent
                );
            }
            // Every ejection ends: after the longest one, nobody is ejected.
            let later = now + policy.base * 10 + 1;
            assert!(members.iter().all(|o| !o.ejected(later)), "seed {seed}");
        }
    }

    #[test]
    fn ejections_grow_while_a_target_keeps_failing_and_shrink_when_it_is_quiet() {
        let policy = OutlierPolicy {
            consecutive: 2,
            base: 1000,
            max_percent: 50,
        };
        let members = pool(2);
        let me = &members[0];
        assert_eq!(Outlier::failure(&policy, members.iter(), me, 10), None);
        assert_eq!(
            Outlier::failure(&policy, members.iter(), me, 11),
            Some(1011)
        );
        // The other one may not go too: 50 % of 2 is 1.
        let other = &members[1];
        Outlier::failure(&policy, members.iter(), other, 12);
        assert_eq!(Outlier::failure(&policy, members.iter(), other, 13), None);
        // Back at 1011, failing again at once: twice as long.
        Outlier::failure(&policy, members.iter(), me, 1012);
        assert_eq!(
            Outlier::failure(&policy, members.iter(), me, 1013),
            Some(3013)
        );
        // Quiet for long after: back to the base length.
        Outlier::failure(&policy, members.iter(), me, 20_000);
        assert_eq!(
            Outlier::failure(&policy, members.iter(), me, 20_001),
            Some(21_001)
        );
        // A success in between resets the run.
        Outlier::failure(&policy, members.iter(), me, 30_000);
        me.success();
        assert_eq!(Outlier::failure(&policy, members.iter(), me, 30_002), None);
    }

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            ratio_per_mille: 500,
            min_requests: 10,
            window: Duration::from_secs(10),
            open_for: 5000,
        }
    }

    #[test]
    fn the_breaker_opens_half_opens_and_closes() {
        let b = Breaker::new(policy(), 1);
        // Under the minimum: nine failures do not open it.
        for t in 0..9 {
            assert_eq!(b.admit(100 + t).map(|k| k.record(false, 100 + t)), Ok(None));
        }
        assert_eq!(
            b.admit(200).unwrap().record(false, 200),
            Some(Transition::Opened)
        );
        assert_eq!(b.state(201), BreakerState::Open(4999));
        assert_eq!(b.admit(300).err(), Some(4900));
        // Half-open: one probe; a second waits.
        let probe = b.admit(5200).expect("a probe");
        assert!(b.admit(5201).is_err());
        assert!(!b.may_admit(5201));
        assert_eq!(probe.record(false, 5300), Some(Transition::Opened));
        assert_eq!(b.state(5301), BreakerState::Open(4999));
        // An abandoned probe gives its place back.
        drop(b.admit(10_300).expect("a probe"));
        let probe = b.admit(10_301).expect("the place is free again");
        assert_eq!(probe.record(true, 10_302), Some(Transition::Closed));
        assert_eq!(b.state(10_303), BreakerState::Closed);
        // Closed with a fresh window: one failure does not reopen it.
        assert_eq!(b.admit(10_304).unwrap().record(false, 10_304), None);
    }

    #[test]
    fn simulation_breaker_transitions_follow_the_failure_ratio() {
        for seed in 0..2000u64 {
            let mut rng = Rng(seed);
            let p = BreakerPolicy {
                ratio_per_mille: 100 + rng.below(900) as u32,
                min_requests: 1 + rng.below(30) as u32,
                window: Duration::from_millis(1000 + rng.below(10_000)),
                open_for: 100 + rng.below(5000),
            };
            let b = Breaker::new(p, 2);
            let bad = rng.below(1001);
            let mut now = 1u64;
            let mut opened_at = None;
            for _ in 0..2000 {
                now += rng.below(30);
                let before = b.state(now);
                match b.admit(now) {
                    Err(left) => {
                        assert!(matches!(before, BreakerState::Open(_)), "seed {seed}");
                        assert!(left <= p.open_for);
                    }
                    Ok(ticket) => {
                        let probe = before == BreakerState::HalfOpen;
                        let ok = rng.below(1000) >= bad;
                        match ticket.record(ok, now) {
                            Some(Transition::Opened) => {
                                assert!(!ok, "seed {seed}: a success opened it");
                                opened_at = Some(now);
                            }
                            Some(Transition::Closed) => {
                                assert!(probe && ok, "seed {seed}: closed without a probe");
                            }
                            None => assert!(!probe, "seed {seed}: a probe changed nothing"),
                        }
                    }
                }
                if let (Some(at), BreakerState::Open(_)) = (opened_at, b.state(now)) {
                    assert!(now < at + p.open_for, "seed {seed}: open past open_for");
                }
            }
            if bad == 0 {
                assert_eq!(opened_at, None, "seed {seed}: opened with no failures");
            }
        }
    }

    #[test]
    fn health_takes_the_first_result_then_needs_fall_or_rise_in_a_row() {
        let p = HealthPolicy { fall: 3, rise: 2 };
        let mut h = Health::default();
        assert_eq!(h.observe(&p, false), Some(false));
        assert_eq!(h.observe(&p, true), None);
        assert_eq!(h.observe(&p, false), None, "a failure resets the run");
        assert_eq!(h.observe(&p, true), None);
        assert_eq!(h.observe(&p, true), Some(true));
        assert_eq!(h.observe(&p, false), None);
        assert_eq!(h.observe(&p, false), None);
        assert_eq!(h.observe(&p, false), Some(false));
    }

    #[test]
    fn simulation_health_follows_the_target_within_fall_and_rise_checks() {
        for seed in 0..1000u64 {
            let mut rng = Rng(seed);
            let p = HealthPolicy {
                fall: 1 + rng.below(5) as u32,
                rise: 1 + rng.below(5) as u32,
            };
            let mut h = Health::default();
            let mut target_up = rng.below(2) == 0;
            let mut run = 0u32;
            h.observe(&p, target_up);
            for _ in 0..500 {
                if rng.below(20) == 0 {
                    target_up = !target_up;
                    run = 0;
                }
                h.observe(&p, target_up);
                run += 1;
                let needed = if target_up { p.rise } else { p.fall };
                if run >= needed {
                    assert_eq!(h.up, Some(target_up), "seed {seed}");
                }
            }
        }
    }

    #[test]
    fn slow_start_ramps_from_a_tenth_to_all() {
        assert_eq!(slow_start_share(1000, 1000, 10_000), 100);
        assert_eq!(slow_start_share(6000, 1000, 10_000), 550);
        assert_eq!(slow_start_share(11_000, 1000, 10_000), 1000);
        assert_eq!(slow_start_share(5, 0, 10_000), 1000, "never rejoined");
        assert_eq!(slow_start_share(5, 1, 0), 1000, "no slow start");
        let mut last = 0;
        for t in (1000..12_000).step_by(250) {
            let s = slow_start_share(t, 1000, 10_000);
            assert!(s >= last, "monotonic");
            last = s;
        }
    }

    #[test]
    fn simulation_slow_start_ramps_a_rejoined_target_s_traffic() {
        for seed in 0..200u64 {
            let mut rng = Rng(seed);
            let over = 1000 + rng.below(60_000);
            let since = 1 + rng.below(1_000_000);
            // Two targets taken in turn; the rejoined one passes a turn it is refused.
            let windows = 10u64;
            let per_window = 4000u64;
            let mut shares = Vec::new();
            for w in 0..windows + 2 {
                let mut got = 0u64;
                for k in 0..per_window {
                    let now = since + (w * per_window + k) * over / (windows * per_window);
                    if k % 2 == 0 && slow_start_admits(now, since, over, rng.next()) {
                        got += 1;
                    }
                }
                shares.push(got as f64 / per_window as f64);
            }
            // From about 5 % (a tenth of its half) up to its half once `over` has passed.
            assert!(shares[0] < 0.15, "seed {seed}: {shares:?}");
            assert!(
                (shares[windows as usize] - 0.5).abs() < 1e-9,
                "seed {seed}: {shares:?}"
            );
            for pair in shares.windows(2) {
                assert!(
                    pair[1] + 0.04 >= pair[0],
                    "seed {seed}: not ramping: {shares:?}"
                );
            }
        }
    }
}
