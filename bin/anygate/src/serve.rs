//! `anygate serve`: listeners, workers, reload on `SIGHUP`, graceful shutdown on
//! `SIGTERM`/`SIGINT`.
//!
//! Each listening address is bound once per worker with `SO_REUSEPORT`, so the kernel spreads
//! new connections over the workers' accept loops. A reload parses and validates the new
//! file completely (filter chains included), then swaps the application atomically
//! ([`Live::swap`]) and wakes idle connections so that they let go of the old one
//! ([`Drain::reconfigured`]); a failed reload leaves the running one untouched. Settings under `server` (addresses, workers, limits)
//! take effect at the next start; a reload that changes them says so.

use arc_swap::ArcSwap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anygate_config::{Config, Failure};
use anygate_http::server::accept_loop;
use anygate_http::{Acceptor, Drain, Limits};
use anygate_pipeline::{App, Live};
use anygate_plugins::Registry;
use anygate_runtime::net::{ListenerOptions, TcpListener};
use anygate_runtime::signal::{Signal, Signals};
use anygate_runtime::{Handle, Runtime, time};
use anygate_tls::{ServerSettings, TlsServer};

use anygate_obs::log::Level;

use crate::admin::{self, Admin};
use crate::notify::Notifier;
use crate::tls::{PlainAcceptor, TlsAcceptor, Watcher};

/// The TLS side of a running server, as reloads see it.
#[derive(Debug)]
struct TlsSide {
    server: Arc<TlsServer>,
    /// The settings served, shared with the watcher.
    settings: Arc<ArcSwap<ServerSettings>>,
    /// The bound TLS addresses.
    addrs: Vec<SocketAddr>,
    /// `tls.listen` as configured.
    listen: Vec<SocketAddr>,
}

/// What a running server shares between the signal loop and the admin listener: the
/// application, the drain, what reloads compare and swap.
#[derive(Debug)]
pub struct Core {
    live: Arc<Live>,
    drain: Arc<Drain>,
    handle: Handle,
    server_settings: anygate_config::Server,
    registry: Arc<Registry>,
    tls: Option<TlsSide>,
    /// `admin.listen` as started (`None`: no admin listener).
    admin_listen: Option<SocketAddr>,
    admin: Arc<admin::Shared>,
    /// Reloads of the file, one at a time.
    reloads: crate::serial::Serial,
    /// Held while a configuration is applied (see [`Core::reload`]).
    applying: ApplyLock,
    /// When the server started, and the last reload's outcome (`/status`).
    started: std::time::SystemTime,
    last_reload: arc_swap::ArcSwapOption<serde_json::Value>,
    /// What the configuration in use names ([`Core::referenced_files`]).
    referenced: ArcSwap<Vec<std::path::PathBuf>>,
    /// The ACME client's settings as started (a change needs a restart).
    acme: Option<anygate_acme::Settings>,
}

/// Taken while a configuration is applied.
#[allow(
    clippy::disallowed_types,
    reason = "control plane: reloads are rare and never on a worker"
)]
#[derive(Debug, Default)]
struct ApplyLock(std::sync::Mutex<()>);

/// What a reload of the configuration file did.
#[derive(Debug)]
pub enum Reloaded {
    /// Swapped in: its rule count, and the settings that wait for a restart.
    Done {
        /// Rules of the new configuration.
        rules: usize,
        /// `server` settings that changed but apply at the next start.
        restart: Vec<&'static str>,
    },
    /// Refused (invalid); the running configuration stays.
    Refused(Failure),
    /// Another reload is running (it will read the file again when done).
    Busy,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    rt: Runtime,
    core: Arc<Core>,
    addrs: Vec<SocketAddr>,
    shutdown_timeout: Duration,
    watcher: Option<Watcher>,
    admin: Option<Admin>,
    /// Duplicates of every listening socket, for a binary upgrade to hand over.
    sockets: Vec<crate::upgrade::Socket>,
    /// The ACME client, when `acme` is configured.
    acme: Option<anygate_acme::Acme>,
}

/// Why a server did not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration's filter chains do not compile.
    Config(Failure),
    /// A listener could not be bound, or the runtime not started.
    Io(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(failure) => write!(f, "{failure}"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for StartError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Fails when another process listens on `addr`. The workers' listeners share the address
/// with `SO_REUSEPORT`, which would let a second `anygate serve` on the same port start
/// and silently take a share of its connections; a probe bound without it fails instead
/// while anyone listens there (nginx refuses to start in that case too). Port 0 is never
/// taken. The probe closes before the workers bind: a process starting in that gap is not
/// caught.
fn not_held_elsewhere(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind(addr) {
        Ok(_probe) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            e.kind(),
            format!("{addr}: address already in use (another process listens on it)"),
        )),
        Err(e) => Err(io::Error::new(e.kind(), format!("{addr}: {e}"))),
    }
}

