//! [`MaybeTls`]: a connection over plain TCP or TLS, as one type. An enum, not a
//! `dyn Transport`: the plain path stays a direct call (one branch), and
//!
//! - the server's connection driver is compiled once for both kinds of listener (two
//!   instantiations of it made the compiler stop inlining the request path into it:
//!   about 90 instructions more per plain request, measured with callgrind);
//! - a pooled upstream connection is one type whichever it is.

use std::fs::File;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use crate::TlsStream;
use anygate_runtime::net::TcpStream;
use anygate_runtime::transport::Transport;

/// A plain or TLS stream.
#[derive(Debug)]
pub enum MaybeTls {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream>),
}

/// Calls the `Transport` method `$m` of whichever stream it is.
macro_rules! each {
    ($self:ident.$m:ident($($a:expr),*)) => {
        match $self {
            MaybeTls::Plain(s) => <TcpStream as Transport>::$m(s, $($a),*),
            MaybeTls::Tls(s) => <TlsStream as Transport>::$m(s, $($a),*),
        }
    };
}

impl Transport for MaybeTls {
    #[inline]
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        each!(self.poll_read(cx, buf))
    }

    #[inline]
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.poll_read_ready(cx))
    }

    #[inline]
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        each!(self.poll_write(cx, buf))
    }

    #[inline]
    fn poll_writev(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self.poll_writev(cx, bufs))
    }

    #[inline]
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.poll_flush(cx))
    }

    #[inline]
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.poll_shutdown(cx))
    }

    #[inline]
    fn can_sendfile(&self) -> bool {
        each!(self.can_sendfile())
    }

    #[inline]
    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        file: &File,
        offset: &mut u64,
        count: usize,
    ) -> Poll<io::Result<usize>> {
        each!(self.poll_sendfile(cx, file, offset, count))
    }

    #[inline]
    fn set_cork(&mut self, on: bool) -> io::Result<()> {
        each!(self.set_cork(on))
    }

    #[inline]
    fn poll_peek(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        each!(self.poll_peek(cx, buf))
    }

    #[inline]
    fn peek_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(self.peek_now(buf))
    }
}
