//! Zero-downtime binary upgrade on `SIGUSR2`, as nginx and HAProxy do it: the running
//! process starts the binary again (the file at the path it was started from, so a new
//! version installed over it) with its listening sockets inherited, waits until the new
//! process says it is ready, then stops accepting and drains. If the new process fails to
//! start, or is not ready in time, it is stopped and the old one keeps serving.
//!
//! # Protocol
//!
//! - `ANYGATE_LISTEN_FDS` names the inherited sockets:
//!   `KIND@ADDRESS=FD,FD;…`, KIND `http` (`server.listen`), `https` (`tls.listen`) or
//!   `admin`; ADDRESS as configured (so `127.0.0.1:0` stays a match); one descriptor per
//!   worker's listener (they share the address with `SO_REUSEPORT`, each with its own
//!   queue: every one is handed over, so that no queued connection is lost).
//! - `ANYGATE_UPGRADE_FD` is the write end of a pipe: the new process writes `READY\n`
//!   once every listener is bound and the signals are taken over, then closes it. The old
//!   process reads it, within `server.shutdown_timeout` (at least 10 s).
//! - The new process adopts each inherited socket whose kind and address its configuration
//!   still lists (checked to be a listening TCP socket), binds whatever else it needs, and
//!   closes the inherited sockets it has no use for (logged).
//!
//! Connections the old process accepted finish there (its drain: idle keep-alive
//! connections close, requests in flight finish with `connection: close`); new ones are
//! accepted by the new process from the same sockets. Under systemd the old process sends
//! `MAINPID=` with the new process's id before draining.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anygate_runtime::process;

/// The variable naming the inherited listening sockets.
pub const LISTEN_FDS: &str = "ANYGATE_LISTEN_FDS";
/// The variable naming the readiness pipe.
pub const READY_FD: &str = "ANYGATE_UPGRADE_FD";

/// Listening sockets handed over by the process that started this one.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: Vec<(String, SocketAddr, Vec<std::net::TcpListener>)>,
}

impl Inherited {
    /// The sockets `ANYGATE_LISTEN_FDS` names (none without it), taken once per process:
    /// a second server started in the same process (an embedding program) gets none, so
    /// that no descriptor has two owners. A malformed entry, a descriptor named twice or at
    /// most 2, the readiness pipe's number, or a descriptor that is not a listening socket
    /// is skipped with a warning.
    pub fn from_env() -> Self {
        let Some(value) = take_once(&LISTENERS_TAKEN, LISTEN_FDS) else {
            return Self::default();
        };
        let value = value.to_string_lossy();
        let ready = ready_fd_number();
        let mut seen = std::collections::BTreeSet::new();
        let mut sockets = Vec::new();
        for entry in value.split(';').filter(|e| !e.is_empty()) {
            match parse_entry(entry) {
                Some((kind, addr, fds)) => {
                    let mut adopted = Vec::new();
                    for fd in fds {
                        if Some(fd) == ready || !seen.insert(fd) {
                            crate::serve::warn(&format!(
                                "{LISTEN_FDS}: descriptor {fd} named twice; not used"
                            ));
                            continue;
                        }
                        match process::adopt_listener(fd) {
                            Ok(l) => adopted.push(l),
                            Err(e) => crate::serve::warn(&format!(
                                "{LISTEN_FDS}: descriptor {fd} for {kind}@{addr} not used: {e}"
                            )),
                        }
                    }
                    sockets.push((kind.to_owned(), addr, adopted));
                }
                None => {
                    crate::serve::warn(&format!(
                        "{LISTEN_FDS}: `{entry}` is not KIND@ADDRESS=FD,…"
                    ));
                }
            }
        }
        Self { sockets }
    }

    /// Takes the sockets inherited for `kind` at the configured `addr`.
    pub fn take(&mut self, kind: &str, addr: SocketAddr) -> Vec<std::net::TcpListener> {
        self.sockets
            .iter_mut()
            .find(|(k, a, _)| k == kind && *a == addr)
            .map(|(_, _, l)| std::mem::take(l))
            .unwrap_or_default()
    }

    /// Closes what was not taken; says what.
    pub fn close_rest(self) {
        for (kind, addr, listeners) in self.sockets {
            if !listeners.is_empty() {
                crate::serve::log(&format!(
                    "closing {} inherited {kind} socket(s) of {addr}: no longer configured",
                    listeners.len()
                ));
            }
        }
    }
}

fn parse_entry(entry: &str) -> Option<(&str, SocketAddr, Vec<i32>)> {
    let (name, fds) = entry.split_once('=')?;
    let (kind, addr) = name.split_once('@')?;
    let addr = addr.parse().ok()?;
    let fds = fds
        .split(',')
        .map(|f| f.parse().ok().filter(|&n: &i32| n > 2))
        .collect::<Option<Vec<_>>>()?;
    Some((kind, addr, fds))
}