/// One configured address, bound.
struct Bound {
    configured: SocketAddr,
    actual: SocketAddr,
    listeners: Vec<TcpListener>,
}

/// Binds each address once per worker (`SO_REUSEPORT`, so the kernel spreads connections
/// over the workers' accept loops), first taking the sockets a previous process handed
/// over for it (an upgrade: those are kept, however many, since each has its own queue).
fn bind_all(
    kind: &str,
    listen: &[SocketAddr],
    workers: usize,
    inherited: &mut crate::upgrade::Inherited,
) -> io::Result<Vec<Bound>> {
    let mut bound = Vec::new();
    for &addr in listen {
        let mut listeners = Vec::new();
        for l in inherited.take(kind, addr) {
            listeners.push(TcpListener::from_std(l)?);
        }
        // Port 0 picks a port with the first bind; the other workers join it.
        let mut actual = match listeners.first() {
            Some(l) => l.local_addr()?,
            None => {
                not_held_elsewhere(addr)?;
                addr
            }
        };
        // With inherited sockets, serve from those alone: a process that dropped privileges
        // could not join them (SO_REUSEPORT wants the same owner), and tasks are shared
        // by every worker anyway.
        let want = if listeners.is_empty() {
            workers
        } else {
            listeners.len()
        };
        while listeners.len() < want {
            let listener = ListenerOptions::default()
                .reuse_port(true)
                .backlog(4096)
                .bind(actual)
                .map_err(|e| io::Error::new(e.kind(), format!("{actual}: {e}")))?;
            if listeners.is_empty() {
                actual = listener.local_addr()?;
            }
            listeners.push(listener);
        }
        bound.push(Bound {
            configured: addr,
            actual,
            listeners,
        });
    }
    Ok(bound)
}

/// Duplicates of `bound`'s sockets, for an upgrade.
fn dups(kind: &'static str, bound: &[Bound]) -> io::Result<Vec<crate::upgrade::Socket>> {
    use std::os::fd::AsFd;
    bound
        .iter()
        .map(|b| {
            crate::upgrade::Socket::of(kind, b.configured, b.listeners.iter().map(AsFd::as_fd))
        })
        .collect()
}

/// The HTTP limits of a configuration.
pub fn limits(config: &Config) -> Limits {
    let l = &config.server.limits;
    let t = &config.server.timeouts;
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Limits {
        max_head: size(l.max_head),
        max_uri: size(l.max_uri),
        max_headers: size(l.max_headers),
        max_body: l.max_body,
        max_connections: size(l.max_connections),
        max_connections_per_ip: size(l.max_connections_per_ip),
        head_memory: size(l.head_memory),
        head_timeout: t.head,
        idle_timeout: t.idle,
        body_timeout: t.body,
        allow_underscores: config.server.allow_underscores_in_headers,
        min_body_rate: anygate_http::MinRate {
            bytes_per_sec: u32::try_from(l.min_body_rate).unwrap_or(u32::MAX),
            grace: t.body_grace,
        },
        min_send_rate: anygate_http::MinRate {
            bytes_per_sec: u32::try_from(l.min_send_rate).unwrap_or(u32::MAX),
            grace: t.send_grace,
        },
        h2: h2_limits(config),
    }
}

/// `server.h2` and `server.h2c` as the driver takes them.
fn h2_limits(config: &Config) -> anygate_http::Http2 {
    let h = &config.server.h2;
    let n32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    anygate_http::Http2 {
        enabled: h.enabled,
        h2c: config.server.h2c,
        max_concurrent_streams: n32(h.max_concurrent_streams),
        initial_stream_window: n32(h.initial_stream_window),
        initial_connection_window: n32(h.initial_connection_window),
        max_frame_size: n32(h.max_frame_size),
        max_header_list_size: n32(h.max_header_list_size),
        max_send_buffer_size: size(h.max_send_buffer_size),
        max_pending_accept_reset_streams: size(h.max_pending_accept_reset_streams),
        max_local_error_reset_streams: size(h.max_local_error_reset_streams),
    }
}

