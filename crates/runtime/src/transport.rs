//! The byte-stream seam: what the HTTP drivers, the upstream client and the tunnel need from
//! a connection, whatever carries it (plain TCP today; a TLS stream, or a test's in-memory
//! stream, tomorrow).
//!
//! # Contract
//!
//! - Methods take `&mut self`: a TLS stream mutates its session state on every call, and one
//!   connection is driven by one task. (`TcpStream`'s own methods take `&self`.)
//! - Every `poll_*` follows the runtime's edge-triggered rule: try the operation, and return
//!   `Pending` only once the waker is registered for the readiness that will make progress.
//! - Writes may be buffered by the transport: a caller that is done writing (before it
//!   waits to read, before it closes) calls [`Transport::poll_flush`] until it is ready.
//!   Plain TCP buffers nothing and is flushed at once.
//! - [`Transport::poll_read_ready`] waits for input without a buffer (an idle keep-alive
//!   connection holds none). It may be spurious: a read that then would block sends the
//!   caller back to waiting.
//!
//! # Optional capabilities
//!
//! `sendfile`, `TCP_CORK` and peeking exist on plain TCP only; a transport that cannot do
//! them keeps the default methods, which answer [`io::ErrorKind::Unsupported`], and callers
//! fall back (a file body is read and written; a peek is skipped). They are methods, not
//! separate traits, so one `dyn Transport` carries the answer.

use std::fs::File;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::task::{Context, Poll};

use crate::net::TcpStream;

/// A byte stream driven by one task. See the [module docs](self) for the contract.
pub trait Transport: Send + Unpin {
    /// Polls a read into `buf`; `Ok(0)` means the peer closed its side.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Polls until input may be there (or the stream closed or failed), without reading.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Polls a write of some of `buf`.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// Polls a vectored write. The default writes the first non-empty slice.
    fn poll_writev(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
        self.poll_write(cx, first)
    }

    /// Polls until every byte written so far has left for the peer.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Polls a close of the write side (after a flush).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Whether [`Transport::poll_sendfile`] works.
    fn can_sendfile(&self) -> bool {
        false
    }

    /// Polls a `sendfile(2)` of up to `count` bytes of `file` from `*offset` (advanced by
    /// what was sent; `Ok(0)` at the end of the file).
    fn poll_sendfile(
        &mut self,
        _cx: &mut Context<'_>,
        _file: &File,
        _offset: &mut u64,
        _count: usize,
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(unsupported()))
    }

    /// `TCP_CORK` (see [`TcpStream::set_cork`]).
    fn set_cork(&mut self, _on: bool) -> io::Result<()> {
        Err(unsupported())
    }

    /// Polls a peek: like a read, but the bytes stay queued; `Ok(0)` means the peer closed.
    fn poll_peek(&mut self, _cx: &mut Context<'_>, _buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(unsupported()))
    }

    /// A peek that does not wait (see [`TcpStream::peek_now`]).
    fn peek_now(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(unsupported())
    }
}

/// The error of a capability a transport does not have.
pub fn unsupported() -> io::Error {
    io::ErrorKind::Unsupported.into()
}

impl Transport for TcpStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        TcpStream::poll_read(self, cx, buf)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        TcpStream::poll_write(self, cx, buf)
    }

    fn poll_writev(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        TcpStream::poll_writev(self, cx, bufs)
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(match self.shutdown(Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        })
    }

    fn can_sendfile(&self) -> bool {
        true
    }

    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        file: &File,
        offset: &mut u64,
        count: usize,
    ) -> Poll<io::Result<usize>> {
        TcpStream::poll_sendfile(self, cx, file, offset, count)
    }

    fn set_cork(&mut self, on: bool) -> io::Result<()> {
        TcpStream::set_cork(self, on)
    }

    fn poll_peek(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        TcpStream::poll_peek(self, cx, buf)
    }

    fn peek_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::peek_now(self, buf)
    }
}