static LISTENERS_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static READY_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The variable `name`, for the first caller in this process only.
fn take_once(flag: &std::sync::atomic::AtomicBool, name: &str) -> Option<OsString> {
    let value = std::env::var_os(name)?;
    (!flag.swap(true, std::sync::atomic::Ordering::AcqRel)).then_some(value)
}

/// The readiness pipe's number, if `ANYGATE_UPGRADE_FD` names a plausible one (above 2).
fn ready_fd_number() -> Option<i32> {
    std::env::var_os(READY_FD)?
        .to_str()?
        .parse()
        .ok()
        .filter(|&n: &i32| n > 2)
}

/// Tells the process that started this one, if it was an upgrade, that this one is ready
/// (once per process).
pub fn announce_ready() {
    if take_once(&READY_TAKEN, READY_FD).is_none() {
        return;
    }
    let Some(fd) = ready_fd_number() else {
        crate::serve::warn(&format!(
            "{READY_FD} does not name a descriptor above 2; ignored"
        ));
        return;
    };
    match process::adopt_pipe(fd) {
        Ok(mut pipe) => {
            if let Err(e) = pipe.write_all(b"READY\n") {
                crate::serve::warn(&format!("{READY_FD}: cannot tell the old process: {e}"));
            }
        }
        Err(e) => crate::serve::warn(&format!("{READY_FD}: {e}")),
    }
}

/// One address's sockets to hand over: duplicates, kept by the running server.
#[derive(Debug)]
pub struct Socket {
    /// `http`, `https` or `admin`.
    pub kind: &'static str,
    /// As configured.
    pub addr: SocketAddr,
    /// Its listeners.
    pub fds: Vec<OwnedFd>,
}

impl Socket {
    /// Duplicates of `listeners`' descriptors, under `kind` at the configured `addr`.
    pub fn of<'a>(
        kind: &'static str,
        addr: SocketAddr,
        listeners: impl IntoIterator<Item = BorrowedFd<'a>>,
    ) -> io::Result<Self> {
        let fds = listeners
            .into_iter()
            .map(|fd| fd.try_clone_to_owned())
            .collect::<io::Result<_>>()?;
        Ok(Self { kind, addr, fds })
    }
}

/// The child's exit status if it exits within `limit`.
fn exit_within(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = anygate_runtime::time::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if anygate_runtime::time::now() < deadline => {
                std::thread::park_timeout(Duration::from_millis(5));
            }
            _ => return None,
        }
    }
}

/// Starts `exe args` with `sockets` inherited and waits, at most `within`, for it to be
/// ready. Its process id, or why it did not come up (it has then been stopped).
pub fn start_new(
    exe: &Path,
    args: &[OsString],
    sockets: &[Socket],
    within: Duration,
) -> Result<u32, String> {
    // Duplicates without close-on-exec, for the child only: the originals keep it.
    let mut dups: Vec<OwnedFd> = Vec::new();
    let mut names = Vec::new();
    for s in sockets {
        let mut fds = Vec::new();
        for fd in &s.fds {
            let dup = fd.try_clone().map_err(|e| format!("dup: {e}"))?;
            process::inherit(&dup).map_err(|e| format!("fcntl: {e}"))?;
            fds.push(dup.as_raw_fd().to_string());
            dups.push(dup);
        }
        names.push(format!("{}@{}={}", s.kind, s.addr, fds.join(",")));
    }
    let (mut ready, ready_w) = io::pipe().map_err(|e| format!("pipe: {e}"))?;
    process::inherit(&ready_w).map_err(|e| format!("fcntl: {e}"))?;
    let mut child = Command::new(exe)
        .args(args)
        .env(LISTEN_FDS, names.join(";"))
        .env(READY_FD, ready_w.as_raw_fd().to_string())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    // Only the child holds these now: its exit closes the pipe.
    drop(dups);
    drop(ready_w);
    let pid = child.id();
    let readable =
        process::wait_readable(&[ready.as_fd()], Some(within)).map_err(|e| format!("poll: {e}"))?;
    let mut said = [0u8; 6];
    let ok = !readable.is_empty() && ready.read_exact(&mut said).is_ok() && &said == b"READY\n";
    if ok {
        return Ok(pid);
    }
    // The pipe closed without READY (the process is exiting) or the time ran out.
    let exited = if readable.is_empty() {
        child.try_wait().ok().flatten()
    } else {
        exit_within(&mut child, Duration::from_secs(2))
    };
    let reason = match exited {
        Some(status) => format!("the new process (pid {pid}) exited: {status}"),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            if readable.is_empty() {
                format!("the new process (pid {pid}) was not ready within {within:?}; stopped it")
            } else {
                format!(
                    "the new process (pid {pid}) closed its readiness pipe without saying it was ready; stopped it"
                )
            }
        }
    };
    Err(reason)
}