/// A pool, a target state, and how many of the pool's targets are in it.
pub type TargetCount = (String, &'static str, u64);

/// Waits for the first result of every health check not yet answered (a new pool, or a
/// new target), at most as long as their timeouts: a target dead at start or after a
/// reload is out of rotation before the configuration serves a request.
fn settle_health_checks() {
    let waiting =
        anygate_actions::proxy::checker::settle(anygate_actions::proxy::checker::settle_limit());
    if waiting > 0 {
        warn(&format!(
            "{waiting} health check(s) did not answer in time; their targets count as up until they do"
        ));
    }
}

impl Server {
    /// Binds the listeners and starts serving `config` over plain TCP, with the built-in
    /// filter kinds.
    pub fn start(config: Config) -> Result<Self, StartError> {
        Self::start_with(config, Arc::new(PlainAcceptor), Registry::builtin())
    }

    /// Binds the listeners and starts serving `config`, each accepted connection prepared
    /// by `acceptor` (a TLS handshake, or a test's transport), with the filter kinds of
    /// `registry` (also used by reloads).
    pub fn start_with<A: Acceptor>(
        mut config: Config,
        acceptor: Arc<A>,
        registry: Registry,
    ) -> Result<Self, StartError> {
        // Names are resolved while root can still read every database; the drop comes
        // after the binds.
        let (drop_to, ignored) =
            crate::privilege::plan(&mut config, anygate_runtime::process::euid())
                .map_err(StartError::Config)?;
        if let Some(note) = ignored {
            warn(&note);
        }
        anygate_obs::log::set_server_format(log_format(&config));
        anygate_obs::otlp::configure(otlp_endpoint(&config));
        let workers = config.server.workers.count();
        let _ = anygate_runtime::raise_fd_limit();
        // The admin listener comes first: `/ready` says "starting" until the rest is bound.
        let shared = Arc::new(admin::Shared::default());
        shared.token.store(
            config
                .admin
                .as_ref()
                .and_then(|a| a.token.as_deref())
                .map(|t| Arc::new(Box::from(t))),
        );
        let mut inherited = crate::upgrade::Inherited::from_env();
        let admin = match &config.admin {
            Some(a) => {
                let socket = inherited.take("admin", a.listen.addr).into_iter().next();
                if socket.is_none() {
                    not_held_elsewhere(a.listen.addr)?;
                }
                Some(Admin::start(a.listen.addr, shared.clone(), socket)?)
            }
            None => None,
        };
        // Each worker gathers its access-log lines and hands them to the log writer once
        // per reactor turn (and once more when it stops, so no line is lost at exit).
        let rt = Runtime::builder()
            .workers(workers)
            .thread_name("anygate-worker")
            .on_thread_start(|_| anygate_obs::log::gather_on_this_thread())
            .on_turn(anygate_obs::log::hand_over)
            .on_thread_stop(|_| anygate_obs::log::hand_over())
            .build()?;
        let limits = Arc::new(limits(&config));
        let server_settings = config.server.clone();
        let shutdown_timeout = config.server.shutdown_timeout;
        let listen: Vec<SocketAddr> = config.server.listen.iter().map(|l| l.addr).collect();
        let tls_listen: Vec<SocketAddr> = config
            .tls
            .iter()
            .flat_map(|t| t.listen.iter().map(|l| l.addr))
            .collect();
        let admin_listen = config.admin.as_ref().map(|a| a.listen.addr);
        let (mut config, tls_built) = crate::tls::build(config).map_err(StartError::Config)?;
        let (tls_acceptor, tls_settings) = match tls_built {
            Some((server, settings)) => (
                Some(Arc::new(TlsAcceptor(Arc::new(server)))),
                Some(settings),
            ),
            None => (None, None),
        };
        let (plain, tls_bound) = rt.block_on(async {
            let plain = bind_all("http", &listen, workers, &mut inherited)?;
            let tls = match &tls_acceptor {
                Some(_) => bind_all("https", &tls_listen, workers, &mut inherited)?,
                None => Vec::new(),
            };
            io::Result::Ok((plain, tls))
        })?;
        inherited.close_rest();
        let mut sockets = dups("http", &plain)?;
        sockets.extend(dups("https", &tls_bound)?);
        if let (Some(a), Some(c)) = (&admin, &config.admin) {
            sockets.push(crate::upgrade::Socket::of(
                "admin",
                c.listen.addr,
                [a.socket()],
            )?);
        }
        if let Some(d) = &drop_to {
            crate::privilege::apply(d)?;
            log(&format!(
                "listeners bound; running as user {} (uid {}, gid {})",
                d.name, d.uid, d.gid
            ));
            crate::privilege::check_static_roots(&mut config).map_err(StartError::Config)?;
        }
        let addrs: Vec<SocketAddr> = plain.iter().map(|b| b.actual).collect();
        let tls_addrs: Vec<SocketAddr> = tls_bound.iter().map(|b| b.actual).collect();
        // The application sees the ports actually bound (port 0 picks one): the HTTPS
        // redirect names it.
        if let Some(t) = &mut config.tls {
            for (l, actual) in t.listen.iter_mut().zip(&tls_addrs) {
                l.addr = *actual;
            }
        }
        let referenced = crate::watch::references(&config);
        anygate_actions::proxy::checker::start()?;
        let acme_settings = tls_settings
            .as_ref()
            .and_then(|s| crate::acme::settings(&config, s));
        let app = App::new(config, &registry).map_err(StartError::Config)?;
        let app = crate::acme::answering(
            app,
            tls_acceptor.as_ref().map(|t| &*t.0),
            acme_settings.as_ref(),
        );
        // After the privilege drop: the storage directory belongs to the user served as.
        let acme = match (&acme_settings, &tls_acceptor) {
            (Some(settings), Some(tls)) => {
                let managed = tls.0.managed().clone();
                Some(
                    anygate_acme::Acme::start(settings.clone(), managed, |f| {
                        anygate_runtime::signal::spawn_side_thread("anygate-acme", f)
                    })
                    .map_err(|e| StartError::Io(io::Error::other(e)))?,
                )
            }
            _ => None,
        };
        settle_health_checks();
        let live = Arc::new(Live::new(app));
        let drain = Drain::new();
        rt.block_on(async {
            for b in plain {
                for l in b.listeners {
                    let (a, s) = (acceptor.clone(), live.clone());
                    rt.spawn(accept_loop(l, a, s, limits.clone(), drain.clone()));
                }
            }
            if let Some(a) = &tls_acceptor {
                for b in tls_bound {
                    for l in b.listeners {
                        let (a, s) = (a.clone(), live.clone());
                        rt.spawn(accept_loop(l, a, s, limits.clone(), drain.clone()));
                    }
                }
            }
        });
        let (tls, watcher) = match (tls_acceptor, tls_settings) {
            (Some(acceptor), Some(settings)) => {
                let settings = Arc::new(ArcSwap::from_pointee(settings));
                let watcher = Watcher::start(acceptor.0.clone(), settings.clone())?;
                (
                    Some(TlsSide {
                        server: acceptor.0.clone(),
                        settings,
                        addrs: tls_addrs,
                        listen: tls_listen,
                    }),
                    Some(watcher),
                )
            }
            _ => (None, None),
        };
        let core = Arc::new(Core {
            live,
            drain,
            handle: rt.handle().clone(),
            server_settings,
            registry: Arc::new(registry),
            tls,
            admin_listen,
            admin: shared.clone(),
            reloads: crate::serial::Serial::default(),
            applying: ApplyLock::default(),
            started: std::time::SystemTime::now(),
            last_reload: arc_swap::ArcSwapOption::empty(),
            referenced: ArcSwap::from_pointee(referenced),
            acme: acme_settings,
        });
        let _ = shared.core.set(core.clone());
        shared.state.store(admin::READY, Ordering::Release);
        Ok(Self {
            rt,
            core,
            addrs,
            shutdown_timeout,
            watcher,
            admin,
            sockets,
            acme,
        })
    }

    /// The bound TLS addresses, one per `tls.listen` entry.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        self.core.tls.as_ref().map_or(&[], |t| &t.addrs)
    }

    /// The bound addresses, one per `server.listen` entry.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The admin listener's address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::addr)
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        self.rt.handle()
    }

    /// The application being served.
    pub fn live(&self) -> &Live {
        &self.core.live
    }

    /// Serves `config` from now on. Returns the `server` settings that differ from the
    /// running ones (they need a restart), or why its filter chains do not compile (the
    /// running configuration then stays).
    pub fn reload(&self, config: Config) -> Result<Vec<&'static str>, Failure> {
        self.core.reload(config)
    }

    /// Stops accepting, lets in-flight requests finish (at most `server.shutdown_timeout`),
    /// then stops the workers. `true` when every connection closed in time.
    pub fn shutdown(self) -> bool {
        self.shutdown_unless(None, false)
    }

    /// Like [`Server::shutdown`], cut short by another signal from `signals` (a second
    /// Ctrl-C stops at once).
    /// `/ready` says `draining` from now on (the drain itself starts in `shutdown_unless`).
    fn mark_draining(&self) {
        self.core
            .admin
            .state
            .store(admin::DRAINING, Ordering::Release);
    }

    fn shutdown_unless(mut self, signals: Option<&Signals>, upgraded: bool) -> bool {
        if let Some(w) = &mut self.watcher {
            w.stop();
        }
        // An order under way is abandoned at its next wait (the lease is let go).
        if let Some(a) = &mut self.acme {
            a.stop();
        }
        // The copies kept for an upgrade go first: once the accept loops stop, nothing here
        // may hold a listening socket open (the kernel would keep completing handshakes
        // into its backlog, to be reset at exit). After an upgrade the new process has its
        // own copies.
        self.sockets.clear();
        if upgraded {
            // The new process answers on the shared admin socket from now on: this one
            // must not take its probes (it would say 503).
            drop(self.admin.take());
        }
        self.core
            .admin
            .state
            .store(admin::DRAINING, Ordering::Release);
        self.core.drain.start(self.rt.handle());
        let drained = self.rt.block_on(async {
            let closed = pin!(self.core.drain.closed());
            let again = pin!(async {
                match signals {
                    Some(s) => loop {
                        match s.recv().await {
                            Ok(Signal::Terminate | Signal::Interrupt) | Err(_) => {
                                log("second signal: stopping now");
                                break;
                            }
                            Ok(_) => {}
                        }
                    },
                    None => std::future::pending::<()>().await,
                }
            });
            let first = select(closed, again);
            matches!(time::timeout(self.shutdown_timeout, first).await, Ok(true))
        });
        self.rt.shutdown();
        // The admin listener answers `/ready` with 503 to the end of the drain.
        drop(self.admin.take());
        drained
    }

    /// Runs until `SIGTERM` or `SIGINT`, reloading `path` on `SIGHUP`, reopening log
    /// files on `SIGUSR1`, and upgrading to `exe` (started with `args`) on `SIGUSR2`
    /// ([`crate::upgrade`]; `true` with the signals when that succeeded). `ready` runs once
    /// the signals are taken over (before that, a `SIGHUP` would kill the process), so
    /// that announcing readiness there is safe.
    fn run_signals(
        &self,
        path: &Path,
        notify: &Notifier,
        exe: Option<(&Path, &[std::ffi::OsString])>,
        ready: impl FnOnce(),
    ) -> io::Result<(Signals, bool)> {
        let _ = self.core.admin.path.set(path.to_path_buf());
        self.rt.block_on(async {
            let signals = Signals::new(&[
                Signal::Hangup,
                Signal::Terminate,
                Signal::Interrupt,
                Signal::User1,
                Signal::User2,
            ])?;
            ready();
            loop {
                match signals.recv().await? {
                    Signal::Hangup => {
                        notify.send("RELOADING=1", "reloading the configuration");
                        let status = match self.core.reload_file(path) {
                            Reloaded::Done { .. } => "serving; configuration reloaded",
                            Reloaded::Refused(_) => {
                                "serving; the reload failed, the previous configuration stays"
                            }
                            Reloaded::Busy => "serving; a reload is in progress",
                        };
                        notify.send("READY=1", status);
                    }
                    Signal::User1 => {
                        anygate_obs::log::reopen();
                        log("log files reopened");
                    }
                    Signal::User2 => {
                        if self.upgrade(notify, exe) {
                            return Ok((signals, true));
                        }
                    }
                    Signal::Terminate | Signal::Interrupt => return Ok((signals, false)),
                }
            }
        })
    }
}

