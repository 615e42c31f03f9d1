//! The admin listener (`admin.listen`, loopback by default): metrics, health, readiness,
//! the compiled routes, runtime figures, and reload.
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /health` | 200 while the process runs (liveness) |
//! | `GET /ready` | 200 when the configuration is loaded and every listener bound; 503 before, and while draining |
//! | `GET /metrics` | Prometheus text 0.0.4, or OpenMetrics 1.0 when `Accept` asks for it |
//! | `GET /routes` | the compiled rules with their actions and filter chains, as JSON |
//! | `GET /status` | version, start time, configuration file, rules, the last reload's outcome (what `anygate diagnose` reads) |
//! | `GET /debug/runtime` | workers, tasks, descriptors, connections, head memory, log queue |
//! | `POST /reload` | reloads the configuration file (bearer token of `admin.token`); a refused configuration is answered 422 with its errors, and not applied |
//!
//! It runs on threads of its own, never on a worker: a scrape or a reload never delays a
//! request, and a wedged admin client never holds a worker. One thread accepts; each
//! connection gets a short-lived thread (at most [`MAX_CLIENTS`] at once), reads one
//! request under one deadline for the whole head ([`HEAD_DEADLINE`], however slowly it
//! trickles in), answers with `Connection: close`. Above [`MAX_CLIENTS`], the accepting
//! thread still answers `/health` and `/ready` when the request is already there (a probe
//! sends it at once; it waits [`PROBE_WAIT`] at most), and 503 to anything else: clients
//! that hold connections open cannot make an orchestrator kill a healthy process. A
//! reload runs on the connection's thread, serialised with `SIGHUP` reloads.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::serve::{Core, Reloaded};

/// Admin connections served at once.
pub const MAX_CLIENTS: usize = 16;
/// How long a client has to send its whole request head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// How long a write of the answer may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Over [`MAX_CLIENTS`]: how long the accepting thread waits for a probe's request.
pub const PROBE_WAIT: Duration = Duration::from_millis(20);
/// The largest request head read.
const MAX_HEAD: usize = 8 << 10;

/// Starting: listeners not bound yet.
pub const STARTING: u8 = 0;
/// Serving.
pub const READY: u8 = 1;
/// Draining for shutdown.
pub const DRAINING: u8 = 2;

/// What the admin listener reads of the running server.
#[derive(Debug, Default)]
pub struct Shared {
    /// [`STARTING`], [`READY`] or [`DRAINING`].
    pub state: AtomicU8,
    /// The server, once started.
    pub core: OnceLock<Arc<Core>>,
    /// The bearer token `POST /reload` wants (`None`: reload refused).
    pub token: ArcSwapOption<Box<str>>,
    /// The configuration file reloads read.
    pub path: OnceLock<PathBuf>,
}

impl Shared {
    /// Whether `/ready` says yes.
    pub fn ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
            && self.core.get().is_some_and(|c| !c.draining())
    }
}

/// The running admin listener.
#[derive(Debug)]
pub struct Admin {
    addr: SocketAddr,
    /// Written to (or dropped) to stop the accept loop: a wake-up by connecting could be
    /// taken by another process sharing the socket after an upgrade.
    stop: Option<io::PipeWriter>,
    /// A duplicate of the listening socket, for a binary upgrade.
    listener: std::os::fd::OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Admin {
    /// Binds `addr` (failing if another process holds it), or takes `inherited` (the
    /// socket a previous process bound, on an upgrade), and serves it from a thread.
    pub fn start(
        addr: SocketAddr,
        shared: Arc<Shared>,
        inherited: Option<TcpListener>,
    ) -> io::Result<Self> {
        let listener = match inherited {
            Some(l) => l,
            None => TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("admin.listen {addr}: {e}")))?,
        };
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let dup = std::os::fd::AsFd::as_fd(&listener).try_clone_to_owned()?;
        let (stop_rx, stop) = io::pipe()?;
        let thread = anygate_runtime::signal::spawn_side_thread("anygate-admin", move || {
            accept_loop(&listener, &shared, &stop_rx);
        })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            listener: dup,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening socket, for a new binary to inherit.
    pub fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.listener)
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        // Closing the pipe's write end makes it readable (end of file): the loop stops.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, stop: &io::PipeReader) {
    use std::os::fd::AsFd;
    static CLIENTS: AtomicUsize = AtomicUsize::new(0);
    loop {
        let Ok(ready) =
            anygate_runtime::process::wait_readable(&[listener.as_fd(), stop.as_fd()], None)
        else {
            return;
        };
        if ready.get(1) == Some(&true) {
            return;
        }
        let mut conn = match listener.accept() {
            Ok((c, _)) => c,
            // Taken by another process sharing the socket, or interrupted.
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                continue;
            }
            Err(_) => {
                // Out of descriptors: let the clients in flight finish.
                std::thread::park_timeout(Duration::from_millis(50));
                continue;
            }
        };
        let _ = conn.set_nonblocking(false);
        if CLIENTS.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            CLIENTS.fetch_sub(1, Ordering::AcqRel);
            answer_probe(&mut conn, shared);
            continue;
        }
        let _ = conn.set_write_timeout(Some(WRITE_TIMEOUT));
        let shared = shared.clone();
        let spawned = anygate_runtime::signal::spawn_side_thread("anygate-admin-conn", move || {
            // Released even if serving panics: a leaked slot would end in a listener
            // that answers only 503.
            struct Slot;
            impl Drop for Slot {
                fn drop(&mut self) {
                    CLIENTS.fetch_sub(1, Ordering::AcqRel);
                }
            }
            let _slot = Slot;
            serve(&mut conn, &shared);
        });
        // A thread that could not start never ran its slot's guard.
        if spawned.is_err() {
            CLIENTS.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Over capacity, on the accepting thread: `/health` and `/ready` when their request is
/// already in (a probe's is), else 503. Bounded by [`PROBE_WAIT`] for the read and the
/// write each.
fn answer_probe(conn: &mut TcpStream, shared: &Shared) {
    let _ = conn.set_write_timeout(Some(PROBE_WAIT));
    let busy = || error(503, "AG-ADM-5030", "too many admin clients; try again");
    let answer = match read_request(conn, PROBE_WAIT) {
        Ok(req) if matches!(req.path.as_str(), "/health" | "/ready") => {
            let a = route(&req, shared);
            return drop(respond(conn, &a, req.method == "HEAD"));
        }
        _ => busy(),
    };
    let _ = respond(conn, &answer, false);
}

/// A response: status, content type, body, extra fields.
#[derive(Debug)]
pub struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    extra: Vec<(&'static str, String)>,
}

fn json(status: u16, value: &serde_json::Value) -> Answer {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    Answer {
        status,
        content_type: "application/json; charset=utf-8",
        body,
        extra: Vec::new(),
    }
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    }
}

/// Writes `a`; without its body for a `HEAD` request (`head_only`).
fn respond(conn: &mut TcpStream, a: &Answer, head_only: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n",
        a.status,
        reason(a.status),
        a.content_type,
        a.body.len()
    );
    for (name, value) in &a.extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    if !head_only {
        conn.write_all(&a.body)?;
    }
    conn.flush()
}

/// One parsed admin request.
#[derive(Debug)]
pub struct AdminRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, query removed.
    pub path: String,
    /// `Accept`.
    pub accept: String,
    /// `Authorization`.
    pub authorization: Option<String>,
}

/// Reads one request head within `within` (the whole head: a client trickling bytes does
/// not extend it); `Err(answer)` when it is malformed, too large or too slow.
#[allow(
    clippy::disallowed_methods,
    reason = "the admin listener's own threads, not the data path: the raw clock is fine"
)]
fn read_request(conn: &mut TcpStream, within: Duration) -> Result<AdminRequest, Answer> {
    let deadline = std::time::Instant::now() + within;
    let late = || error(408, "AG-ADM-4080", "the request did not arrive in time");
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            return Err(late());
        }
        let n = match conn.read(&mut buf[len..]) {
            Ok(0) => return Err(error(400, "AG-ADM-4000", "the request ended early")),
            Ok(n) => n,
            Err(_) => return Err(late()),
        };
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let field = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                };
                let target = req.path.unwrap_or("/");
                return Ok(AdminRequest {
                    method: req.method.unwrap_or("GET").to_owned(),
                    path: target.split('?').next().unwrap_or("/").to_owned(),
                    accept: field("accept").unwrap_or_default(),
                    authorization: field("authorization"),
                });
            }
            Ok(httparse::Status::Partial) if len < buf.len() => {}
            Ok(httparse::Status::Partial) => {
                return Err(error(431, "AG-ADM-4310", "the request head is too large"));
            }
            Err(_) => return Err(error(400, "AG-ADM-4000", "malformed request")),
        }
    }
}

fn serve(conn: &mut TcpStream, shared: &Shared) {
    let (answer, head_only) = match read_request(conn, HEAD_DEADLINE) {
        Ok(req) => (route(&req, shared), req.method == "HEAD"),
        Err(a) => (a, false),
    };
    let _ = respond(conn, &answer, head_only);
}

/// Answers one admin request.
pub fn route(req: &AdminRequest, shared: &Shared) -> Answer {
    let get = req.method == "GET" || req.method == "HEAD";
    let allow = |methods: &'static str| {
        let mut a = error(
            405,
            "AG-ADM-4050",
            &format!("{} is not allowed here", req.method),
        );
        a.extra.push(("allow", methods.to_owned()));
        a
    };
    match req.path.as_str() {
        "/health" if get => json(200, &serde_json::json!({"status": "ok"})),
        "/ready" if get => {
            let state = match shared.state.load(Ordering::Acquire) {
                STARTING => "starting",
                _ if shared.ready() => "ready",
                _ => "draining",
            };
            let status = if state == "ready" { 200 } else { 503 };
            json(
                status,
                &serde_json::json!({"ready": status == 200, "state": state}),
            )
        }
        "/metrics" if get => metrics(req, shared),
        "/routes" if get => match shared.core.get() {
            Some(core) => json(200, &core.routes_json()),
            None => error(503, "AG-ADM-5031", "the server is still starting"),
        },
        "/status" if get => match shared.core.get() {
            Some(core) => json(200, &core.status_json()),
            None => json(200, &serde_json::json!({"state": "starting"})),
        },
        "/upstreams" if get => match shared.core.get() {
            Some(core) => json(200, &core.upstreams_json()),
            None => error(503, "AG-ADM-5031", "the server is still starting"),
        },
        "/debug/runtime" if get => match shared.core.get() {
            Some(core) => json(200, &core.runtime_json()),
            None => error(503, "AG-ADM-5031", "the server is still starting"),
        },
        "/reload" if req.method == "POST" => reload(req, shared),
        "/health" | "/ready" | "/metrics" | "/routes" | "/upstreams" | "/status"
        | "/debug/runtime" => allow("GET, HEAD"),
        "/reload" => allow("POST"),
        _ => error(404, "AG-ADM-4040", "no such admin endpoint"),
    }
}

fn metrics(req: &AdminRequest, shared: &Shared) -> Answer {
    let om = anygate_obs::metrics::wants_openmetrics(&req.accept);
    let (open, refused) = shared.core.get().map_or((0, 0), |c| c.connection_counts());
    let (targets, circuits) = shared
        .core
        .get()
        .map(|c| c.upstream_gauges())
        .unwrap_or_default();
    let certificates = shared
        .core
        .get()
        .map(|c| c.certificate_expiries())
        .unwrap_or_default();
    let mut body = String::with_capacity(16 << 10);
    anygate_obs::metrics::render(
        &mut body,
        om,
        &anygate_obs::metrics::Process {
            version: env!("CARGO_PKG_VERSION"),
            open_connections: open,
            refused_connections: refused,
            errors: anygate_pipeline::metrics::error_names(),
            ready: shared.ready(),
            upstream_targets: &targets,
            upstream_circuits: &circuits,
            certificates: &certificates,
        },
    );
    Answer {
        status: 200,
        content_type: anygate_obs::metrics::content_type(om),
        body: body.into_bytes(),
        extra: Vec::new(),
    }
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reload(req: &AdminRequest, shared: &Shared) -> Answer {
    let token = shared.token.load();
    let Some(token) = token.as_deref() else {
        let mut a = error(
            401,
            "AG-ADM-4011",
            "reload over the admin listener needs `admin.token` or `admin.token_file`",
        );
        a.extra.push((
            "www-authenticate",
            "Bearer realm=\"anygate-admin\"".to_owned(),
        ));
        return a;
    };
    let given = req
        .authorization
        .as_deref()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
        let mut a = error(401, "AG-ADM-4010", "a valid bearer token is required");
        a.extra.push((
            "www-authenticate",
            "Bearer realm=\"anygate-admin\"".to_owned(),
        ));
        return a;
    }
    let (Some(core), Some(path)) = (shared.core.get(), shared.path.get()) else {
        return error(
            503,
            "AG-ADM-5032",
            "this server was not started from a configuration file",
        );
    };
    match core.reload_file(path) {
        Reloaded::Done { rules, restart } => json(
            200,
            &serde_json::json!({"status": "reloaded", "rules": rules, "restart_needed": restart}),
        ),
        Reloaded::Busy => error(409, "AG-ADM-4090", "a reload is already in progress"),
        Reloaded::Refused(failure) => json(
            422,
            &serde_json::json!({
                "error": {
                    "code": "AG-ADM-4220",
                    "message": "the configuration is not valid; the running one stays",
                    "status": 422,
                },
                "diagnostics": crate::describe::diagnostics_json(&failure),
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn ready_says_starting_over_the_wire_until_the_listeners_are_bound() {
        // What a server has between starting its admin listener and binding the rest.
        let shared = Arc::new(Shared::default());
        let admin = Admin::start("127.0.0.1:0".parse().unwrap(), shared.clone(), None).unwrap();
        let r = ask(admin.addr(), b"GET /ready HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        assert!(r.contains("\"state\": \"starting\""), "{r}");
        assert!(r.contains("\"ready\": false"), "{r}");
        // Liveness holds from the start.
        assert!(ask(admin.addr(), b"GET /health HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
        assert!(!shared.ready());
    }
}
