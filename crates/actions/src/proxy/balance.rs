//! Picking a pool's target for a request: round robin, smooth weighted round robin, least
//! connections, power of two random choices, consistent hashing.
//!
//! # Design
//!
//! Each strategy is a pure function of the pool's members, the request's key and the
//! strategy's own small state; the state lives beside the pool and is touched without a
//! lock:
//!
//! - **round robin**: one shared counter (`fetch_add`, relaxed).
//! - **weighted** (nginx's smooth weighted round robin): each worker has its own row of
//!   current weights (as many rows as `server.workers`), written by that worker alone (relaxed atomics: no lock, no shared
//!   cache line between workers). Every worker's sequence is exact: over a cycle of
//!   Σweights picks each target gets exactly its weight, spread out (5,1,1 gives
//!   a a b a c a a), so the process's total is exact per cycle of each worker.
//! - **least connections**: the target whose requests in flight (all workers, the
//!   target's counter) are fewest for its weight, `(busy + 1) / weight` as HAProxy's
//!   `leastconn` counts them, ties broken from a rotating start so that an idle pool is
//!   still spread.
//! - **random**: two targets drawn by weight (the per-thread generator of
//!   `anygate_obs::trace`), the one with less load per weight taken, the first on a tie
//!   (power of two choices: close to least connections without scanning, and without
//!   herding on stale counts; idle targets get their weight's share).
//! - **hash**: a ring of 160 points per unit of weight per target (ketama's layout), each
//!   point the 64-bit FNV-1a hash of `host:port#i` run through a finaliser: stable across
//!   processes and restarts, so that several gateways send a key to the same target. A key
//!   goes to the first point at or after its hash. A target leaving moves only its keys
//!   (about 1/N of them); a request without the key (no such cookie) falls back to round
//!   robin.
//!
//! Every strategy picks among the members a predicate calls eligible: the pool
//! (`super::Pool`) leaves out targets that are down, ejected, behind an open breaker or
//! already tried by this request. Backups and slow start are the pool's too.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use anygate_http::Request;

/// A pool's strategy, as configured (`proxy.upstreams.NAME.balance`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Balance {
    /// `round_robin`.
    RoundRobin,
    /// `weighted`.
    Weighted,
    /// `least_conn`.
    LeastConn,
    /// `random`.
    Random,
    /// `hash`, of this key.
    Hash(HashKey),
}

/// What `balance: hash` hashes (`hash_key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// The client's address.
    ClientIp,
    /// A request field's value (the name lower-cased).
    Header(Box<str>),
    /// A cookie's value.
    Cookie(Box<str>),
    /// The request path.
    Path,
}

/// The strategy of a pool, with its state.
#[derive(Debug)]
pub enum Balancer {
    /// Each target in turn.
    RoundRobin(AtomicUsize),
    /// Smooth weighted round robin, a row of current weights per worker.
    Weighted(Box<[Box<[AtomicI64]>]>),
    /// Fewest in flight for the weight; the counter rotates the ties' start.
    LeastConn(AtomicUsize),
    /// Power of two random choices by weight.
    Random,
    /// Consistent hashing of a key; round robin without the key.
    Hash {
        /// The points, sorted: (hash, member).
        ring: Box<[(u64, u32)]>,
        /// What is hashed.
        key: HashKey,
        /// Round robin for requests without the key.
        next: AtomicUsize,
    },
}

/// What a strategy sees of one target.
pub trait Member {
    /// Its weight (1 to 1000).
    fn weight(&self) -> u32;
    /// Its requests in flight, all workers together.
    fn load(&self) -> usize;
    /// What identifies it on the hash ring: `host:port`.
    fn ring_name(&self) -> String;
}

/// Points on the ring per unit of weight.
const POINTS: u32 = 160;

/// Rows of current weights for `weighted`: one per worker (`worker_index`, `workers` of
/// them), and one more shared by threads that are not workers.
fn rows(workers: usize) -> usize {
    workers.clamp(1, 1024) + 1
}