impl Server {
    /// Starts the new binary with the listening sockets and waits for it to be ready:
    /// `true` when it is (this process should drain now).
    fn upgrade(&self, notify: &Notifier, exe: Option<(&Path, &[std::ffi::OsString])>) -> bool {
        let Some((exe, args)) = exe else {
            error("SIGUSR2: cannot tell which binary to start; not upgrading");
            return false;
        };
        log(&format!(
            "SIGUSR2: starting {} with the listening sockets",
            exe.display()
        ));
        let within = self.shutdown_timeout.max(Duration::from_secs(10));
        match crate::upgrade::start_new(exe, args, &self.sockets, within) {
            Ok(pid) => {
                log(&format!(
                    "upgrade: the new process (pid {pid}) is ready; this one stops accepting and drains"
                ));
                notify.send(
                    &format!("MAINPID={pid}"),
                    "upgraded; the old process drains",
                );
                true
            }
            Err(reason) => {
                error(&format!(
                    "upgrade failed: {reason}; this process keeps serving"
                ));
                false
            }
        }
    }
}

impl Core {
    /// The files the configuration in use names (certificates, `*_file` arguments): what
    /// `server.watch` watches besides the configuration file.
    pub fn referenced_files(&self) -> Arc<Vec<std::path::PathBuf>> {
        self.referenced.load_full()
    }

