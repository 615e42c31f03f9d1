//! A rate limit shared by several gateways through Redis (`store: redis://…`).
//!
//! ```yaml
//! - kind: rate_limit
//!   args: { rate: 100, burst: 200, store: "redis://127.0.0.1:6379/0", sync_interval: 100ms, on_store_error: allow }
//! ```
//!
//! Never one round trip per request: every worker keeps deciding against the local bucket
//! table (lock-free, as without a store) and counts what it lets through per key. A side
//! thread, every `sync_interval`, takes those counts and sends them in one script call.
//! Redis keeps one GCRA bucket per key for the whole fleet, in its own clock (`TIME`, so the
//! gateways' clocks need not agree), adds every gateway's counts to it, and answers how far
//! ahead of now each bucket is; the thread then moves each local bucket at least that far
//! ahead, so a gateway soon refuses what the fleet as a whole has spent. The fleet may let
//! through up to about one interval's worth of requests per gateway above the limit (a
//! gateway spends the shared budget before it hears of the others' spending).
//!
//! Keys are named in Redis by a hash with a fixed seed, so that every gateway names a client
//! alike (the local table keeps its random seed); names carry the limit's rate, burst and
//! scope, so two different limits sharing a Redis do not share buckets. A `route` scope is
//! the rule's position in the configuration: gateways sharing it must share the
//! configuration.
//!
//! When Redis cannot be reached, `on_store_error` decides: `allow` (the default) keeps
//! limiting with the local buckets alone (each gateway then allows the full rate), `deny`
//! answers **503** `AG-SRV-5030` until Redis answers again. The outage is logged when it
//! starts and when it ends, and every failed exchange is counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anygate_config::args::Args;

use crate::rate_limit::Buckets;

/// KEYS: bucket names; ARGV[1]: the emission interval (µs); ARGV[1 + i]: key i's count.
/// Returns, per key, how far its bucket is ahead of Redis' now, in µs (0 when it is full).
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tat = tat + interval * tonumber(ARGV[i + 1])
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  out[i] = math.floor(tat - now)
end
return out
";

/// Keys sent in one script call, at most.
const BATCH: usize = 512;

/// A slot's share of the sync: what it let through since the last one, and its key's name.
#[derive(Debug, Default)]
pub(crate) struct SyncSlot {
    pending: AtomicU64,
    global: AtomicU64,
}

impl SyncSlot {
    /// The slot now holds the key named `global` (its count starts over).
    pub(crate) fn claim(&self, global: u64) {
        self.global.store(global, Ordering::Relaxed);
        self.pending.store(0, Ordering::Relaxed);
    }

    /// One more request let through.
    pub(crate) fn count(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }
}

/// `store`, `sync_interval` and `on_store_error`, read from a `rate_limit`'s args.
#[derive(Debug)]
pub(crate) struct Settings {
    client: redis::Client,
    url: Box<str>,
    interval: Duration,
    deny: bool,
}

impl Settings {
    pub(crate) fn read(args: &mut Args<'_>) -> Option<Self> {
        let interval = args.duration("sync_interval");
        let on_error = args.string("on_store_error");
        let Some((url, node)) = args.string("store") else {
            if let Some((_, n)) = on_error {
                args.error(n.span, "`on_store_error` needs a `store`");
            }
            return None;
        };
        let client = match redis::Client::open(url) {
            Ok(c) if url.starts_with("redis://") => c,
            Ok(_) | Err(_) => {
                args.error_help(
                    node.span,
                    format!("`{url}` is not a Redis URL"),
                    "`redis://host:6379/0` (with `user:password@` if the server wants them)",
                );
                return None;
            }
        };
        let deny = match on_error {
            None | Some(("allow", _)) => false,
            Some(("deny", _)) => true,
            Some((other, n)) => {
                args.error_help(
                    n.span,
                    format!("unknown `on_store_error` value `{other}`"),
                    "`allow` (limit locally) or `deny` (answer 503)",
                );
                false
            }
        };
        let interval = interval.unwrap_or(Duration::from_millis(100));
        if interval < Duration::from_millis(10) {
            let span = args.span();
            args.error(span, "`sync_interval` must be at least 10ms");
        }
        // Userinfo stays out of `check` and the logs.
        let shown = match url.split_once('@') {
            Some((_, host)) => format!("redis://…@{host}"),
            None => url.to_owned(),
        };
        Some(Self {
            client,
            url: shown.into(),
            interval,
            deny,
        })
    }
}

