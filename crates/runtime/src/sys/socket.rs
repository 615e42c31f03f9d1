//! Socket calls that std and socket2 do not offer in the form the runtime needs.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::cvt;

/// `accept4` with `SOCK_NONBLOCK | SOCK_CLOEXEC`: one syscall per connection instead of three.
pub(crate) fn accept(listener: &impl AsRawFd) -> io::Result<(TcpStream, SocketAddr)> {
    let mut fd = -1;
    // SAFETY: `try_init` hands us a zeroed sockaddr_storage and its length; accept4 writes at
    // most that length into it and updates the length.
    let ((), addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            // SAFETY: `storage` and `len` are valid for writes, as try_init documents.
            fd = cvt(libc::accept4(
                listener.as_raw_fd(),
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            ))?;
            Ok(())
        })?
    };
    // SAFETY: accept4 succeeded, so `fd` is a fresh descriptor that nothing else owns.
    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let addr = addr
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "peer is not an IP address"))?;
    Ok((stream, addr))
}

/// The most Linux transfers in one `sendfile(2)` call.
pub(crate) const SENDFILE_MAX: usize = 0x7fff_f000;

/// `sendfile(2)` from `file` at `*offset`, at most `count` bytes; advances `*offset`.
pub(crate) fn sendfile(
    out: &impl AsRawFd,
    file: &File,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(*offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    let count = count.min(SENDFILE_MAX);
    // SAFETY: both descriptors are open for the duration of the call and `off` is a valid,
    // writable off_t.
    let n = cvt(unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), &mut off, count) })?;
    *offset = u64::try_from(off).unwrap_or(*offset);
    Ok(usize::try_from(n).unwrap_or(0))
}
