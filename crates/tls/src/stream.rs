//! [`TlsStream`]: a rustls connection (server or client) over a runtime [`TcpStream`],
//! as a [`Transport`].
//!
//! The buffered API, driven by hand:
//!
//! - **In**: `read_tls` reads straight from the socket into rustls' own buffer (the
//!   socket is wrapped in a `Read` whose `WouldBlock` means "the waker is registered"),
//!   `process_new_packets` decrypts, and plaintext is copied out of `reader()` into the
//!   caller's buffer. A read loops until plaintext, end of stream or `WouldBlock`: under
//!   edge triggering nothing may stop short of `WouldBlock` and then wait.
//! - **Out**: plaintext goes into `writer()` (vectored: a head and its body become one
//!   record), and `write_tls` pushes the records out with `writev`. Whatever rustls has
//!   to send (handshake flights, alerts, session tickets, key updates) is flushed after
//!   every processing step, before the stream waits for input.
//! - **Backpressure**: rustls buffers at most its buffer limit (64 KiB) of records; a write
//!   that finds it full flushes first and is `Pending` while the socket is.
//!
//! A peer that closes the TCP connection without `close_notify` ends the stream like a
//! `close_notify` would (`Ok(0)`): HTTP's own framing tells a truncated message from a
//! complete one, and browsers and curl routinely close that way.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::task::{Context, Poll, ready};

use anygate_runtime::net::TcpStream;
use anygate_runtime::transport::Transport;
use rustls::Connection;

/// A TLS connection over TCP. See the [module docs](self).
#[derive(Debug)]
pub struct TlsStream {
    tcp: TcpStream,
    tls: Connection,
    /// The TCP stream has ended (`read_tls` returned 0).
    eof: bool,
    /// A `close_notify` was queued (by [`Transport::poll_shutdown`]).
    closing: bool,
}

/// The socket as `Read`/`Write` for rustls: `Pending` becomes `WouldBlock`, with the
/// waker registered by the poll that returned it.
pub(crate) struct SyncIo<'a, 'b> {
    pub(crate) tcp: &'a TcpStream,
    pub(crate) cx: &'a mut Context<'b>,
}

fn pending_as_would_block<T>(p: Poll<io::Result<T>>) -> io::Result<T> {
    match p {
        Poll::Ready(r) => r,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl Read for SyncIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        pending_as_would_block(self.tcp.poll_read(self.cx, buf))
    }
}

impl Write for SyncIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        pending_as_would_block(self.tcp.poll_write(self.cx, buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        pending_as_would_block(self.tcp.poll_writev(self.cx, bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl TlsStream {
    pub(crate) fn new(tcp: TcpStream, tls: Connection) -> Self {
        Self {
            tcp,
            tls,
            eof: false,
            closing: false,
        }
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.tls
    }

    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Writes out everything rustls has queued; `Pending` while the socket is full.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            let mut io = SyncIo { tcp: &self.tcp, cx };
            match self.tls.write_tls(&mut io) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if would_block(&e) => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads one batch of TLS bytes and processes them. `Ready(Ok(()))` means progress (or
    /// the end of the stream, recorded in `eof`). A protocol error sends its alert (best
    /// effort) and fails.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = SyncIo { tcp: &self.tcp, cx };
        match self.tls.read_tls(&mut io) {
            Ok(0) => self.eof = true,
            Ok(_) => {}
            Err(e) if would_block(&e) => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        }
        if let Err(e) = self.tls.process_new_packets() {
            // The alert rustls queued for the peer says why.
            let _ = self.poll_flush_tls(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        // Handshake replies, tickets and key updates leave now; a full socket keeps them
        // queued for the next write or flush.
        if let Poll::Ready(Err(e)) = self.poll_flush_tls(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(()))
    }

    /// Drives the handshake to its end (every flight sent).
    pub(crate) fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_flush_tls(cx))?;
            if !self.tls.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// Whether decrypted bytes, or the end of the stream, wait to be read.
    fn has_input(&mut self) -> bool {
        match self.tls.process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            Err(_) => true,
        }
    }
}

impl Drop for TlsStream {
    /// A connection dropped without [`Transport::poll_shutdown`] (the driver closes most
    /// connections by dropping them) still sends `close_notify`, best effort: one
    /// non-blocking write, nothing if the socket is full. A client reading a response that
    /// ends with the connection needs it to tell the end from a truncation (OpenSSL 3
    /// reports "unexpected eof" without it).
    fn drop(&mut self) {
        if !self.closing && !self.tls.is_handshaking() {
            self.tls.send_close_notify();
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let _ = self.poll_flush_tls(&mut cx);
        }
    }
}

impl Transport for TlsStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if would_block(&e) => {}
                // The TCP stream ended without close_notify: an end like any other.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.eof {
                return Poll::Ready(Ok(0));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.eof || self.has_input() {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_writev(cx, &[IoSlice::new(buf)])
    }

    fn poll_writev(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        loop {
            // Accepts nothing while rustls holds its buffer limit of records.
            let n = self.tls.writer().write_vectored(bufs)?;
            match self.poll_flush_tls(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if n == 0 => return Poll::Pending,
                Poll::Ready(Ok(())) if n == 0 => continue,
                _ => return Poll::Ready(Ok(n)),
            }
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush_tls(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            self.tls.send_close_notify();
            self.closing = true;
        }
        ready!(self.poll_flush_tls(cx))?;
        Poll::Ready(match self.tcp.shutdown(Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        })
    }

    /// A pooled upstream connection is checked with a real peek of the socket: any byte
    /// there (a `close_notify`, an alert, stray data) or a close makes it unusable, as on
    /// plain TCP. Bytes rustls already holds count the same way.
    fn peek_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.eof || self.has_input() {
            return Ok(1);
        }
        self.tcp.peek_now(buf)
    }
}
