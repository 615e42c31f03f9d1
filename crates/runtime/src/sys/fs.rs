//! File FFI: opening a path without ever leaving a directory.
//!
//! `openat2(2)` with `RESOLVE_BENEATH` does it in one call (Linux 5.6+). Where it is missing
//! (`ENOSYS`) or filtered (`EPERM` from a seccomp profile), the path is walked one component
//! at a time with `openat(O_NOFOLLOW)`, which refuses every symlink, inside or not.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::cvt;

/// Set once `openat2` answered `ENOSYS`: the kernel does not have it.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Flags for every open: read-only, not inherited, no controlling terminal, and
/// non-blocking so that a FIFO or a device node cannot stall the worker (no effect on
/// regular files and directories).
const FLAGS: i32 = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;

/// Opens `path` (relative) read-only beneath `dir`, refusing any resolution that leaves it.
/// Errors are normalised: a magic link (`ELOOP`) is an escape like `EXDEV`; a socket
/// (`ENXIO`) is as absent as a missing file.
pub(crate) fn open_beneath(dir: &File, path: &[u8]) -> io::Result<File> {
    normalise(open_any(dir, path))
}

fn open_any(dir: &File, path: &[u8]) -> io::Result<File> {
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match openat2_beneath(dir, path) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            other => return other,
        }
    }
    open_walk(dir, path)
}

/// [`open_walk`] with the errors of [`open_beneath`].
pub(crate) fn open_walk_normalised(dir: &File, path: &[u8]) -> io::Result<File> {
    normalise(open_walk(dir, path))
}

fn normalise(r: io::Result<File>) -> io::Result<File> {
    r.map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => io::Error::from_raw_os_error(libc::EXDEV),
        Some(libc::ENXIO) => io::Error::from_raw_os_error(libc::ENOENT),
        _ => e,
    })
}

/// `openat2(dir, path, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`.
fn openat2_beneath(dir: &File, path: &[u8]) -> io::Result<File> {
    let path = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open_how is plain data (three integers); all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = FLAGS as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `dir` is an open descriptor, `path` a NUL-terminated string and `how` a valid
    // open_how whose size is passed; all outlive the call.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            size_of::<libc::open_how>(),
        )
    })?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The fallback: one `openat(O_NOFOLLOW)` per component. `.`, `..` and empty components are
/// refused with `EXDEV`, like `RESOLVE_BENEATH` refuses an escape; so is any symlink.
pub(crate) fn open_walk(dir: &File, path: &[u8]) -> io::Result<File> {
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    let mut current: Option<File> = None;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || *part == b"." || *part == b".." {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        let name = CString::new(*part).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let last = i + 1 == parts.len();
        let at = current.as_ref().unwrap_or(dir).as_raw_fd();
        // Components before the last only need to be searched: O_PATH asks for no read
        // permission (an execute-only directory works) and opens nothing but the inode.
        let flags = if last {
            FLAGS | libc::O_NOFOLLOW
        } else {
            libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW
        };
        // SAFETY: `at` is an open descriptor (the directory or the previous component,
        // alive until this iteration ends) and `name` a NUL-terminated string.
        let fd = match cvt(unsafe { libc::openat(at, name.as_ptr(), flags) }) {
            Ok(fd) => fd,
            // A symlink under O_NOFOLLOW.
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(io::Error::from_raw_os_error(libc::EXDEV));
            }
            Err(e) => return Err(e),
        };
        // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        if !last {
            // O_PATH | O_NOFOLLOW opens a symlink itself rather than failing.
            let kind = file.metadata()?.file_type();
            if kind.is_symlink() {
                return Err(io::Error::from_raw_os_error(libc::EXDEV));
            }
            if !kind.is_dir() {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
        }
        current = Some(file);
    }
    current.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}
