//! [`Wire`]: what an upstream connection runs over, plain TCP or TLS. An enum, not a
//! `dyn Transport`: the plain path stays a direct call, and a pooled connection is one
//! type whichever it is.

use std::fs::File;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use anygate_runtime::net::TcpStream;
use anygate_runtime::transport::Transport;
use anygate_tls::TlsStream;

/// An upstream connection's stream.
#[derive(Debug)]
pub enum Wire {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream>),
}

/// Calls the `Transport` method `$m` of whichever stream it is.
macro_rules! each {
    ($self:ident.$m:ident($($a:expr),*)) => {
        match $self {
            Wire::Plain(s) => <TcpStream as Transport>::$m(s, $($a),*),
            Wire::Tls(s) => <TlsStream as Transport>::$m(s, $($a),*),
        }
    };
}

impl Transport for Wire {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        each!(self.poll_read(cx, buf))
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.poll_read_ready(cx))
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        each!(self.poll_write(cx, buf))
    }

    fn poll_writev(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self.poll_writev(cx, bufs))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.poll_flush(cx))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.poll_shutdown(cx))
    }

    fn can_sendfile(&self) -> bool {
        each!(self.can_sendfile())
    }

    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        file: &File,
        offset: &mut u64,
        count: usize,
    ) -> Poll<io::Result<usize>> {
        each!(self.poll_sendfile(cx, file, offset, count))
    }

    fn set_cork(&mut self, on: bool) -> io::Result<()> {
        each!(self.set_cork(on))
    }

    fn poll_peek(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        each!(self.poll_peek(cx, buf))
    }

    fn peek_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(self.peek_now(buf))
    }
}
