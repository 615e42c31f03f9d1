//! The operating-system layer: every FFI call of the runtime lives below this module.
//!
//! Each `unsafe` block carries a `// SAFETY:` comment. Return values go through [`cvt`], the
//! one helper that turns the C convention (`-1` and `errno`) into `io::Result`.

pub(crate) mod epoll;
pub(crate) mod eventfd;
pub(crate) mod fs;
pub(crate) mod inotify;
pub(crate) mod process;
pub(crate) mod signalfd;
pub(crate) mod socket;

use std::io;

/// A syscall return value: `-1` means failure with the reason in `errno`.
pub(crate) trait IsMinusOne: Copy {
    fn is_minus_one(self) -> bool;
}

macro_rules! impl_is_minus_one {
    ($($t:ty),*) => { $(impl IsMinusOne for $t {
        fn is_minus_one(self) -> bool { self == -1 }
    })* };
}
impl_is_minus_one!(i32, i64, isize);

/// Converts a raw syscall result into `io::Result`, reading `errno` on `-1`.
pub(crate) fn cvt<T: IsMinusOne>(res: T) -> io::Result<T> {
    if res.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(res)
    }
}

/// Raises the soft limit on open files to the hard limit and returns the new soft limit.
///
/// A gateway holds two descriptors per proxied connection; the usual soft limit of 1024 is
/// too low for production and for the runtime's own 1 000-client tests.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit; raising the soft limit up to the hard one is allowed.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    }
    Ok(lim.rlim_cur)
}

/// Pins the calling thread to one CPU.
pub(crate) fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cpu index out of range",
        ));
    }
    // SAFETY: `cpu` was checked against CPU_SETSIZE above, so the bit is inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t and the size passed is its size; pid 0 is this thread.
    cvt(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}