/// What the workers see of the store.
#[derive(Debug)]
pub(crate) struct Store {
    url: Box<str>,
    deny: bool,
    /// Redis is unreachable (set and cleared by the sync thread).
    down: AtomicBool,
    /// Failed exchanges with Redis.
    errors: AtomicU64,
}

impl Store {
    /// Starts the sync thread for `buckets` (it ends when they are dropped).
    pub(crate) fn start(settings: Settings, prefix: String, buckets: &Arc<Buckets>) -> Arc<Self> {
        let store = Arc::new(Self {
            url: settings.url.clone(),
            deny: settings.deny,
            down: AtomicBool::new(false),
            errors: AtomicU64::new(0),
        });
        let (weak, shared) = (Arc::downgrade(buckets), store.clone());
        let _ = anygate_runtime::signal::spawn_side_thread("anygate-rl-sync", move || {
            sync(&weak, &shared, &settings, &prefix);
        });
        store
    }

    /// Whether requests are refused because Redis is down and the policy says `deny`.
    pub(crate) fn refuses(&self) -> bool {
        self.deny && self.down.load(Ordering::Relaxed)
    }

    /// The URL, without credentials.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Failed exchanges with Redis so far.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// The sync thread.
fn sync(buckets: &Weak<Buckets>, store: &Store, settings: &Settings, prefix: &str) {
    let script = redis::Script::new(SCRIPT);
    let mut conn: Option<redis::Connection> = None;
    let mut batch: Vec<(usize, u64)> = Vec::with_capacity(BATCH);
    loop {
        std::thread::sleep(settings.interval);
        let Some(b) = buckets.upgrade() else { return };
        let Some(slots) = &b.sync else { return };
        let interval_us = b.gcra_interval_ns() as f64 / 1000.0;
        let mut i = 0;
        while i < slots.len() {
            batch.clear();
            while i < slots.len() && batch.len() < BATCH {
                let n = slots[i].pending.swap(0, Ordering::AcqRel);
                if n > 0 {
                    batch.push((i, n));
                }
                i += 1;
            }
            if batch.is_empty() {
                continue;
            }
            let answer = exchange(
                &mut conn,
                settings,
                &script,
                interval_us,
                prefix,
                slots,
                &batch,
            );
            match answer {
                Ok(aheads) => {
                    if store.down.swap(false, Ordering::Relaxed) {
                        anygate_obs::log::server(
                            anygate_obs::log::Level::Info,
                            &format!("rate_limit: {} answers again", store.url),
                        );
                    }
                    #[expect(clippy::disallowed_methods, reason = "a side thread: no cached clock")]
                    let now = b.nanos(Instant::now());
                    for (&(slot, _), ahead_us) in batch.iter().zip(aheads) {
                        let ahead = u64::try_from(ahead_us).unwrap_or(0).saturating_mul(1000);
                        b.tat(slot)
                            .fetch_max(now.saturating_add(ahead), Ordering::AcqRel);
                    }
                }
                Err(e) => {
                    conn = None;
                    store.errors.fetch_add(1, Ordering::Relaxed);
                    if !store.down.swap(true, Ordering::Relaxed) {
                        anygate_obs::log::server(
                            anygate_obs::log::Level::Warn,
                            &format!(
                                "rate_limit: {} unreachable ({e}); {}",
                                store.url,
                                if store.deny {
                                    "answering 503 until it is back"
                                } else {
                                    "limiting locally until it is back"
                                }
                            ),
                        );
                    }
                    break;
                }
            }
        }
    }
}

/// One script call for `batch` (slot, count); reconnects when there is no connection.
fn exchange(
    conn: &mut Option<redis::Connection>,
    settings: &Settings,
    script: &redis::Script,
    interval_us: f64,
    prefix: &str,
    slots: &[SyncSlot],
    batch: &[(usize, u64)],
) -> redis::RedisResult<Vec<i64>> {
    let timeout = settings.interval.max(Duration::from_millis(200));
    if conn.is_none() {
        let c = settings.client.get_connection_with_timeout(timeout)?;
        c.set_read_timeout(Some(timeout))?;
        c.set_write_timeout(Some(timeout))?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_mut() else {
        return Ok(Vec::new());
    };
    let mut call = script.prepare_invoke();
    for &(slot, _) in batch {
        call.key(format!(
            "{prefix}{:016x}",
            slots[slot].global.load(Ordering::Relaxed)
        ));
    }
    call.arg(interval_us);
    for &(_, n) in batch {
        call.arg(n);
    }
    call.invoke(c)
}
