//! eventfd: how a worker parked in `epoll_wait` is woken from another thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes an initial value and flags only.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Adds one to the counter, which makes the descriptor readable.
    pub(crate) fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`, which outlives the call.
        let res = unsafe { libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), 8) };
        // EAGAIN means the counter is saturated: the worker is going to wake anyway.
        let _ = cvt(res);
    }

    /// Resets the counter to zero so the next notify is a new edge.
    pub(crate) fn drain(&self) {
        let mut buf: u64 = 0;
        // SAFETY: reads at most 8 bytes into `buf`, which is 8 bytes long and writable.
        let res = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut buf).cast(), 8) };
        let _ = cvt(res);
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
