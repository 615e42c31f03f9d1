//! inotify: changes to directories, for a side thread that reloads when files change.
//!
//! Directories are watched rather than files: editors replace a file by renaming a new one
//! over it, and Kubernetes swaps a ConfigMap by renaming a `..data` symlink, so a watch on
//! the file itself would follow the old inode and miss the change.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
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
    /// The instance, as a `File` so that its events are read without FFI.
    fd: std::fs::File,
}

impl Watch {
    /// A new instance with nothing watched.
    pub fn new() -> io::Result<Self> {
        // SAFETY: inotify_init1 takes flags only; a non-negative result is a new descriptor
        // this process owns.
        let fd = cvt(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) })?;
        // SAFETY: `fd` was just returned by inotify_init1 and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd: fd.into() })
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
        if super::process::wait_readable(&[self.fd.as_fd()], Some(timeout))?.is_empty() {
            return Ok(false);
        }
        let mut any = false;
        let mut buf = [0u8; 4096];
        loop {
            match io::Read::read(&mut &self.fd, &mut buf) {
                Ok(0) => return Ok(any),
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
