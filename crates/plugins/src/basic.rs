//! HTTP Basic authentication (RFC 7617) for the `auth` filter, against bcrypt and argon2
//! password hashes.
//!
//! ```yaml
//! basic:
//!   users: { alice: "$2b$12$…", bob: "$argon2id$v=19$…" }
//!   users_file: htpasswd        # `user:hash` lines (what `htpasswd -B` writes)
//!   cache_ttl: 5m               # how long a verified user:password pair is remembered
//!   failures: { rate: 1, burst: 10 }   # wrong passwords per client address before 429
//! ```
//!
//! # Design
//!
//! A hash verification costs tens to hundreds of milliseconds by design, so it never runs on
//! a worker:
//!
//! - A pair verified once is remembered for `cache_ttl` under a 128-bit keyed hash of
//!   `user:password` (SipHash, two random per-process keys; the password itself is never
//!   kept). The cache is a map behind an `ArcSwap`: a worker looks it up without a lock; only
//!   the verifier threads replace it, bounded to [`CACHE_MAX`] entries.
//! - A miss is sent to a small pool of side threads ([`THREADS`], each with a bounded queue
//!   of [`QUEUE`] jobs, filled in turn); the request waits for the answer without holding its
//!   worker. Full queues answer **503** `AG-SRV-5030` with `Retry-After` (the gateway never
//!   queues without bound).
//! - Wrong passwords are counted per client address in a token bucket (`failures`): an
//!   empty bucket answers **429** `AG-SEC-6003` before any verification, so guessing costs
//!   the guesser, not the gateway.
//! - An unknown user is refused without a verification (its timing says the user does not
//!   exist; the failure bucket still limits how fast anyone can ask).

use std::collections::HashMap;
use std::future::poll_fn;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::task::Poll;
use std::time::{Duration, Instant};

use anygate_config::args::Args;
use anygate_runtime::sync::AtomicWaker;
use arc_swap::ArcSwap;

use crate::rate_limit::Gcra;

/// Verifier threads per `basic` configuration.
const THREADS: usize = 2;
/// Verifications waiting for each thread, at most.
const QUEUE: usize = 32;
/// Remembered pairs, at most.
pub(crate) const CACHE_MAX: usize = 4096;

/// A stored password hash.
#[derive(Debug, Clone)]
enum Hash {
    Bcrypt(Box<str>),
    Argon2(Box<str>),
}

impl Hash {
    fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("$2a$") || text.starts_with("$2b$") || text.starts_with("$2y$") {
            // Checked now, so that a typo is a load error, not a 401 forever.
            text.parse::<bcrypt::HashParts>()
                .map_err(|e| format!("not a bcrypt hash: {e}"))?;
            return Ok(Self::Bcrypt(text.into()));
        }
        if text.starts_with("$argon2") {
            argon2::PasswordHash::new(text).map_err(|e| format!("not an argon2 hash: {e}"))?;
            return Ok(Self::Argon2(text.into()));
        }
        Err("a password must be given as a bcrypt ($2b$…) or argon2 ($argon2id$…) hash".to_owned())
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Self::Argon2(h) => {
                use argon2::PasswordVerifier;
                // The parameters (memory, passes) come from the hash itself.
                argon2::Argon2::default()
                    .verify_password(password, &**h)
                    .is_ok()
            }
        }
    }
}

/// The answer slot of one verification.
#[derive(Debug, Default)]
struct Slot {
    /// 0 pending, 1 valid, 2 invalid.
    state: AtomicU8,
    waker: AtomicWaker,
}

struct Job {
    user: Box<str>,
    password: Box<[u8]>,
    key: u128,
    slot: Arc<Slot>,
}

/// Remembered pairs: key → when the memory ends.
type Cache = ArcSwap<HashMap<u128, Instant>>;

/// What a request's credentials came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Valid,
    Invalid,
    /// Too many failures from this client.
    Limited(u64),
    /// The verifier queue is full.
    Busy,
}

