//! The narrow adapter that lets tokio-io-based protocol crates (`h2`) run on this runtime.
//!
//! `h2` drives its connection through tokio's `AsyncRead`/`AsyncWrite` traits and needs
//! nothing else from tokio: no executor, no reactor, no timers. [`TokioIo`] implements those
//! two traits over any [`Transport`] of this runtime (today [`TcpStream`](crate::net::TcpStream); the
//! TLS stream later), so the rest of AnyGate never names a tokio type. The `tokio` dependency is built
//! with default features off: it contributes the trait definitions and `ReadBuf`, and no
//! runtime.
//!
//! Readiness, wake-ups and `WouldBlock` handling are the runtime's own (see
//! [`crate::reactor`]); the adapter only translates calls, `poll_flush` included (a TLS stream
//! buffers its records).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::transport::Transport;

/// A runtime stream seen through tokio's I/O traits.
#[derive(Debug)]
pub struct TokioIo<T> {
    inner: T,
}

impl<T> TokioIo<T> {
    /// Wraps a stream.
    pub fn new(inner: T) -> Self {
        Self { inner }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

/// Most bytes one read takes through the thread's scratch buffer.
const SCRATCH: usize = 16 * 1024;

thread_local! {
    /// Where reads land when the caller's buffer is not initialised: `h2` (tokio-util's
    /// framed reader) hands a fresh uninitialised `ReadBuf` of its whole spare capacity to
    /// every read, and zeroing that each time cost more than the rest of a small request
    /// (about 5 000 instructions, a sixth of an HTTP/2 request). Reading here and copying
    /// what arrived costs the bytes read, not the buffer's size.
    static READ_SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

impl<T: Transport> tokio::io::AsyncRead for TokioIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let want = buf.remaining().min(SCRATCH);
        if buf.initialized().len() - buf.filled().len() >= want {
            // Already initialised (a caller that reuses its buffer): read straight into it.
            let filled = buf.filled().len();
            let n = ready!(
                this.inner
                    .poll_read(cx, &mut buf.initialized_mut()[filled..])
            )?;
            buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        READ_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let n = ready!(this.inner.poll_read(cx, &mut scratch[..want]))?;
            buf.put_slice(&scratch[..n]);
            Poll::Ready(Ok(()))
        })
    }
}

impl<T: Transport> tokio::io::AsyncWrite for TokioIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().inner.poll_writev(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner.poll_shutdown(cx)
    }
}
