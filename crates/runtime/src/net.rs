//! TCP on the runtime's reactor.
//!
//! Sockets are non-blocking std sockets registered with the reactor of the worker that
//! created (or accepted) them. Every operation follows the edge-triggered contract of
//! [`crate::sys::epoll`]: try the syscall, and wait for readiness only on `WouldBlock`.
//! Methods take `&self`, so one task can read while another writes the same stream.
//!
//! **One waiter per direction.** Each socket keeps one reader and one writer waker: at most
//! one task may wait to read (or accept) and one to write at a time. Sharing a listener
//! between several accepting tasks loses wake-ups; give each worker its own listener with
//! [`ListenerOptions::reuse_port`] instead.

use std::fs::File;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, Socket, Type};

use crate::reactor::{Direction, Registration};
use crate::sys;

/// Options for a listening socket.
#[derive(Clone, Debug)]
pub struct ListenerOptions {
    backlog: i32,
    reuse_port: bool,
    nodelay: bool,
    ipv6_only: Option<bool>,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        Self {
            backlog: 4096,
            reuse_port: false,
            nodelay: true,
            ipv6_only: None,
        }
    }
}

impl ListenerOptions {
    /// The accept queue length (default 4096; the kernel caps it at `somaxconn`).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// `SO_REUSEPORT`: several sockets (one per worker) bind the same address and the kernel
    /// spreads connections across them.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// `TCP_NODELAY` for accepted connections (default on). Set on the listener; Linux
    /// copies it to every accepted socket, so accepting costs no extra syscall.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// `IPV6_V6ONLY` for IPv6 addresses.
    pub fn ipv6_only(mut self, on: bool) -> Self {
        self.ipv6_only = Some(on);
        self
    }

    /// Binds and listens. Must be called inside a runtime.
    pub fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        if self.reuse_port {
            socket.set_reuse_port(true)?;
        }
        if let (Some(only), true) = (self.ipv6_only, addr.is_ipv6()) {
            socket.set_only_v6(only)?;
        }
        if self.nodelay {
            socket.set_tcp_nodelay(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(self.backlog)?;
        TcpListener::from_std(socket.into())
    }
}

/// A listening TCP socket.
#[derive(Debug)]
pub struct TcpListener {
    // Field order: the registration is dropped (EPOLL_CTL_DEL) before the socket closes.
    reg: Registration,
    inner: std::net::TcpListener,
}

impl TcpListener {
    /// Binds with the default [`ListenerOptions`].
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        ListenerOptions::default().bind(addr)
    }