/// The `basic` part of an `auth` filter.
pub(crate) struct Basic {
    users: Arc<HashMap<Box<str>, Hash>>,
    cache: Arc<Cache>,
    ttl: Duration,
    keys: (std::hash::RandomState, std::hash::RandomState),
    /// One queue per verifier thread, filled in turn.
    jobs: Vec<SyncSender<Job>>,
    next: AtomicUsize,
    failures: crate::rate_limit::Buckets,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Basic")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl Basic {
    pub(crate) fn build(args: &mut Args<'_>, base: &Path) -> Option<Self> {
        let mut a = args.map("basic")?;
        let mut users: HashMap<Box<str>, Hash> = HashMap::new();
        for (user, _, hash, node) in a.string_map("users") {
            match Hash::parse(hash) {
                Ok(h) => {
                    users.insert(user.into(), h);
                }
                Err(e) => a.error(node.span, format!("user `{user}`: {e}")),
            }
        }
        if let Some((file, node)) = a.string("users_file") {
            let path = base.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    for (n, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        let parsed = line
                            .split_once(':')
                            .ok_or_else(|| "expected `user:hash`".to_owned())
                            .and_then(|(u, h)| Hash::parse(h).map(|h| (u, h)));
                        match parsed {
                            Ok((u, h)) => {
                                users.insert(u.into(), h);
                            }
                            Err(e) => {
                                a.error(node.span, format!("{}:{}: {e}", path.display(), n + 1));
                            }
                        }
                    }
                }
                Err(e) => a.error(node.span, format!("cannot read `{}`: {e}", path.display())),
            }
        }
        let ttl = a.duration("cache_ttl").unwrap_or(Duration::from_secs(300));
        let (rate, burst) = match a.map("failures") {
            Some(mut f) => {
                let rate = f.number("rate", 0.001, 1e6).map_or(1.0, |(r, _)| r);
                let burst = f.integer("burst", 1, 1 << 20).unwrap_or(10);
                a.absorb(f, &["rate", "burst"]);
                (rate, burst)
            }
            None => (1.0, 10),
        };
        if users.is_empty() && !a.failed() {
            let span = a.span();
            a.error(span, "`basic` needs `users` or `users_file`");
        }
        let failed = a.failed();
        args.absorb(a, &["users", "users_file", "cache_ttl", "failures"]);
        if failed {
            return None;
        }
        let users = Arc::new(users);
        let cache: Arc<Cache> = Arc::new(ArcSwap::from_pointee(HashMap::new()));
        let mut jobs = Vec::with_capacity(THREADS);
        for i in 0..THREADS {
            let (tx, rx) = sync_channel::<Job>(QUEUE);
            let (users, cache) = (users.clone(), cache.clone());
            // A thread that cannot start leaves its queue without a reader: its sends fail
            // and the next queue is tried.
            let _ = anygate_runtime::signal::spawn_side_thread(
                &format!("anygate-basic-{i}"),
                move || verifier(&users, &cache, ttl, &rx),
            );
            jobs.push(tx);
        }
        Some(Self {
            users,
            cache,
            ttl,
            keys: (std::hash::RandomState::new(), std::hash::RandomState::new()),
            jobs,
            next: AtomicUsize::new(0),
            failures: crate::rate_limit::Buckets::new(Gcra::new(rate, burst), 16_384),
        })
    }

    fn key(&self, user: &[u8], password: &[u8]) -> u128 {
        let h = |s: &std::hash::RandomState| {
            let mut h = s.build_hasher();
            h.write(user);
            h.write_u8(0);
            h.write(password);
            h.finish()
        };
        (u128::from(h(&self.keys.0)) << 64) | u128::from(h(&self.keys.1))
    }

    /// Checks `user:password` from `client`.
    pub(crate) async fn check(
        &self,
        user: &[u8],
        password: &[u8],
        client: Option<std::net::IpAddr>,
    ) -> Outcome {
        let key = self.key(user, password);
        let now = anygate_runtime::time::now();
        if self
            .cache
            .load()
            .get(&key)
            .is_some_and(|&until| now < until)
        {
            return Outcome::Valid;
        }
        let client_key = self.failures.key(&client.map(|ip| ip.to_canonical()));
        if let Some(wait) = self.failures.blocked(client_key) {
            return Outcome::Limited(wait);
        }
        if !std::str::from_utf8(user).is_ok_and(|u| self.users.contains_key(u)) {
            self.failures.take_now(client_key);
            return Outcome::Invalid;
        }
        let slot = Arc::new(Slot::default());
        let job = Job {
            user: String::from_utf8_lossy(user).into(),
            password: password.into(),
            key,
            slot: slot.clone(),
        };
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut job = Some(job);
        for i in 0..self.jobs.len() {
            let Some(j) = job.take() else { break };
            match self.jobs[(first + i) % self.jobs.len()].try_send(j) {
                Ok(()) => break,
                Err(TrySendError::Full(j) | TrySendError::Disconnected(j)) => job = Some(j),
            }
        }
        if job.is_some() {
            return Outcome::Busy;
        }
        let valid = poll_fn(|cx| {
            slot.waker.register(cx.waker());
            match slot.state.load(Ordering::Acquire) {
                0 => Poll::Pending,
                s => Poll::Ready(s == 1),
            }
        })
        .await;
        if valid {
            Outcome::Valid
        } else {
            self.failures.take_now(client_key);
            Outcome::Invalid
        }
    }

    pub(crate) fn summary(&self) -> String {
        format!(
            "basic ({} user(s), cache {}s)",
            self.users.len(),
            self.ttl.as_secs()
        )
    }
}