    /// Whether a graceful shutdown has begun.
    pub fn draining(&self) -> bool {
        self.drain.is_draining()
    }

    /// Open client connections, and those refused over a limit since the start.
    pub fn connection_counts(&self) -> (u64, u64) {
        (
            self.drain.open_connections() as u64,
            self.drain.refused_connections(),
        )
    }

    /// Each served certificate's name and `notAfter`, for `/metrics`.
    pub fn certificate_expiries(&self) -> Vec<(String, i64)> {
        self.tls.as_ref().map_or_else(Vec::new, |t| {
            t.server
                .served()
                .into_iter()
                .map(|c| (c.name, c.not_after))
                .collect()
        })
    }

    /// Every pool's targets by state, and each pool's own circuit, for `/metrics`.
    pub fn upstream_gauges(&self) -> (Vec<TargetCount>, Vec<(String, bool)>) {
        let mut targets = Vec::new();
        let mut circuits = Vec::new();
        for p in self.live.current().upstream_states() {
            let mut counts: Vec<(&'static str, u64)> = Vec::new();
            for t in &p.targets {
                match counts.iter_mut().find(|(s, _)| *s == t.state) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((t.state, 1)),
                }
            }
            counts.sort_unstable();
            targets.extend(counts.into_iter().map(|(s, n)| (p.name.clone(), s, n)));
            if let Some(c) = p.circuit {
                circuits.push((p.name.clone(), c == "open"));
            }
        }
        (targets, circuits)
    }

