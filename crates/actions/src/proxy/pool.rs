//! Idle upstream connections, per worker thread and per address: no lock, nothing shared.
//!
//! - LIFO: the connection used last is reused first (it is the most likely to be alive,
//!   and the others can age out).
//! - Bounded: at most `max_idle` per address and worker; past it, a returned connection is
//!   closed. `max_conns` (all workers, idle ones included) is counted by [`Target::open`].
//! - Aged: a connection idle longer than `idle_timeout` is closed when the pool is next
//!   touched; an address with no idle connection left is removed from the map.
//! - Checked: a connection is peeked before reuse; one the upstream closed (or that has
//!   stray bytes) is dropped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anygate_http::client::UpstreamConn;
use anygate_runtime::time;

use super::dns::HostEntry;

/// One upstream target (`host:port`), shared by every rule and pool that names it.
#[derive(Debug)]
pub struct Target {
    /// Its addresses.
    pub host: Arc<HostEntry>,
    /// Open connections to it, idle ones included (all workers).
    pub open: AtomicUsize,
}

/// A connection with its share of [`Target::open`], released when it closes.
#[derive(Debug)]
pub struct Leased {
    /// The connection.
    pub conn: UpstreamConn,
    target: Arc<Target>,
}

impl Leased {
    /// Counts a new connection to `target`; `None` when `max_conns` (if not 0) are open.
    pub fn reserve(target: &Arc<Target>, max_conns: usize) -> Option<Reservation> {
        let before = target.open.fetch_add(1, Ordering::AcqRel);
        if max_conns > 0 && before >= max_conns {
            target.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Reservation {
            target: target.clone(),
            armed: true,
        })
    }
}

/// A slot of [`Target::open`] taken before connecting; given back if the connection fails.
#[derive(Debug)]
pub struct Reservation {
    target: Arc<Target>,
    armed: bool,
}

impl Reservation {
    /// Attaches the slot to the new connection.
    pub fn fill(mut self, conn: UpstreamConn) -> Leased {
        self.armed = false;
        Leased {
            conn,
            target: self.target.clone(),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.armed {
            self.target.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        self.target.open.fetch_sub(1, Ordering::AcqRel);
    }
}

thread_local! {
    static IDLE: RefCell<HashMap<SocketAddr, Vec<Leased>>> = RefCell::new(HashMap::new());
}

/// The most recently idled connection to `addr` still within `idle_timeout`, if any (not
/// yet checked for liveness).
pub fn checkout(addr: SocketAddr, idle_timeout: Duration) -> Option<Leased> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let stack = idle.get_mut(&addr)?;
        let now = time::now();
        stack.retain(|c| now.saturating_duration_since(c.conn.idle_since) < idle_timeout);
        let conn = stack.pop();
        if stack.is_empty() {
            idle.remove(&addr);
        }
        conn
    })
}

/// Puts a connection to rest (or closes it when `max_idle` are already resting).
pub fn checkin(mut leased: Leased, max_idle: usize, idle_timeout: Duration) {
    if max_idle == 0 {
        return;
    }
    let now = time::now();
    leased.conn.idle_since = now;
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let stack = idle.entry(leased.conn.addr).or_default();
        stack.retain(|c| now.saturating_duration_since(c.conn.idle_since) < idle_timeout);
        if stack.len() >= max_idle {
            // Keep the fresh one: drop the oldest.
            stack.remove(0);
        }
        stack.push(leased);
    });
}
