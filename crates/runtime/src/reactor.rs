//! The per-worker I/O reactor: one edge-triggered epoll instance per worker.
//!
//! # Design
//!
//! Each I/O object owns a [`Registration`]: an `Arc<ScheduledIo>` registered with the epoll
//! of the worker that created it. The epoll event's data is the `ScheduledIo`'s address; the
//! reactor holds one strong reference for as long as the descriptor is registered, so the
//! address stays valid for every event the kernel can still return.
//!
//! `ScheduledIo::readiness` packs the cached readiness bits and a *tick* into one atomic.
//! The reactor ORs new readiness in and bumps the tick. A task that hits `WouldBlock`
//! clears only the readiness it observed, and only if the tick has not moved since: an
//! event that arrived between its observation and its clear is never erased. This is what
//! lets a task migrate between workers (work stealing) without losing a wakeup, as in
//! tokio's `scheduled_io`.
//!
//! Deregistration may run on any thread: `EPOLL_CTL_DEL` first, then the reactor's
//! reference is queued on [`Reactor::release`]. The owning worker drops queued references
//! only at the start of its next turn, after it has finished the batch of events from its
//! previous `epoll_wait`; an event for a deleted descriptor can only be in such a batch.
//!
//! See [`crate::sys::epoll`] for the edge-triggered contract every user follows.

use std::io;
use std::os::fd::RawFd;
use std::task::{Context, Poll};
use std::time::Duration;

use crossbeam_queue::SegQueue;

use crate::loom::sync::Arc;
use crate::loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use crate::sys::epoll::{Epoll, Events};
use crate::sys::eventfd::EventFd;
use crate::util::atomic_waker::AtomicWaker;

/// The token of the worker's eventfd; `ScheduledIo` addresses are never 0.
const WAKE_TOKEN: u64 = 0;

pub(crate) const READABLE: usize = 0b0_0001;
pub(crate) const WRITABLE: usize = 0b0_0010;
pub(crate) const READ_CLOSED: usize = 0b0_0100;
pub(crate) const WRITE_CLOSED: usize = 0b0_1000;
pub(crate) const ERROR: usize = 0b1_0000;
const READY_MASK: usize = 0xffff;
const TICK_SHIFT: u32 = 16;
const TICK_MASK: usize = usize::MAX >> TICK_SHIFT;

/// Which half of a socket a task waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl Direction {
    /// The readiness bits that satisfy a waiter in this direction.
    fn mask(self) -> usize {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
        }
    }
}

/// Readiness observed by a task, with the tick at which it was observed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadyEvent {
    ready: usize,
    tick: usize,
}

/// The readiness state shared between the reactor and the tasks using one descriptor.
#[derive(Debug)]
pub(crate) struct ScheduledIo {
    /// `tick << 16 | ready bits`. Written by the reactor (set) and by tasks (clear).
    readiness: AtomicUsize,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl ScheduledIo {
    fn new() -> Self {
        Self {
            readiness: AtomicUsize::new(0),
            reader: AtomicWaker::new(),
            writer: AtomicWaker::new(),
        }
    }

    /// Called by the reactor for an epoll event: merge readiness, bump the tick, wake.
    fn set_readiness(&self, bits: u32) {
        let ready = ready_from_epoll(bits);
        let _ = self.readiness.fetch_update(AcqRel, Acquire, |cur| {
            let tick = ((cur >> TICK_SHIFT) + 1) & TICK_MASK;
            Some((tick << TICK_SHIFT) | (cur & READY_MASK) | ready)
        });
        if ready & Direction::Read.mask() != 0 {
            self.reader.wake();
        }
        if ready & Direction::Write.mask() != 0 {
            self.writer.wake();
        }
    }

    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<ReadyEvent> {
        if let Some(ev) = self.ready_event(dir) {
            return Poll::Ready(ev);
        }
        match dir {
            Direction::Read => self.reader.register(cx.waker()),
            Direction::Write => self.writer.register(cx.waker()),
        }
        // Re-check: an event may have been set between the first load and the register.
        match self.ready_event(dir) {
            Some(ev) => Poll::Ready(ev),
            None => Poll::Pending,
        }
    }

    fn ready_event(&self, dir: Direction) -> Option<ReadyEvent> {
        let cur = self.readiness.load(Acquire);
        let ready = cur & dir.mask();
        (ready != 0).then_some(ReadyEvent {
            ready,
            tick: cur >> TICK_SHIFT,
        })
    }

    /// Clears the readiness in `ev` unless a newer event arrived since it was observed.
    /// Closed bits are sticky; the error bit is cleared with the rest, so that an operation
    /// that answers `WouldBlock` despite `EPOLLERR` waits for the next event, not spins.
    pub(crate) fn clear_readiness(&self, ev: ReadyEvent) {
        let clear = ev.ready & (READABLE | WRITABLE | ERROR);
        let _ = self.readiness.fetch_update(AcqRel, Acquire, |cur| {
            ((cur >> TICK_SHIFT) == ev.tick).then_some(cur & !clear)
        });
    }
}

fn ready_from_epoll(bits: u32) -> usize {
    let has = |flag: i32| bits & (flag as u32) != 0;
    let mut ready = 0;
    if has(libc::EPOLLIN) || has(libc::EPOLLPRI) {
        ready |= READABLE;
    }
    if has(libc::EPOLLOUT) {
        ready |= WRITABLE;
    }
    if has(libc::EPOLLRDHUP) || has(libc::EPOLLHUP) {
        ready |= READ_CLOSED;
    }
    if has(libc::EPOLLHUP) {
        ready |= WRITE_CLOSED;
    }
    if has(libc::EPOLLERR) {
        ready |= ERROR;
    }
    ready
}

/// A `*const ScheduledIo` whose strong count the reactor owns (from `Arc::into_raw`).
struct Released(*const ScheduledIo);

// SAFETY: the pointer is an `Arc<ScheduledIo>` reference in transit to the owning worker,
// and `ScheduledIo` is Send + Sync.
unsafe impl Send for Released {}

/// One worker's reactor. Shared (`Arc`) so that any thread can register and deregister;
/// only the owning worker calls [`Reactor::turn`].
pub(crate) struct Reactor {
    epoll: Epoll,
    wake_fd: EventFd,
    /// Set when a wake-up is in flight, so concurrent unparks write the eventfd once.
    notified: AtomicBool,
    release: SegQueue<Released>,
    registered: AtomicUsize,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Self> {
        let epoll = Epoll::new()?;
        let wake_fd = EventFd::new()?;
        epoll.add_readable(std::os::fd::AsRawFd::as_raw_fd(&wake_fd), WAKE_TOKEN)?;
        Ok(Self {
            epoll,
            wake_fd,
            notified: AtomicBool::new(false),
            release: SegQueue::new(),
            registered: AtomicUsize::new(0),
        })
    }