    /// Every pool's targets and their state, as JSON (`/upstreams`).
    pub fn upstreams_json(&self) -> serde_json::Value {
        let pools: Vec<serde_json::Value> = self
            .live
            .current()
            .upstream_states()
            .into_iter()
            .map(|p| {
                let targets: Vec<serde_json::Value> = p
                    .targets
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "target": t.target,
                            "backup": t.backup,
                            "state": t.state,
                            "detail": t.detail,
                        })
                    })
                    .collect();
                serde_json::json!({"name": p.name, "circuit": p.circuit, "targets": targets})
            })
            .collect();
        serde_json::json!({ "pools": pools })
    }

    /// The compiled rules, as JSON (`/routes`).
    pub fn routes_json(&self) -> serde_json::Value {
        let app = self.live.current();
        let chain = |c: &anygate_plugins::Chain| -> Vec<serde_json::Value> {
            c.filters()
                .iter()
                .map(|f| serde_json::json!({"kind": f.kind(), "summary": f.summary()}))
                .collect()
        };
        let rules: Vec<serde_json::Value> = app
            .rules()
            .enumerate()
            .map(|(id, (label, action, c))| {
                serde_json::json!({
                    "id": id,
                    "rule": label,
                    "action": action,
                    "filters": chain(c),
                })
            })
            .collect();
        serde_json::json!({"rules": rules, "unmatched_filters": chain(app.global_chain())})
    }

    /// What a running instance says of itself (`/status`, read by `anygate diagnose`):
    /// version, start time, configuration file, rule count, the last reload's outcome.
    pub fn status_json(&self) -> serde_json::Value {
        let since = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "started_unix": since(self.started),
            "config": self.admin.path.get().map(|p| p.display().to_string()),
            "rules": self.live.current().rules().count(),
            "draining": self.drain.is_draining(),
            "last_reload": self.last_reload.load_full().as_deref().cloned(),
        })
    }

    fn note_reload(&self, result: &str, detail: serde_json::Value) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_reload.store(Some(Arc::new(
            serde_json::json!({"result": result, "at_unix": at, "detail": detail}),
        )));
    }

    /// The runtime's figures, as JSON (`/debug/runtime`).
    pub fn runtime_json(&self) -> serde_json::Value {
        let per_worker: Vec<serde_json::Value> = self
            .handle
            .worker_stats()
            .iter()
            .enumerate()
            .map(|(i, w)| {
                serde_json::json!({
                    "index": i,
                    "run_queue": w.queued,
                    "timers": w.timers,
                    "registered_descriptors": w.registered_io,
                })
            })
            .collect();
        serde_json::json!({
            "workers": self.handle.workers(),
            "per_worker": per_worker,
            "tasks": self.handle.live_tasks(),
            "registered_descriptors": self.handle.registered_io(),
            "open_connections": self.drain.open_connections(),
            "refused_connections": self.drain.refused_connections(),
            "head_memory_in_use_bytes": self.drain.head_memory_in_use(),
            "draining": self.drain.is_draining(),
            "log_queue": anygate_obs::log::queued(),
            "log_dropped_lines": anygate_obs::log::dropped(),
        })
    }

    /// Serves `config` from now on (see [`Server::reload`]).
    fn reload(&self, config: Config) -> Result<Vec<&'static str>, Failure> {
        // Every path to a swap (the file, the admin listener, an embedding program) applies
        // one configuration at a time: two builds racing would install in either order.
        let _one = self
            .applying
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.apply(config)
    }

    fn apply(&self, mut config: Config) -> Result<Vec<&'static str>, Failure> {
        let mut restart = Vec::new();
        let new = &config.server;
        let old = &self.server_settings;
        let listen = |s: &anygate_config::Server| -> Vec<SocketAddr> {
            s.listen.iter().map(|l| l.addr).collect()
        };
        if listen(new) != listen(old) {
            restart.push("server.listen");
        }
        if new.workers != old.workers {
            restart.push("server.workers");
        }
        if new.limits != old.limits || new.timeouts != old.timeouts {
            restart.push("server.limits/server.timeouts");
        }
        if new.allow_underscores_in_headers != old.allow_underscores_in_headers {
            restart.push("server.allow_underscores_in_headers");
        }
        if new.h2 != old.h2 || new.h2c != old.h2c {
            restart.push("server.h2/server.h2c");
        }
        if config.admin.as_ref().map(|a| a.listen.addr) != self.admin_listen {
            restart.push("admin.listen");
        }
        let new_tls_listen: Option<Vec<SocketAddr>> = config
            .tls
            .as_ref()
            .map(|t| t.listen.iter().map(|l| l.addr).collect());
        if new_tls_listen != self.tls.as_ref().map(|t| t.listen.clone()) {
            restart.push("tls.listen");
        } else if let (Some(t), Some(side)) = (&mut config.tls, &self.tls) {
            // The listeners stay: the application sees the ports they are bound to.
            for (l, actual) in t.listen.iter_mut().zip(&side.addrs) {
                l.addr = *actual;
            }
        }
        // Whether ACME runs is decided at the start: a reload that adds or removes `acme`
        // keeps the running state until the restart it asks for.
        let new_tls = config
            .tls
            .as_ref()
            .map(|t| crate::tls::settings(t, self.acme.is_some(), self.server_settings.h2.enabled));
        if let Some(settings) = &new_tls
            && crate::acme::settings(&config, settings) != self.acme
        {
            restart.push("acme");
        }
        // Both are built before either is swapped in: a failure of one keeps both old.
        let prepared = match (&self.tls, &new_tls, &config.tls) {
            (Some(side), Some(settings), Some(t)) => match side.server.prepare(settings) {
                Ok(prepared) => {
                    for d in crate::tls::diagnostics(t, prepared.warnings()) {
                        warn(&d.render(&config.sources));
                    }
                    Some(prepared)
                }
                Err(problems) => {
                    return Err(Failure {
                        diagnostics: crate::tls::diagnostics(t, &problems),
                        sources: config.sources,
                    });
                }
            },
            _ => None,
        };
        let format = log_format(&config);
        let otlp = otlp_endpoint(&config);
        let token = config
            .admin
            .as_ref()
            .and_then(|a| a.token.as_deref())
            .map(|t| Arc::new(Box::from(t)));
        let referenced = crate::watch::references(&config);
        let app = App::new(config, &self.registry)?;
        let app = crate::acme::answering(
            app,
            self.tls.as_ref().map(|t| &*t.server),
            self.acme.as_ref(),
        );
        // New health checks have their first answer before the configuration is served.
        settle_health_checks();
        self.referenced.store(Arc::new(referenced));
        if let (Some(side), Some(settings), Some(built)) = (&self.tls, new_tls, prepared) {
            side.server.install(built);
            side.settings.store(Arc::new(settings));
        }
        self.live.swap(app);
        self.admin.token.store(token);
        anygate_obs::log::set_server_format(format);
        anygate_obs::otlp::configure(otlp);
        self.drain.reconfigured(&self.handle);
        Ok(restart)
    }

    /// Reloads the configuration file at `path`, one reload at a time: a reload asked for
    /// while one runs makes that one read the file again when it is done
    /// ([`crate::serial::Serial`]).
    pub fn reload_file(&self, path: &Path) -> Reloaded {
        self.reloads
            .run(|| self.reload_file_once(path))
            .unwrap_or(Reloaded::Busy)
    }

    fn reload_file_once(&self, path: &Path) -> Reloaded {
        let result =
            anygate_config::load(path, &anygate_config::env_overrides()).and_then(|config| {
                for w in &config.warnings {
                    warn(&w.render(&config.sources));
                }
                let rules = config.routes.len();
                self.reload(config).map(|restart| (rules, restart))
            });
        match result {
            Ok((rules, restart)) => {
                anygate_obs::metrics::reload(true);
                self.note_reload(
                    "success",
                    serde_json::json!({"rules": rules, "restart_needed": restart}),
                );
                log(&format!("reloaded {}: {rules} rules", path.display()));
                if !restart.is_empty() {
                    log(&format!(
                        "changes to {} take effect after a restart",
                        restart.join(", ")
                    ));
                }
                Reloaded::Done { rules, restart }
            }
            Err(failure) => {
                anygate_obs::metrics::reload(false);
                self.note_reload(
                    "failure",
                    serde_json::json!({
                        "errors": failure.errors().count(),
                        "diagnostics": crate::describe::diagnostics_json(&failure),
                    }),
                );
                error(&failure.to_string());
                error(&format!(
                    "reload of {} failed ({} errors); still serving the previous configuration",
                    path.display(),
                    failure.errors().count()
                ));
                Reloaded::Refused(failure)
            }
        }
    }
}

