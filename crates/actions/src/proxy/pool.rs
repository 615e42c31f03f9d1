//! Idle upstream connections, per worker thread and per address and TLS setup (a pool's
//! TLS client configuration has an id, 0 for plain TCP): no lock, nothing shared.
//!
//! - LIFO: the connection used last is reused first (it is the most likely to be alive,
//!   and the others can age out).
//! - Bounded: at most `max_idle` per address and worker; past it, the oldest is closed.
//! - Aged: a connection idle longer than `idle_timeout` is closed when its address is next
//!   used, and by a sweep of the whole map at most once a second while the worker proxies
//!   anything (so addresses no longer used, after a reload or a DNS change, do not keep
//!   descriptors). An address whose stack is empty stays in the map until the next sweep,
//!   so the stack's buffer is reused: a proxied request allocates nothing in the pool.
//! - Checked: a connection is peeked before reuse; one the upstream closed (or that has
//!   stray bytes) is dropped.
//!
//! `max_conns` counts connections **in use** per target, all workers together
//! ([`Target::busy`]); idle ones do not count, so connections resting on one worker never
//! make another refuse requests.
//!
//! With metrics on, a connection is counted under its upstream's slot and its state
//! (`anygate_upstream_connections`): idle from its checkin, active from its lease
//! (`UpstreamConn::count_as`), and no longer once dropped, whichever path drops it.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anygate_http::client::UpstreamConn;
use anygate_obs::metrics::PoolState;

use anygate_runtime::time;
use anygate_tls::MaybeTls as Wire;
use foldhash::{HashMap, HashMapExt};

use super::dns::HostEntry;

/// How often, at most, a worker sweeps its whole idle map.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One upstream target (`host:port`), shared by every rule and pool that names it.
#[derive(Debug)]
pub struct Target {
    /// Its addresses.
    pub host: Arc<HostEntry>,
    /// Connections in use (all workers), counted when `max_conns` is set or when the
    /// target is in a pool whose balancer reads them ([`Target::counted`]).
    pub busy: AtomicUsize,
    /// Whether every use counts in `busy` (the target is in a least-connections or random
    /// pool): set while the configuration is compiled, before any request.
    pub counted: std::sync::atomic::AtomicBool,
    /// A process-wide id: a TLS connection's idle key includes it, since the target's host
    /// is the name its handshake sent and verified.
    pub id: u32,
}

/// A slot of [`Target::busy`], held while a connection is in use.
#[derive(Debug)]
pub struct Slot(Option<Arc<Target>>);

impl Slot {
    /// Takes a slot; `None` when `max_conns` (if not 0) are in use. Counted when there is
    /// a cap, or when a balancer reads the counts.
    pub fn take(target: &Arc<Target>, max_conns: usize) -> Option<Self> {
        if max_conns == 0 && !target.counted.load(Ordering::Relaxed) {
            return Some(Self(None));
        }
        let before = target.busy.fetch_add(1, Ordering::AcqRel);
        if max_conns != 0 && before >= max_conns {
            target.busy.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(Some(target.clone())))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// An idle connection's key: where it goes, and over what (a TLS setup's id, or 0).
type Key = (SocketAddr, u64);

struct Idle {
    map: HashMap<Key, Vec<UpstreamConn<Wire>>>,
    last_sweep: Instant,
}

thread_local! {
    static IDLE: RefCell<Idle> = RefCell::new(Idle {
        map: HashMap::new(),
        last_sweep: time::now(),
    });
}

/// Whether an idle connection may still be used: `idle_until` is the end of its rest,
/// set at checkin from the rule's own `idle_timeout` (rules sharing an address, or a
/// worker's sweep, never apply another rule's timeout).
fn fresh(c: &UpstreamConn<Wire>, now: Instant) -> bool {
    now < c.idle_until
}

/// Closes the connections of `stack` past their idle timeout.
fn age(stack: &mut Vec<UpstreamConn<Wire>>, now: Instant) {
    stack.retain(|c| fresh(c, now));
}

impl Idle {
    /// Drops what is too old everywhere, at most once per [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        self.map.retain(|_, stack| {
            age(stack, now);
            !stack.is_empty()
        });
    }
}

/// The most recently idled connection to `addr` over `tls` (a TLS setup's id, 0 for
/// plain) still within its idle timeout, if any (not yet checked for liveness).
pub fn checkout(addr: SocketAddr, tls: u64) -> Option<UpstreamConn<Wire>> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let now = time::now();
        idle.sweep(now);
        let stack = idle.map.get_mut(&(addr, tls))?;
        age(stack, now);
        // An emptied stack stays (with its buffer) for the checkin that follows; the
        // sweep removes it if none comes.
        stack.pop()
    })
}

/// Puts a connection to rest (closing the oldest when `max_idle` are already resting),
/// counted idle under the upstream's metric slot `metric` when metrics are on.
pub fn checkin(
    mut conn: UpstreamConn<Wire>,
    tls: u64,
    max_idle: usize,
    idle_timeout: Duration,
    metric: Option<u32>,
) {
    if max_idle == 0 {
        return;
    }
    let now = time::now();
    conn.idle_until = now + idle_timeout;
    conn.count_as(metric.map(|m| (m, PoolState::Idle)));
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let stack = idle.map.entry((conn.addr, tls)).or_default();
        age(stack, now);
        if stack.len() >= max_idle {
            stack.remove(0);
        }
        stack.push(conn);
        // After the push: the stack this connection came from (emptied by its checkout)
        // is not empty now, so the sweep keeps it and its buffer.
        idle.sweep(now);
    });
}