    /// Wakes the owning worker out of `epoll_wait` (or makes its next wait return at once).
    pub(crate) fn unpark(&self) {
        if !self.notified.swap(true, AcqRel) {
            self.wake_fd.notify();
        }
    }

    /// Number of live registrations (a gauge for tests and metrics).
    pub(crate) fn registered(&self) -> usize {
        self.registered.load(Relaxed)
    }

    /// One reactor turn, on the owning worker only: release deregistered entries, wait for
    /// events (at most `timeout`), run `after_wait`, deliver readiness. Returns the number of
    /// I/O events.
    pub(crate) fn turn(
        &self,
        events: &mut Events,
        timeout: Option<Duration>,
        after_wait: impl FnOnce(),
    ) -> io::Result<usize> {
        self.drain_released();
        let res = self.epoll.wait(events, timeout);
        after_wait();
        res?;
        let mut n = 0;
        for (token, bits) in events.iter() {
            if token == WAKE_TOKEN {
                // Drain first, then clear: an unpark after the clear writes the eventfd
                // again, so it is never swallowed. One landing between the two finds the
                // worker awake, and the worker re-checks every queue before it parks.
                self.wake_fd.drain();
                self.notified.store(false, Release);
                continue;
            }
            n += 1;
            let ptr = token as usize as *const ScheduledIo;
            // SAFETY: `token` came from `Arc::into_raw` in `register`; the reactor's strong
            // reference is released only by `drain_released`, which runs before the next
            // wait and never while this batch is being processed (module docs).
            let io = unsafe { &*ptr };
            io.set_readiness(bits);
        }
        Ok(n)
    }

    /// Frees deregistered entries. Called by the owner before each wait, and by shutdown
    /// after every worker has been joined (no turn can run any more).
    pub(crate) fn drain_released(&self) {
        while let Some(Released(ptr)) = self.release.pop() {
            // SAFETY: `ptr` came from `Arc::into_raw` in `register`, was deleted from epoll
            // before being queued, and is released exactly once, here.
            drop(unsafe { Arc::from_raw(ptr) });
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        // The epoll instance dies with us; no further event can name a queued entry.
        self.drain_released();
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("registered", &self.registered())
            .finish()
    }
}

/// A descriptor's registration with one reactor. Drop it before closing the descriptor.
#[derive(Debug)]
pub(crate) struct Registration {
    io: Arc<ScheduledIo>,
    reactor: Arc<Reactor>,
    fd: RawFd,
}

impl Registration {
    /// Registers `fd` with the current worker's reactor (or one chosen round-robin when
    /// called from outside a worker, e.g. in `block_on`).
    pub(crate) fn new(fd: RawFd) -> io::Result<Self> {
        let reactor = crate::sched::context::reactor_for_new_io()?;
        Self::with_reactor(fd, reactor)
    }

