//! Process signals as an async stream (`signalfd`).
//!
//! Worker threads are created with `SIGHUP`, `SIGTERM`, `SIGINT`, `SIGUSR1` and `SIGUSR2` blocked (the runtime
//! blocks them on the spawning thread around the spawn, so there is no window in which a
//! new worker could take one), so those signals are never delivered to a worker. [`Signals::new`] blocks them on the calling thread too
//! and opens a `signalfd`; from then on they queue on the descriptor and [`Signals::recv`]
//! returns them. Call it from the main thread before spawning other threads of your own, so
//! that every thread of the process has them blocked (threads inherit the mask). Until it
//! is called, the default actions apply (a `SIGTERM` ends the process).

use std::future::poll_fn;
use std::io;
use std::os::fd::AsRawFd;

use crate::reactor::{Direction, Registration};
use crate::sys::signalfd::{SigSet, SignalFd};

/// The signals the runtime handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `SIGHUP`: reload.
    Hangup,
    /// `SIGTERM`: graceful shutdown.
    Terminate,
    /// `SIGINT`: graceful shutdown (Ctrl-C).
    Interrupt,
    /// `SIGUSR1`: reopen log files.
    User1,
    /// `SIGUSR2`: upgrade to a new binary.
    User2,
}

impl Signal {
    fn number(self) -> i32 {
        match self {
            Signal::Hangup => libc::SIGHUP,
            Signal::Terminate => libc::SIGTERM,
            Signal::Interrupt => libc::SIGINT,
            Signal::User1 => libc::SIGUSR1,
            Signal::User2 => libc::SIGUSR2,
        }
    }

    fn from_number(n: i32) -> Option<Self> {
        match n {
            libc::SIGHUP => Some(Signal::Hangup),
            libc::SIGTERM => Some(Signal::Terminate),
            libc::SIGINT => Some(Signal::Interrupt),
            libc::SIGUSR1 => Some(Signal::User1),
            libc::SIGUSR2 => Some(Signal::User2),
            _ => None,
        }
    }
}

const ALL: [Signal; 5] = [
    Signal::Hangup,
    Signal::Terminate,
    Signal::Interrupt,
    Signal::User1,
    Signal::User2,
];

/// Runs `f` (which spawns threads) with the handled signals blocked on the calling thread,
/// so the threads are born with them blocked; then restores the caller's mask.
pub(crate) fn with_handled_signals_blocked<R>(f: impl FnOnce() -> R) -> io::Result<R> {
    let nums: Vec<i32> = ALL.iter().map(|s| s.number()).collect();
    let old = SigSet::new(&nums)?.block_current_thread()?;
    let r = f();
    old.set_current_thread_mask()?;
    Ok(r)
}

/// Spawns a side thread (control-plane work: a file watcher, an exporter) born with the
/// handled signals blocked, like the workers: a thread without them blocked would take a
/// `SIGHUP` meant for [`Signals`] and die of it, taking the process with it.
pub fn spawn_side_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<std::thread::JoinHandle<T>> {
    let builder = std::thread::Builder::new().name(name.to_owned());
    with_handled_signals_blocked(|| builder.spawn(f))?
}

/// A stream of received signals.
#[derive(Debug)]
pub struct Signals {
    reg: Registration,
    fd: SignalFd,
}

impl Signals {
    /// Starts receiving `signals`. Must be called inside a runtime (e.g. in `block_on`).
    pub fn new(signals: &[Signal]) -> io::Result<Self> {
        let nums: Vec<i32> = signals.iter().map(|s| s.number()).collect();
        let set = SigSet::new(&nums)?;
        let _previous = set.block_current_thread()?;
        let fd = SignalFd::new(&set)?;
        let reg = Registration::new(fd.as_raw_fd())?;
        Ok(Self { reg, fd })
    }

    /// Waits for the next signal.
    pub async fn recv(&self) -> io::Result<Signal> {
        loop {
            let n = poll_fn(|cx| self.reg.poll_io(cx, Direction::Read, || self.fd.read())).await?;
            if let Some(sig) = Signal::from_number(n) {
                return Ok(sig);
            }
        }
    }
}