/// Where `tracing.otlp.endpoint` sends spans, if anywhere.
fn otlp_endpoint(config: &Config) -> Option<anygate_obs::otlp::Endpoint> {
    let t = config.tracing.as_ref()?;
    let e = t.otlp.as_ref()?;
    Some(anygate_obs::otlp::Endpoint {
        authority: e.authority.clone(),
        path: e.path.clone(),
        service: t.service_name.clone(),
    })
}

fn log_format(config: &Config) -> anygate_obs::log::ServerFormat {
    match config.server.log_format {
        anygate_config::LogFormat::Text => anygate_obs::log::ServerFormat::Text,
        anygate_config::LogFormat::Json => anygate_obs::log::ServerFormat::Json,
    }
}

/// Completes with `true` when `a` does, `false` when `b` does first.
async fn select(
    mut a: std::pin::Pin<&mut impl Future<Output = ()>>,
    mut b: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> bool {
    std::future::poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(true);
        }
        b.as_mut().poll(cx).map(|()| false)
    })
    .await
}

/// The server log (through the log writer, in `server.log_format`).
pub(crate) fn log(message: &str) {
    anygate_obs::log::server(Level::Info, message);
}

pub(crate) fn warn(message: &str) {
    anygate_obs::log::server(Level::Warn, message);
}