impl Balancer {
    /// The state for `balance` over `members`.
    pub fn new<M: Member>(balance: &Balance, members: &[M], workers: usize) -> Self {
        match balance {
            Balance::RoundRobin => Self::RoundRobin(AtomicUsize::new(0)),
            Balance::Weighted => Self::Weighted(
                (0..rows(workers))
                    .map(|_| members.iter().map(|_| AtomicI64::new(0)).collect())
                    .collect(),
            ),
            Balance::LeastConn => Self::LeastConn(AtomicUsize::new(0)),
            Balance::Random => Self::Random,
            Balance::Hash(key) => Self::Hash {
                ring: ring(members),
                key: key.clone(),
                next: AtomicUsize::new(0),
            },
        }
    }

    /// The index of the member for a request, among those `eligible` (`None` when none
    /// is). Members that are not eligible (down, ejected, already tried) are skipped the
    /// way each strategy skips: round robin and the ring walk on to the next, the others
    /// choose among the rest.
    pub fn pick<M: Member>(
        &self,
        members: &[M],
        key: impl FnOnce(&HashKey) -> Option<u64>,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = members.len();
        if n <= 1 {
            return (n == 1 && eligible(0)).then_some(0);
        }
        match self {
            Self::RoundRobin(next) => {
                next_eligible(next.fetch_add(1, Ordering::Relaxed), n, &eligible)
            }
            Self::Weighted(rows) => {
                let row = anygate_runtime::worker_index()
                    .map_or(rows.len() - 1, |i| i % (rows.len() - 1));
                swrr(members, &rows[row], &eligible)
            }
            Self::LeastConn(next) => {
                least_conn(members, next.fetch_add(1, Ordering::Relaxed), &eligible)
            }
            Self::Random => two_choices(members, &mut anygate_obs::trace::random_u64, &eligible),
            Self::Hash { ring, key: k, next } => match key(k) {
                Some(h) => on_ring(ring, h, &eligible),
                None => next_eligible(next.fetch_add(1, Ordering::Relaxed), n, &eligible),
            },
        }
    }
}

/// Round robin over the eligible members: the `turn`-th of them (mod their number). Not
/// "the next eligible at or after `turn`", which would give a member's turns to its
/// successor and send it twice its share.
fn next_eligible(turn: usize, n: usize, eligible: &impl Fn(usize) -> bool) -> Option<usize> {
    if eligible(turn % n) && (0..n).all(eligible) {
        return Some(turn % n);
    }
    let count = (0..n).filter(|&i| eligible(i)).count();
    if count == 0 {
        return None;
    }
    (0..n).filter(|&i| eligible(i)).nth(turn % count)
}

/// One step of smooth weighted round robin over `current` (one worker's row), among the
/// eligible members: every current weight grows by its weight, the largest is picked and
/// loses the total (nginx skips a down peer the same way: it takes no part in the step).
pub fn swrr<M: Member>(
    members: &[M],
    current: &[AtomicI64],
    eligible: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut total = 0i64;
    let mut best = None;
    let mut best_weight = i64::MIN;
    for (i, (m, c)) in members.iter().zip(current).enumerate() {
        if !eligible(i) {
            continue;
        }
        total += i64::from(m.weight());
        let w = c.load(Ordering::Relaxed) + i64::from(m.weight());
        c.store(w, Ordering::Relaxed);
        if w > best_weight {
            best = Some(i);
            best_weight = w;
        }
    }
    let best = best?;
    current[best].fetch_sub(total, Ordering::Relaxed);
    Some(best)
}

/// Whether `a` (load, weight) would be strictly less loaded than `b` with one more request:
/// `(la + 1) / wa < (lb + 1) / wb` (HAProxy's `leastconn`: an idle pool fills the heavier
/// targets first).
fn lighter(a: (usize, u32), b: (usize, u32)) -> bool {
    let (la, wa) = (a.0 as u128 + 1, u128::from(a.1));
    let (lb, wb) = (b.0 as u128 + 1, u128::from(b.1));
    la * wb < lb * wa
}

