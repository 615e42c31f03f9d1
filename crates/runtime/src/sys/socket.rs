//! Socket calls in the form the runtime needs, through socket2 (no `unsafe` of our own).

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::os::fd::AsFd;

/// `accept4` with `SOCK_NONBLOCK | SOCK_CLOEXEC`: one syscall per connection instead of three.
pub(crate) fn accept(listener: &impl AsFd) -> io::Result<(TcpStream, SocketAddr)> {
    let (socket, addr) =
        socket2::SockRef::from(listener).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    let addr = addr
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "peer is not an IP address"))?;
    Ok((socket.into(), addr))
}

/// The most Linux transfers in one `sendfile(2)` call.
pub(crate) const SENDFILE_MAX: usize = 0x7fff_f000;

/// `sendfile(2)` from `file` at `*offset`, at most `count` bytes; advances `*offset`.
pub(crate) fn sendfile(
    out: &impl AsFd,
    file: &File,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    let Some(count) = NonZeroUsize::new(count.min(SENDFILE_MAX)) else {
        return Ok(0);
    };
    let at = usize::try_from(*offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    let n = socket2::SockRef::from(out).sendfile(file, at, Some(count))?;
    *offset += n as u64;
    Ok(n)
}