pub(crate) fn error(message: &str) {
    anygate_obs::log::server(Level::Error, message);
}

/// Reports an invalid configuration at start: every diagnostic, then a count.
fn not_starting(path: &Path, failure: &Failure) -> ExitCode {
    error(&failure.to_string());
    error(&format!(
        "{} is not valid ({} errors); not starting",
        path.display(),
        failure.errors().count()
    ));
    ExitCode::from(1)
}

/// `anygate serve -c FILE`.
pub fn run(path: &Path) -> ExitCode {
    let mut config = match anygate_config::load(path, &anygate_config::env_overrides()) {
        Ok(c) => c,
        Err(failure) => return not_starting(path, &failure),
    };
    if let Err(failure) =
        crate::privilege::refuse_root(&mut config, anygate_runtime::process::euid())
    {
        return not_starting(path, &failure);
    }
    anygate_obs::log::set_server_format(log_format(&config));
    for w in &config.warnings {
        warn(&w.render(&config.sources));
    }
    let rules = config.routes.len();
    let watch = config.server.watch;
    let server = match Server::start(config) {
        Ok(s) => s,
        Err(StartError::Config(failure)) => return not_starting(path, &failure),
        Err(StartError::Io(e)) => {
            error(&format!("cannot start: {e}"));
            return ExitCode::from(1);
        }
    };
    let config_watch = if watch {
        match crate::watch::ConfigWatch::start(server.core.clone(), path.to_path_buf()) {
            Ok(w) => {
                log(&format!(
                    "server.watch: reloading when {} or a file it names changes",
                    path.display()
                ));
                Some(w)
            }
            Err(e) => {
                error(&format!("cannot start server.watch: {e}"));
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let notify = Notifier::from_env();
    // The binary to start on SIGUSR2: the path this one was started from, read now (once
    // a new version is installed over it, /proc/self/exe names the deleted file).
    let exe = std::env::current_exe().ok();
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let result = server.run_signals(
        path,
        &notify,
        exe.as_deref().map(|e| (e, &args[..])),
        || {
            for notice in server.live().current().notices() {
                warn(&notice);
            }
            if let Some(addr) = server.admin_addr() {
                log(&format!("admin listener on http://{addr}"));
            }
            for addr in server.addrs() {
                log(&format!(
                    "listening on http://{addr} ({rules} rules, {} workers)",
                    server.handle().workers()
                ));
            }
            for addr in server.tls_addrs() {
                log(&format!("listening on https://{addr}"));
            }
            notify.send("READY=1", "serving");
            crate::upgrade::announce_ready();
        },
    );
    drop(config_watch);
    let upgraded = matches!(result, Ok((_, true)));
    if !upgraded {
        // Not ready from before it says so (probes and tests read the line as the drain's
        // start). After an upgrade the new process answers the probes.
        server.mark_draining();
    }
    notify.send("STOPPING=1", "draining connections");
    log("shutting down");
    let drained = server.shutdown_unless(result.as_ref().ok().map(|(s, _)| s), upgraded);
    match result {
        Err(e) => {
            error(&format!("signal handling failed: {e}"));
            ExitCode::from(1)
        }
        Ok(_) if drained => {
            log("stopped");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            log("stopped; connections still open at the deadline were closed");
            ExitCode::SUCCESS
        }
    }
}