    pub(crate) fn with_reactor(fd: RawFd, reactor: Arc<Reactor>) -> io::Result<Self> {
        let io = Arc::new(ScheduledIo::new());
        let ptr = Arc::into_raw(io.clone());
        if let Err(e) = reactor.epoll.add(fd, ptr as usize as u64) {
            // SAFETY: `ptr` came from `into_raw` above and was never shared with the kernel.
            drop(unsafe { Arc::from_raw(ptr) });
            return Err(e);
        }
        reactor.registered.fetch_add(1, Relaxed);
        Ok(Self { io, reactor, fd })
    }

    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<ReadyEvent> {
        self.io.poll_ready(cx, dir)
    }

    pub(crate) fn clear_readiness(&self, ev: ReadyEvent) {
        self.io.clear_readiness(ev);
    }

    /// Runs `op` when the descriptor is ready in `dir`, retrying after `WouldBlock`.
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let ev = std::task::ready!(self.poll_ready(cx, dir));
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_readiness(ev),
                res => return Poll::Ready(res),
            }
        }
    }
}

impl Registration {
    /// Like [`Registration::poll_io`] for a read or write of `requested` bytes: when the
    /// operation moves fewer bytes than asked, the socket is drained (or its buffer full),
    /// so the readiness is cleared at once and the next call waits for epoll instead of
    /// spending a syscall to learn `WouldBlock`. The tick check of `clear_readiness` keeps a
    /// readiness that arrived meanwhile. Only for stream sockets: a short read of a datagram
    /// says nothing about the queue. (TCP urgent data can stop a read early with more
    /// queued; the affected connection waits for its timeout.)
    pub(crate) fn poll_io_sized(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        requested: usize,
        mut op: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let ev = std::task::ready!(self.poll_ready(cx, dir));
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_readiness(ev),
                Ok(n) if n > 0 && n < requested => {
                    self.clear_readiness(ev);
                    return Poll::Ready(Ok(n));
                }
                res => return Poll::Ready(res),
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The descriptor is still open (owners drop the registration first). A failure
        // means it was closed already, which removed it from epoll too.
        let _ = self.reactor.epoll.delete(self.fd);
        self.reactor.registered.fetch_sub(1, Relaxed);
        // Drop the wakers now: the entry waits in the release queue until the owner's next
        // turn, and must not keep a task (and through it the runtime) alive.
        self.io.reader.take();
        self.io.writer.take();
        let ptr = Arc::as_ptr(&self.io);
        // Freed at the owner's next turn. No unpark: that would cost a syscall per close,
        // and a parked owner only holds a few bytes until it wakes.
        self.reactor.release.push(Released(ptr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as StdAtomic;
    use std::task::{Wake, Waker};

    struct Count(StdAtomic);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn clear_with_stale_tick_keeps_new_readiness() {
        let io = ScheduledIo::new();
        let count = Arc::new(Count(StdAtomic::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(io.poll_ready(&mut cx, Direction::Read).is_pending());
        io.set_readiness(libc::EPOLLIN as u32);
        assert_eq!(count.0.load(Relaxed), 1, "reader woken");
        let Poll::Ready(ev) = io.poll_ready(&mut cx, Direction::Read) else {
            panic!()
        };
        // A new edge arrives after the task observed readiness but before it cleared it.
        io.set_readiness(libc::EPOLLIN as u32);
        io.clear_readiness(ev);
        assert!(
            io.poll_ready(&mut cx, Direction::Read).is_ready(),
            "new edge not lost"
        );
        let Poll::Ready(ev) = io.poll_ready(&mut cx, Direction::Read) else {
            panic!()
        };
        io.clear_readiness(ev);
        assert!(io.poll_ready(&mut cx, Direction::Read).is_pending());
    }

    #[test]
    fn error_bit_is_cleared_on_would_block_so_poll_io_cannot_spin() {
        let io = ScheduledIo::new();
        io.set_readiness(libc::EPOLLERR as u32);
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(ev) = io.poll_ready(&mut cx, Direction::Read) else {
            panic!()
        };
        io.clear_readiness(ev);
        assert!(io.poll_ready(&mut cx, Direction::Read).is_pending());
    }

    #[test]
    fn closed_bits_are_sticky_and_wake_both_sides() {
        let io = ScheduledIo::new();
        io.set_readiness((libc::EPOLLHUP | libc::EPOLLIN) as u32);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let Poll::Ready(ev) = io.poll_ready(&mut cx, Direction::Read) else {
            panic!()
        };
        io.clear_readiness(ev);
        assert!(
            io.poll_ready(&mut cx, Direction::Read).is_ready(),
            "READ_CLOSED stays"
        );
        assert!(
            io.poll_ready(&mut cx, Direction::Write).is_ready(),
            "WRITE_CLOSED set"
        );
    }

    #[test]
    fn write_readiness_does_not_satisfy_readers() {
        let io = ScheduledIo::new();
        io.set_readiness(libc::EPOLLOUT as u32);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(io.poll_ready(&mut cx, Direction::Read).is_pending());
        assert!(io.poll_ready(&mut cx, Direction::Write).is_ready());
    }
}
