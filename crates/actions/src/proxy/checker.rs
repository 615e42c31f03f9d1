//! Active health checks: one checker per process, on a thread of its own, whose results
//! every worker reads.
//!
//! # Design
//!
//! - A pool with `health:` gives each of its targets a [`Watched`] cell, found in a
//!   process-wide registry by pool, target and check: a reload that keeps the check keeps
//!   the cell and its state (a target found down stays down), and a check nobody refers to
//!   any more ends with the configuration that held it (its task sees itself alone).
//! - The checks run as tasks on a one-worker runtime of their own (`anygate-health`),
//!   started by [`start`] when the server starts: a slow or dead target costs the workers
//!   nothing, and one thread checks any number of targets at once.
//! - A check is an HTTP `GET` (the expected statuses), a TCP connect, or a WebSocket
//!   handshake (a `101` with the right `Sec-WebSocket-Accept`), over TLS when the pool
//!   speaks it; the [`Health`] machine turns results into up and down with `fall` and
//!   `rise`. Changes are logged; the workers read one atomic per pick.
//! - [`settle`] waits (bounded by the checks' timeouts) for every new cell's first result:
//!   the server calls it before it serves a configuration, so a target that is dead at start
//!   or after a reload is out before any client request is sent to it.

// The control plane: the registry's lock and the checker's clock are taken at configuration
// time and on the health thread, never by a request (workers read `Watched::is_up` alone).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use anygate_http::client::UpstreamConn;
use anygate_runtime::net::TcpStream;
use anygate_runtime::time;
use anygate_tls::MaybeTls as Wire;

use super::PoolTls;
use super::pool::Target;
use super::resilience::{Health, HealthPolicy, millis};

/// What a check does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// `GET path`; the status must be in one of the ranges.
    Http {
        /// The request target.
        path: Box<str>,
        /// Inclusive status ranges.
        expect: Box<[(u16, u16)]>,
    },
    /// A TCP connect (and the TLS handshake, if the pool speaks TLS).
    Tcp,
    /// A WebSocket opening handshake to `path`.
    WebSocket {
        /// The request target.
        path: Box<str>,
    },
}

/// A pool's `health:` settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckSpec {
    /// The check.
    pub kind: CheckKind,
    /// Between two checks of a target.
    pub interval: Duration,
    /// For one check (connect, handshake and answer).
    pub timeout: Duration,
    /// Failures in a row that take a target down.
    pub fall: u32,
    /// Successes in a row that bring it back.
    pub rise: u32,
}

/// One target's health as its checker last found it, read by the workers.
#[derive(Debug)]
pub struct Watched {
    up: AtomicBool,
    checked: AtomicBool,
    /// When it last came up (for slow start); 0: never went down.
    rejoined: AtomicU64,
    /// Why the last check failed ("" when it passed).
    last_error: Mutex<String>,
    label: String,
    spec: CheckSpec,
    target: Arc<Target>,
    tls: Option<Arc<PoolTls>>,
}

impl Watched {
    /// Whether the target may receive requests (true until the first check says).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// When it last came back up, on [`millis`]' scale (0: it never went down).
    pub fn rejoined(&self) -> u64 {
        self.rejoined.load(Ordering::Relaxed)
    }

    /// `"up"`, `"down"` or `"unchecked"`, and the last failure's reason.
    pub fn describe(&self) -> (&'static str, String) {
        let state = if !self.checked.load(Ordering::Acquire) {
            "unchecked"
        } else if self.is_up() {
            "up"
        } else {
            "down"
        };
        let why = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (state, why)
    }
}

#[derive(Default)]
struct Registry {
    cells: HashMap<(String, u32, CheckSpec), Weak<Watched>>,
    /// The checker's runtime, once started.
    runtime: Option<anygate_runtime::Handle>,
}

fn registry() -> &'static (Mutex<Registry>, Condvar) {
    static R: OnceLock<(Mutex<Registry>, Condvar)> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// The health cell of `target` in `pool` under `spec`: the existing one if a configuration
/// already checks it so, else a new one (checked from now on if the checker runs).
pub(crate) fn watch(
    pool: &str,
    target: &Arc<Target>,
    spec: &CheckSpec,
    tls: Option<Arc<PoolTls>>,
) -> Arc<Watched> {
    let (lock, _) = registry();
    let mut r = lock.lock().unwrap_or_else(PoisonError::into_inner);
    r.cells.retain(|_, w| w.strong_count() > 0);
    let key = (pool.to_owned(), target.id, spec.clone());
    if let Some(w) = r.cells.get(&key).and_then(Weak::upgrade) {
        return w;
    }
    let cell = Arc::new(Watched {
        up: AtomicBool::new(true),
        checked: AtomicBool::new(false),
        rejoined: AtomicU64::new(0),
        last_error: Mutex::new(String::new()),
        label: format!(
            "upstream {pool} target {}:{}",
            target.host.name(),
            target.host.port()
        ),
        spec: spec.clone(),
        target: target.clone(),
        tls,
    });
    r.cells.insert(key, Arc::downgrade(&cell));
    if let Some(rt) = &r.runtime {
        rt.spawn(run(cell.clone()));
    }
    cell
}

