//! signalfd: Unix signals as a readable descriptor.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// A set of signal numbers.
#[derive(Clone, Copy)]
pub(crate) struct SigSet(libc::sigset_t);

impl SigSet {
    pub(crate) fn new(signals: &[i32]) -> io::Result<Self> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it fully.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable sigset_t.
        cvt(unsafe { libc::sigemptyset(&mut set) })?;
        for &sig in signals {
            // SAFETY: `set` is initialised; an invalid signal number is reported as EINVAL.
            cvt(unsafe { libc::sigaddset(&mut set, sig) })?;
        }
        Ok(Self(set))
    }

    /// Blocks these signals for the calling thread (threads it spawns inherit the mask).
    /// Returns the previous mask.
    pub(crate) fn block_current_thread(&self) -> io::Result<SigSet> {
        // SAFETY: sigset_t is plain data; pthread_sigmask fills it with the old mask.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `self.0` is an initialised sigset_t and `old` is writable.
        let res = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, &mut old) };
        if res == 0 {
            Ok(SigSet(old))
        } else {
            Err(io::Error::from_raw_os_error(res))
        }
    }

    /// Makes this set the calling thread's whole mask (to restore a saved one).
    pub(crate) fn set_current_thread_mask(&self) -> io::Result<()> {
        // SAFETY: `self.0` is an initialised sigset_t; the old mask is not requested.
        let res =
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
        if res == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(res))
        }
    }
}

#[derive(Debug)]
pub(crate) struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    pub(crate) fn new(set: &SigSet) -> io::Result<Self> {
        // SAFETY: -1 asks for a new descriptor; `set.0` is an initialised sigset_t.
        let fd =
            cvt(unsafe { libc::signalfd(-1, &set.0, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Reads one pending signal number; `WouldBlock` when none is pending.
    pub(crate) fn read(&self) -> io::Result<i32> {
        // SAFETY: signalfd_siginfo is plain data; all-zero is a valid value.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into `info`, which is exactly that large.
        let n = cvt(unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut info).cast(), size) })?;
        if usize::try_from(n).ok() != Some(size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "short signalfd read",
            ));
        }
        i32::try_from(info.ssi_signo)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad signal number"))
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