/// A verifier thread: takes jobs until the filter is gone (its queue's sender dropped).
fn verifier(users: &HashMap<Box<str>, Hash>, cache: &Cache, ttl: Duration, rx: &Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        let valid = users
            .get(&job.user)
            .is_some_and(|h| h.verify(&job.password));
        if valid {
            #[expect(
                clippy::disallowed_methods,
                reason = "a side thread: no cached clock here"
            )]
            let now = Instant::now();
            cache.rcu(|old| {
                let mut map: HashMap<u128, Instant> = old
                    .iter()
                    .filter(|(_, until)| **until > now)
                    .map(|(k, v)| (*k, *v))
                    .collect();
                if map.len() >= CACHE_MAX {
                    map.clear();
                }
                map.insert(job.key, now + ttl);
                map
            });
        }
        job.slot
            .state
            .store(if valid { 1 } else { 2 }, Ordering::Release);
        job.slot.waker.wake();
    }
}

/// The user and password of an `Authorization: Basic …` value.
pub fn credentials(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = decode_base64(rest.trim_ascii())?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// Standard base64 with padding (RFC 4648 §4), as Basic credentials are written.
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) || text.is_empty() {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let chunks = text.len() / 4;
    for (i, q) in text.chunks(4).enumerate() {
        let pad = if i + 1 == chunks {
            q.iter().rev().take_while(|&&c| c == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded_exactly() {
        // "alice:s3:cret" (a colon in the password is the password's).
        assert_eq!(
            credentials(b"Basic YWxpY2U6czM6Y3JldA=="),
            Some((b"alice".to_vec(), b"s3:cret".to_vec()))
        );
        assert_eq!(
            credentials(b"basic YTpi"),
            Some((b"a".to_vec(), b"b".to_vec()))
        );
        assert_eq!(credentials(b"Basic YWJj"), None, "no colon");
        assert_eq!(credentials(b"Basic YW=j"), None, "padding inside");
        assert_eq!(credentials(b"Basic YWJ"), None, "not a multiple of 4");
        assert_eq!(credentials(b"Bearer YTpi"), None);
        assert_eq!(decode_base64(b"TWFu"), Some(b"Man".to_vec()));
        assert_eq!(decode_base64(b"TWE="), Some(b"Ma".to_vec()));
        assert_eq!(decode_base64(b"TQ=="), Some(b"M".to_vec()));
        assert_eq!(decode_base64(b"T==="), None);
    }

    #[test]
    fn hashes_are_recognised_and_checked_at_load() {
        assert!(Hash::parse("plain").is_err());
        assert!(Hash::parse("$2b$04$notvalid").is_err());
        assert!(Hash::parse("$argon2id$nope").is_err());
        let h = bcrypt::hash("pw", 4).unwrap();
        let parsed = Hash::parse(&h).unwrap();
        assert!(parsed.verify(b"pw") && !parsed.verify(b"pW"));
    }
}