/// Starts the checker (once per process) and the checks of every cell already known.
pub fn start() -> std::io::Result<()> {
    let (lock, _) = registry();
    let mut r = lock.lock().unwrap_or_else(PoisonError::into_inner);
    if r.runtime.is_some() {
        return Ok(());
    }
    let rt = anygate_runtime::Runtime::builder()
        .workers(1)
        .thread_name("anygate-health")
        .build()?;
    let handle = rt.handle().clone();
    // The checker lives as long as the process.
    std::mem::forget(rt);
    for cell in r.cells.values().filter_map(Weak::upgrade) {
        handle.spawn(run(cell));
    }
    r.runtime = Some(handle);
    Ok(())
}

/// Waits until every cell has its first result, or `limit` has passed (the checker must
/// be started). Returns how many are still unchecked.
pub fn settle(limit: Duration) -> usize {
    let (lock, ready) = registry();
    let until = Instant::now() + limit;
    let mut r = lock.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let waiting = r
            .cells
            .values()
            .filter_map(Weak::upgrade)
            .filter(|c| !c.checked.load(Ordering::Acquire))
            .count();
        let now = Instant::now();
        if waiting == 0 || r.runtime.is_none() || now >= until {
            return waiting;
        }
        r = ready
            .wait_timeout(r, until - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// The longest first check of any live cell: what [`settle`] should allow.
pub fn settle_limit() -> Duration {
    let (lock, _) = registry();
    let r = lock.lock().unwrap_or_else(PoisonError::into_inner);
    r.cells
        .values()
        .filter_map(Weak::upgrade)
        .map(|c| c.spec.timeout)
        .max()
        .unwrap_or_default()
        + Duration::from_millis(200)
}

/// Checks `cell` every interval until no configuration refers to it.
async fn run(cell: Arc<Watched>) {
    let policy = HealthPolicy {
        fall: cell.spec.fall,
        rise: cell.spec.rise,
    };
    let mut health = Health::default();
    loop {
        let result = probe(&cell).await;
        let first = health.up.is_none();
        *cell
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = result.clone().err().unwrap_or_default();
        if let Some(up) = health.observe(&policy, result.is_ok()) {
            if up && !first {
                cell.rejoined.store(millis(time::now()), Ordering::Relaxed);
            }
            cell.up.store(up, Ordering::Relaxed);
            if !(first && up) {
                let (level, what) = if up {
                    (anygate_obs::log::Level::Info, "up".to_owned())
                } else {
                    (
                        anygate_obs::log::Level::Warn,
                        format!(
                            "down ({})",
                            result.as_ref().err().map_or("", |e| e.as_str())
                        ),
                    )
                };
                anygate_obs::log::server(level, &format!("{}: {what}", cell.label));
            }
        }
        if first {
            cell.checked.store(true, Ordering::Release);
            // Taken and dropped so that a waiter between its check and its wait sees this.
            drop(registry().0.lock().unwrap_or_else(PoisonError::into_inner));
            registry().1.notify_all();
        }
        // Alone: every configuration that checked it is gone.
        if Arc::strong_count(&cell) == 1 {
            return;
        }
        time::sleep(cell.spec.interval).await;
        if Arc::strong_count(&cell) == 1 {
            return;
        }
    }
}

/// The key of the WebSocket check (RFC 6455 §1.3's example) and the answer it must get.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// One check; the reason when it fails.
async fn probe(cell: &Watched) -> Result<(), String> {
    let deadline = time::now() + cell.spec.timeout;
    let target = &cell.target;
    let resolved = time::timeout_at(deadline, target.host.addrs())
        .await
        .map_err(|_| "name lookup timed out".to_owned())?;
    let addr = *resolved
        .addrs
        .first()
        .ok_or_else(|| "the name does not resolve".to_owned())?;
    let tcp = match time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err("connect timed out".to_owned()),
    };
    let wire = match &cell.tls {
        None => Wire::Plain(tcp),
        Some(tls) => {
            match time::timeout_at(deadline, tls.client.connect(tcp, target.host.name())).await {
                Ok(Ok((s, _))) => Wire::Tls(Box::new(s)),
                Ok(Err(e)) => return Err(format!("TLS handshake: {e}")),
                Err(_) => return Err("TLS handshake timed out".to_owned()),
            }
        }
    };
    let (path, ws) = match &cell.spec.kind {
        CheckKind::Tcp => return Ok(()),
        CheckKind::Http { path, .. } => (path, false),
        CheckKind::WebSocket { path } => (path, true),
    };
    let mut conn = UpstreamConn::new(wire, addr);
    let port = target.host.port();
    let host = target.host.name();
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nhost: {host}{}\r\nuser-agent: anygate-health\r\n",
        if port == 80 || port == 443 {
            String::new()
        } else {
            format!(":{port}")
        }
    );
    if ws {
        head.push_str(&format!(
            "connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: {WS_KEY}\r\n\r\n"
        ));
    } else {
        head.push_str("connection: close\r\n\r\n");
    }
    conn.write(head.as_bytes(), &[], deadline)
        .await
        .map_err(|e| format!("sending the check: {}", e.kind().message()))?;
    conn.read_head(false, deadline)
        .await
        .map_err(|e| format!("reading the answer: {}", e.kind().message()))?;
    let status = conn.head.status();
    match &cell.spec.kind {
        CheckKind::Http { expect, .. } => {
            if expect.iter().any(|&(lo, hi)| (lo..=hi).contains(&status)) {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
        _ if status != 101 => Err(format!("status {status}, not 101")),
        _ if conn.head.fields.get(b"sec-websocket-accept") != Some(WS_ACCEPT) => {
            Err("a 101 without the right Sec-WebSocket-Accept".to_owned())
        }
        _ => Ok(()),
    }
}
