//! inotify: changes to directories, for a side thread that reloads when files change.
//!
//! Directories are watched rather than files: editors replace a file by renaming a new one
//! over it, and Kubernetes swaps a ConfigMap by renaming a `..data` symlink, so a watch on
//! the file itself would follow the old inode and miss the change.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use super::cvt;

/// What makes a watched directory worth a look: a file written and closed, created,
/// removed, renamed in or out, changed, or its attributes (a `chmod`, a `touch`).
const MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

/// An inotify instance watching directories.
#[derive(Debug)]
pub struct Watch {
    fd: OwnedFd,
}

impl Watch {
    /// A new instance with nothing watched.
    pub fn new() -> io::Result<Self> {
        // SAFETY: inotify_init1 takes flags only; a non-negative result is a new descriptor
        // this process owns.
        let fd = cvt(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) })?;
        // SAFETY: `fd` was just returned by inotify_init1 and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Watches `dir` (a directory) for changes to its entries.
    pub fn add(&self, dir: &Path) -> io::Result<()> {
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
        // SAFETY: the descriptor is an open inotify instance and `c` a NUL-terminated path.
        cvt(unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) })?;
        Ok(())
    }

    /// Waits up to `timeout` for changes; `true` when at least one arrived (every pending
    /// event is consumed: the caller looks at the files again rather than at the events).
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `pfd` is one valid pollfd and the count passed is 1.
        match cvt(unsafe { libc::poll(&mut pfd, 1, ms) }) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        let mut any = false;
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: `buf` is writable for its whole length, which is what is passed.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match cvt(n) {
                Ok(0) => return Ok(any),
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