/// The least loaded eligible member for its weight, scanning from `start`.
pub fn least_conn<M: Member>(
    members: &[M],
    start: usize,
    eligible: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let n = members.len();
    let mut best: Option<(usize, (usize, u32))> = None;
    for k in 0..n {
        let i = (start + k) % n;
        if !eligible(i) {
            continue;
        }
        let load = (members[i].load(), members[i].weight());
        if best.is_none_or(|(_, b)| lighter(load, b)) {
            best = Some((i, load));
        }
    }
    best.map(|(i, _)| i)
}

/// An eligible member drawn with probability proportional to its weight.
fn by_weight<M: Member>(members: &[M], r: u64, eligible: &impl Fn(usize) -> bool) -> Option<usize> {
    let weight = |i: usize| {
        if eligible(i) {
            u64::from(members[i].weight())
        } else {
            0
        }
    };
    let total: u64 = (0..members.len()).map(weight).sum();
    if total == 0 {
        return None;
    }
    let mut at = r % total;
    for i in 0..members.len() {
        let w = weight(i);
        if at < w {
            return Some(i);
        }
        at -= w;
    }
    None
}

/// Whether `a` (load, weight) carries strictly less load per weight than `b`: idle targets
/// tie, whatever their weights.
fn less_loaded(a: (usize, u32), b: (usize, u32)) -> bool {
    (a.0 as u128) * u128::from(b.1) < (b.0 as u128) * u128::from(a.1)
}

/// Power of two choices among the eligible: two draws by weight (distinct when they can
/// be), the one with less load per weight; on a tie the first draw, so that idle targets
/// get their weight's share (comparing `(load + 1) / weight` would count the weight twice).
pub fn two_choices<M: Member>(
    members: &[M],
    random: &mut impl FnMut() -> u64,
    eligible: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let a = by_weight(members, random(), eligible)?;
    let mut b = by_weight(members, random(), eligible)?;
    if b == a {
        // A second draw among the others, so that the choice is a real one.
        b = by_weight(members, random(), &|i| i != a && eligible(i)).unwrap_or(a);
    }
    let load = |i: usize| (members[i].load(), members[i].weight());
    Some(if less_loaded(load(b), load(a)) { b } else { a })
}

/// The 64-bit FNV-1a hash of `bytes`, run through a finaliser: stable across processes
/// (the ring and keys must map alike in every gateway and after a restart).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hash ring of `members`: POINTS × weight points each, sorted.
pub fn ring<M: Member>(members: &[M]) -> Box<[(u64, u32)]> {
    let mut points = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let name = m.ring_name();
        for p in 0..POINTS * m.weight() {
            let h = stable_hash(format!("{name}#{p}").as_bytes());
            points.push((h, u32::try_from(i).unwrap_or(u32::MAX)));
        }
    }
    points.sort_unstable();
    points.into_boxed_slice()
}

/// The member owning `h`: the first point at or after it, wrapping around, whose member is
/// eligible (a member that is out gives its keys to the next points' owners alone, so they
/// come back to it when it does).
pub fn on_ring(ring: &[(u64, u32)], h: u64, eligible: &impl Fn(usize) -> bool) -> Option<usize> {
    let at = ring.partition_point(|&(p, _)| p < h);
    (0..ring.len())
        .map(|k| ring[(at + k) % ring.len()].1 as usize)
        .find(|&i| eligible(i))
}