    /// Adopts a bound, listening std socket (for example one handed over by a parent
    /// process during a binary upgrade). It is switched to non-blocking mode.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let reg = Registration::new(listener.as_raw_fd())?;
        Ok(Self {
            reg,
            inner: listener,
        })
    }

    /// Accepts a connection; the stream registers with the accepting worker's reactor.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = poll_fn(|cx| self.poll_accept_std(cx)).await?;
        Ok((TcpStream::from_nonblocking_std(stream)?, addr))
    }

    fn poll_accept_std(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(std::net::TcpStream, SocketAddr)>> {
        self.reg
            .poll_io(cx, Direction::Read, || sys::socket::accept(&self.inner))
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl std::os::fd::AsFd for TcpListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

/// A TCP connection.
#[derive(Debug)]
pub struct TcpStream {
    reg: Registration,
    inner: std::net::TcpStream,
}

impl TcpStream {
    /// Connects to `addr` without blocking the worker.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let stream = Self::from_nonblocking_std(socket.into())?;
        stream.writable().await?;
        if let Some(e) = stream.inner.take_error()? {
            return Err(e);
        }
        // A refused connection can also show as "not connected" here.
        stream.inner.peer_addr()?;
        Ok(stream)
    }

    /// Adopts a connected std stream, switching it to non-blocking mode.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Self::from_nonblocking_std(stream)
    }

    fn from_nonblocking_std(inner: std::net::TcpStream) -> io::Result<Self> {
        let reg = Registration::new(inner.as_raw_fd())?;
        Ok(Self { reg, inner })
    }

    /// Reads into `buf`; `Ok(0)` means the peer closed its side.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// Writes some of `buf`.
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_write(cx, buf)).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Gathers `bufs` into one `writev(2)`; returns the bytes written.
    pub async fn writev(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_writev(cx, bufs)).await
    }

    /// Sends up to `count` bytes of `file` from `*offset` with `sendfile(2)`, advancing
    /// `*offset`. Returns the bytes sent (0 at end of file).
    pub async fn sendfile(&self, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
        poll_fn(|cx| {
            self.reg.poll_io(cx, Direction::Write, || {
                sys::socket::sendfile(&self.inner, file, offset, count)
            })
        })
        .await
    }

    /// Polls a `sendfile(2)` of up to `count` bytes of `file` from `*offset` (advanced by
    /// what was sent). A short transfer clears write readiness, like a short write.
    pub fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: &File,
        offset: &mut u64,
        count: usize,
    ) -> Poll<io::Result<usize>> {
        let requested = count.min(sys::socket::SENDFILE_MAX);
        self.reg.poll_io_sized(cx, Direction::Write, requested, || {
            sys::socket::sendfile(&self.inner, file, offset, requested)
        })
    }

    /// Waits until the socket is readable (or closed, or in error).
    pub async fn readable(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_read_ready(cx)).await
    }

    /// Polls until the socket is readable (or closed, or in error).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.reg.poll_ready(cx, Direction::Read).map(|_| Ok(()))
    }

    /// Waits until the socket is writable (or closed, or in error).
    pub async fn writable(&self) -> io::Result<()> {
        poll_fn(|cx| self.reg.poll_ready(cx, Direction::Write).map(|_| Ok(()))).await
    }

    /// Polls a read.
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let requested = buf.len();
        self.reg
            .poll_io_sized(cx, Direction::Read, requested, || (&self.inner).read(buf))
    }

    /// Polls a peek: like [`TcpStream::poll_read`], but the bytes stay queued. `Ok(0)` means
    /// the peer closed its side. Used to notice a client that went away while its request is
    /// pending elsewhere, and a pooled connection that the peer closed while it was idle.
    pub fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.reg
            .poll_io(cx, Direction::Read, || self.inner.peek(buf))
    }

    /// Peeks without waiting and without the reactor's cached readiness: one
    /// `recv(MSG_PEEK)` on the (non-blocking) socket. `Ok(0)` means the peer closed;
    /// `WouldBlock` means nothing is there.
    pub fn peek_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.peek(buf)
    }

    /// Polls a write.
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let requested = buf.len();
        self.reg
            .poll_io_sized(cx, Direction::Write, requested, || (&self.inner).write(buf))
    }

    /// Polls a vectored write.
    pub fn poll_writev(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let requested = bufs.iter().map(|b| b.len()).sum();
        self.reg.poll_io_sized(cx, Direction::Write, requested, || {
            (&self.inner).write_vectored(bufs)
        })
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.inner.set_nodelay(on)
    }

    /// `TCP_CORK`: while set, only full segments leave; clearing it sends what is queued. A
    /// response head written before a `sendfile` body then shares the body's first segment,
    /// and no partial segment leaves between two transfers (nginx's `tcp_nopush`).
    pub fn set_cork(&self, on: bool) -> io::Result<()> {
        socket2::SockRef::from(&self.inner).set_tcp_cork(on)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.nodelay()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

/// Resolves `host:port` with the system resolver (`getaddrinfo`, which blocks) on a thread
/// of its own, so that no worker waits on DNS. Shorthand for [`Resolve::new`] and
/// [`Resolve::start`].
pub fn resolve(host: &str, port: u16) -> Resolve {
    let r = Resolve::new(host, port);
    r.start();
    r
}

/// A DNS lookup: the addresses in the resolver's order, or why there are none. Any number
/// of clones can await it (each keeps its own waker slot, replaced in place, released on
/// drop); the lookup runs to its end even if all of them are dropped.
#[derive(Debug)]
pub struct Resolve {
    shared: Arc<ResolveShared>,
    /// This clone's slot in the waker list, once it has polled.
    slot: Option<usize>,
}

impl Clone for Resolve {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            slot: None,
        }
    }
}

type Answer = Result<Vec<SocketAddr>, io::ErrorKind>;

#[derive(Debug)]
struct ResolveShared {
    host: String,
    port: u16,
    #[expect(
        clippy::disallowed_types,
        reason = "taken by the resolver thread once and by each poll of a DNS lookup, never per request"
    )]
    state: std::sync::Mutex<ResolveState>,
}

#[derive(Debug, Default)]
struct ResolveState {
    answer: Option<Answer>,
    wakers: Vec<Option<std::task::Waker>>,
}

impl ResolveShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ResolveState> {
        // Nothing panics while the lock is held; recover the data if something did.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn complete(&self, answer: Answer) {
        let wakers = {
            let mut state = self.lock();
            state.answer = Some(answer);
            std::mem::take(&mut state.wakers)
        };
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }
}

impl Resolve {
    /// A lookup of `host:port`, not started yet (so that a caller racing others can decide
    /// first whether it is the one to start it).
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            shared: Arc::new(ResolveShared {
                host: host.to_owned(),
                port,
                state: Default::default(),
            }),
            slot: None,
        }
    }

    /// Starts the lookup on its own thread (once per lookup: call it on one clone).
    pub fn start(&self) {
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("anygate-dns".into())
            .spawn(move || {
                let lookup = std::panic::catch_unwind(|| {
                    std::net::ToSocketAddrs::to_socket_addrs(&(shared.host.as_str(), shared.port))
                        .map(Iterator::collect)
                        .map_err(|e| e.kind())
                });
                shared.complete(lookup.unwrap_or(Err(io::ErrorKind::Other)));
            });
        if let Err(e) = spawned {
            self.shared.complete(Err(e.kind()));
        }
    }
}

impl Future for Resolve {
    type Output = Answer;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut state = this.shared.lock();
        if let Some(answer) = &state.answer {
            return Poll::Ready(answer.clone());
        }
        match this.slot {
            Some(i) if i < state.wakers.len() => state.wakers[i] = Some(cx.waker().clone()),
            _ => {
                this.slot = Some(state.wakers.len());
                state.wakers.push(Some(cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for Resolve {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut state = self.shared.lock();
            if let Some(w) = state.wakers.get_mut(i) {
                *w = None;
            }
        }
    }
}
