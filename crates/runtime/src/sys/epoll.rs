//! Edge-triggered epoll.
//!
//! # The edge-triggered contract
//!
//! Every descriptor is registered once, for reading and writing, with `EPOLLET`. The kernel
//! then reports a *change* of readiness, not a level, which gives the rules every user of
//! [`crate::reactor`] follows:
//!
//! 1. **Drain to `WouldBlock`.** After a readiness event, read (or write, or accept) until the
//!    call returns `EWOULDBLOCK`. Only that result clears the cached readiness; stopping
//!    early is allowed only while the readiness stays cached, because no new edge will come
//!    for data that is already there.
//! 2. **Expect spurious wakeups.** A task woken for readiness may find nothing to do (another
//!    task drained it, or the event was for the other direction). It must retry the call and
//!    go back to waiting on `WouldBlock`, never assume data is there.
//! 3. **No re-arming.** Registrations are not `EPOLLONESHOT`; nothing is re-armed after an
//!    event. A registration lives from creation to drop; dropping removes it (`EPOLL_CTL_DEL`)
//!    before the descriptor is closed.
//!
//! Timeouts passed to [`Epoll::wait`] round *up* to the next millisecond, so a wait never
//! returns before the timer that asked for it is due.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::cvt;

/// Readable, writable and peer-closed, edge-triggered.
const INTEREST: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes only flags.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Registers `fd` for both directions, edge-triggered, with `token` as its event data.
    pub(crate) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.add_with(fd, token, INTEREST)
    }

    /// Registers `fd` for readability only, edge-triggered (the worker's eventfd).
    pub(crate) fn add_readable(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.add_with(fd, token, (libc::EPOLLIN | libc::EPOLLET) as u32)
    }

    fn add_with(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: both descriptors are open and `ev` is a valid event for the call's duration.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: a null event pointer is allowed for EPOLL_CTL_DEL since Linux 2.6.9.
        let res = unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
        cvt(res)?;
        Ok(())
    }

    /// Waits for events; `None` waits forever. Interrupted waits return with no events.
    pub(crate) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let ms = timeout.map_or(-1, round_up_ms);
        let cap = i32::try_from(events.buf.len()).unwrap_or(i32::MAX);
        // SAFETY: `buf` holds `cap` initialised, writable epoll_event structs; the kernel
        // writes at most `cap` of them.
        let res =
            unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.buf.as_mut_ptr(), cap, ms) };
        match cvt(res) {
            Ok(n) => {
                events.len = usize::try_from(n).unwrap_or(0);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                events.len = 0;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Milliseconds for epoll_wait, rounded up so a timer is never woken early.
fn round_up_ms(d: Duration) -> i32 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    i32::try_from(ms).unwrap_or(i32::MAX)
}

/// A reusable buffer of events filled by [`Epoll::wait`].
pub(crate) struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    pub(crate) fn with_capacity(cap: usize) -> Self {
        Self {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; cap.max(1)],
            len: 0,
        }
    }

    /// `(token, event bits)` of the events of the last wait.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.buf[..self.len].iter().map(|ev| {
            // Copy out of the packed struct before use.
            let (token, bits) = (ev.u64, ev.events);
            (token, bits)
        })
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up() {
        assert_eq!(round_up_ms(Duration::from_nanos(1)), 1);
        assert_eq!(round_up_ms(Duration::from_micros(1_500)), 2);
        assert_eq!(round_up_ms(Duration::from_millis(3)), 3);
        assert_eq!(round_up_ms(Duration::ZERO), 0);
        assert_eq!(round_up_ms(Duration::from_secs(u64::MAX)), i32::MAX);
    }
}