/// The hash of a request's key, `None` when the request has none. `client` is the address
/// `server.trusted_proxies` found, if any; else the peer's counts.
pub fn key_hash(key: &HashKey, req: &Request<'_>, client: Option<IpAddr>) -> Option<u64> {
    match key {
        HashKey::ClientIp => client
            .or_else(|| req.peer().map(|p| p.ip()))
            .map(|ip| match ip {
                IpAddr::V4(v4) => stable_hash(&v4.octets()),
                IpAddr::V6(v6) => stable_hash(&v6.octets()),
            }),
        HashKey::Path => Some(stable_hash(req.path())),
        HashKey::Header(name) => req.header(name.as_bytes()).map(stable_hash),
        HashKey::Cookie(name) => req
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"cookie"))
            .find_map(|(_, v)| cookie(v, name.as_bytes()))
            .map(stable_hash),
    }
}

/// The value of the cookie `name` in a `Cookie` field (`a=1; b=2`).
fn cookie<'v>(field: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    field.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Every member eligible.
    const ALL: fn(usize) -> bool = |_| true;

    struct M {
        w: u32,
        load: Cell<usize>,
        name: String,
    }

    impl Member for M {
        fn weight(&self) -> u32 {
            self.w
        }
        fn load(&self) -> usize {
            self.load.get()
        }
        fn ring_name(&self) -> String {
            self.name.clone()
        }
    }

    fn members(weights: &[u32]) -> Vec<M> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| M {
                w,
                load: Cell::new(0),
                name: format!("10.0.0.{i}:8080"),
            })
            .collect()
    }

    fn row(n: usize) -> Vec<AtomicI64> {
        (0..n).map(|_| AtomicI64::new(0)).collect()
    }

    #[test]
    fn smooth_weighted_round_robin_spreads_as_nginx_does() {
        let m = members(&[5, 1, 1]);
        let r = row(3);
        let seq: Vec<usize> = (0..7).map(|_| swrr(&m, &r, &ALL).unwrap()).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
    }

    proptest::proptest! {
        #[test]
        fn smooth_weighted_round_robin_is_exact_over_every_cycle(
            weights in proptest::collection::vec(1u32..=20, 1..8),
            cycles in 1usize..4,
        ) {
            let m = members(&weights);
            let r = row(m.len());
            let total: u32 = weights.iter().sum();
            for _ in 0..cycles {
                let mut counts = vec![0u32; m.len()];
                for _ in 0..total {
                    counts[swrr(&m, &r, &ALL).unwrap()] += 1;
                }
                proptest::prop_assert_eq!(&counts, &weights);
            }
        }
    }

    #[test]
    fn least_conn_takes_the_lightest_for_its_weight_and_spreads_ties() {
        let m = members(&[1, 1, 2]);
        m[0].load.set(3);
        m[1].load.set(1);
        m[2].load.set(3); // (3+1)/2 = 2 ≥ (1+1)/1 = 2: a tie, the first found wins
        assert_eq!(least_conn(&m, 0, &ALL).unwrap(), 1);
        m[2].load.set(2); // 1.5 < 2
        assert_eq!(least_conn(&m, 0, &ALL).unwrap(), 2);
        let idle = members(&[1, 1, 1]);
        let picks: Vec<usize> = (0..3)
            .map(|s| least_conn(&idle, s, &ALL).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2]);
    }

    #[test]
    fn two_choices_takes_the_lighter_of_two_distinct_draws() {
        let m = members(&[1, 1]);
        m[0].load.set(10);
        let mut zero = || 0u64; // both draws land on 0; the second is moved to 1
        assert_eq!(two_choices(&m, &mut zero, &ALL).unwrap(), 1);
        // Over many draws the busy one is never taken while the other is idle.
        let mut x = 7u64;
        let mut next = || {
            x = mix(x);
            x
        };
        assert!((0..1000).all(|_| two_choices(&m, &mut next, &ALL) == Some(1)));
    }

    #[test]
    fn the_ring_keeps_keys_and_moves_about_one_in_n_when_a_target_leaves() {
        for n in [3usize, 5, 10] {
            let all = members(&vec![1; n]);
            let before = ring(&all);
            let fewer: Vec<M> = members(&vec![1; n]).into_iter().skip(1).collect();
            let after = ring(&fewer);
            let keys = 20_000u64;
            let mut moved = 0u32;
            let mut share = vec![0u64; n];
            for k in 0..keys {
                let h = stable_hash(&k.to_le_bytes());
                let a = on_ring(&before, h, &ALL).unwrap();
                share[a] += 1;
                // The same key, same ring: the same target.
                assert_eq!(on_ring(&before, h, &ALL).unwrap(), a);
                let b = on_ring(&after, h, &ALL).unwrap() + 1; // indices shift: member 0 left
                if a != b {
                    moved += 1;
                    assert_eq!(a, 0, "only the leaving target's keys move");
                }
            }
            let bound = keys as f64 * (1.0 / n as f64 + 0.05);
            assert!(f64::from(moved) <= bound, "n={n}: {moved} moved > {bound}");
            // And the ring spreads keys: every target within ±30 % of its share.
            for s in share {
                let fair = keys as f64 / n as f64;
                assert!((s as f64 - fair).abs() < fair * 0.3, "n={n}: {s} vs {fair}");
            }
        }
    }

    #[test]
    fn the_ring_follows_weights() {
        let m = members(&[3, 1]);
        let r = ring(&m);
        let heavy = (0..20_000u64)
            .filter(|k| on_ring(&r, stable_hash(&k.to_le_bytes()), &ALL) == Some(0))
            .count();
        assert!((13_500..16_500).contains(&heavy), "{heavy}");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        assert_eq!(
            cookie(b"a=1; session=xyz; b=2", b"session"),
            Some(&b"xyz"[..])
        );
        assert_eq!(cookie(b"sessionid=1", b"session"), None);
        assert_eq!(cookie(b"session=", b"session"), Some(&b""[..]));
        assert_eq!(cookie(b"junk", b"session"), None);
    }

    #[test]
    fn a_member_out_of_the_ring_gives_its_keys_to_the_others_and_gets_them_back() {
        let m = members(&[1, 1, 1, 1]);
        let r = ring(&m);
        let out = |i: usize| i != 2;
        for k in 0..5000u64 {
            let h = stable_hash(&k.to_le_bytes());
            let owner = on_ring(&r, h, &ALL).unwrap();
            let without = on_ring(&r, h, &out).unwrap();
            assert_ne!(without, 2);
            if owner != 2 {
                assert_eq!(without, owner, "only the missing member's keys move");
            }
        }
        assert_eq!(on_ring(&r, 1, &|_| false), None);
    }

    #[test]
    fn every_strategy_skips_members_that_are_not_eligible() {
        let m = members(&[3, 1, 2]);
        let not_first = |i: usize| i != 0;
        let row = row(3);
        let mut counts = [0u32; 3];
        for _ in 0..300 {
            counts[swrr(&m, &row, &not_first).unwrap()] += 1;
        }
        assert_eq!(counts, [0, 100, 200], "exact among the eligible");
        assert_eq!(least_conn(&m, 0, &not_first), Some(2));
        let mut x = 3u64;
        let mut next = || {
            x = mix(x);
            x
        };
        assert!((0..500).all(|_| two_choices(&m, &mut next, &not_first) != Some(0)));
        assert_eq!(two_choices(&m, &mut next, &|i| i == 1), Some(1));
        assert_eq!(next_eligible(0, 3, &not_first), Some(1));
        assert_eq!(next_eligible(1, 3, &|_| false), None);
        // Round robin over the rest is even: the member after a missing one gets no more.
        let mut rr = [0u32; 3];
        for turn in 0..300 {
            rr[next_eligible(turn, 3, &not_first).unwrap()] += 1;
        }
        assert_eq!(rr, [0, 150, 150]);
        let b = Balancer::new(&Balance::Weighted, &m, 1);
        assert_eq!(b.pick(&m, |_| None, |_| false), None);
    }
}
