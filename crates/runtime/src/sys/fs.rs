//! File FFI: opening a path without ever leaving a directory (`openat2(2)`).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

use super::cvt;

/// Opens `path` (relative) read-only beneath `dir`, refusing any resolution that leaves it
/// (`..`, an absolute symlink, a symlink pointing outside) and magic links
/// (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`).
pub(crate) fn open_beneath(dir: &File, path: &[u8]) -> io::Result<File> {
    let path = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open_how is plain data (three integers); all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
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
