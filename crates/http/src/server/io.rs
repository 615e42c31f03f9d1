//! Reads and writes bounded by a deadline, on the connection's one reusable timer, over any
//! [`Transport`]. Every write helper flushes before it reports success (a transport may
//! buffer), and a file body falls back to reads and writes where `sendfile` is missing.

use std::fs::File;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::task::Poll;
use std::time::{Duration, Instant};

use anygate_runtime::time::{self, Sleep};
use anygate_runtime::transport::Transport;

use crate::limits::MinRate;
use crate::server::Drain;
use crate::server::response::FileBody;

/// How a bounded read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// This many bytes were read.
    Data(usize),
    /// The peer closed its side.
    Eof,
    /// The deadline passed first.
    Timeout,
    /// The server is shutting down (only asked for while the connection is idle).
    Draining,
    /// A new configuration was announced (only while idle: see `Drain::reconfigured`).
    Reconfigured,
    /// Any I/O error (reset, ...).
    Error,
}

/// Makes `timer` fire no later than `deadline` ([`Sleep::arm`]).
pub(crate) fn arm(timer: &mut Sleep, deadline: Instant) {
    timer.arm(deadline);
}

/// Whether `deadline` has passed ([`Sleep::poll_expired`]).
pub(crate) fn expired(
    timer: &mut Sleep,
    deadline: Instant,
    cx: &mut std::task::Context<'_>,
) -> bool {
    timer.poll_expired(deadline, cx)
}

/// Reads into `buf` until data, end of stream, the deadline or (with `drain`) a shutdown.
pub(crate) fn read_until<'a, T: Transport + ?Sized>(
    stream: &'a mut T,
    buf: &'a mut [u8],
    timer: &'a mut Sleep,
    deadline: Instant,
    drain: Option<&'a Drain>,
) -> impl Future<Output = ReadOutcome> + 'a {
    arm(timer, deadline);
    poll_fn(move |cx| {
        if drain.is_some_and(Drain::is_draining) {
            return Poll::Ready(ReadOutcome::Draining);
        }
        loop {
            match stream.poll_read(cx, buf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(ReadOutcome::Eof),
                Poll::Ready(Ok(n)) => return Poll::Ready(ReadOutcome::Data(n)),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(ReadOutcome::Error),
                Poll::Pending => break,
            }
        }
        if expired(timer, deadline, cx) {
            Poll::Ready(ReadOutcome::Timeout)
        } else {
            Poll::Pending
        }
    })
}

/// Waits until the socket is readable (`Data(0)`), the deadline passes, a shutdown begins
/// (when `close_on_drain`),
/// or the reload counter is no longer `epoch`, without a buffer: an idle connection holds
/// none.
pub(crate) fn readable_until<'a, T: Transport + ?Sized>(
    stream: &'a mut T,
    timer: &'a mut Sleep,
    deadline: Instant,
    drain: &'a Drain,
    epoch: usize,
    close_on_drain: bool,
) -> impl Future<Output = ReadOutcome> + 'a {
    arm(timer, deadline);
    poll_fn(move |cx| {
        if close_on_drain && drain.is_draining() {
            return Poll::Ready(ReadOutcome::Draining);
        }
        if drain.epoch() != epoch {
            return Poll::Ready(ReadOutcome::Reconfigured);
        }
        match stream.poll_read_ready(cx) {
            Poll::Ready(Ok(())) => return Poll::Ready(ReadOutcome::Data(0)),
            Poll::Ready(Err(_)) => return Poll::Ready(ReadOutcome::Error),
            Poll::Pending => {}
        }
        if expired(timer, deadline, cx) {
            Poll::Ready(ReadOutcome::Timeout)
        } else {
            Poll::Pending
        }
    })
}

/// One read that does not wait: `Some(n)` (0 at the end of the stream or on an error), or
/// `None` when it would block (the socket's readiness is then cleared).
pub(crate) fn try_read<'a, T: Transport + ?Sized>(
    stream: &'a mut T,
    buf: &'a mut [u8],
) -> impl Future<Output = Option<usize>> + 'a {
    poll_fn(move |cx| {
        Poll::Ready(match stream.poll_read(cx, buf) {
            Poll::Ready(Ok(n)) => Some(n),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => None,
            Poll::Ready(Err(_)) => Some(0),
            Poll::Pending => None,
        })
    })
}

/// A write that would block: `Ready(false)` once the deadline has passed, else `Pending`
/// with the timer armed.
fn write_stalled(
    timer: &mut Sleep,
    deadline: Instant,
    cx: &mut std::task::Context<'_>,
) -> Poll<bool> {
    if expired(timer, deadline, cx) {
        Poll::Ready(false)
    } else {
        Poll::Pending
    }
}

/// Writes all of `bufs` (in order) before the deadline; `false` on timeout or error.
pub(crate) fn writev_all_until<'a, T: Transport + ?Sized>(
    stream: &'a mut T,
    bufs: [&'a [u8]; 2],
    timer: &'a mut Sleep,
    deadline: Instant,
) -> impl Future<Output = bool> + 'a {
    writev_all(stream, bufs, timer, deadline, None)
}

/// How slowly a response may be written: each write must make progress within `stall`,
/// and once the rate's grace has passed the response must average the minimum rate since
/// `started` (a reader that takes a few bytes a minute keeps each write progressing, but
/// not the average).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    pub(crate) stall: Duration,
    pub(crate) rate: MinRate,
    pub(crate) started: Instant,
    /// Bytes written since `started`.
    pub(crate) sent: u64,
}

impl Pace {
    /// A response starting now.
    pub(crate) fn new(stall: Duration, rate: MinRate) -> Self {
        Self {
            stall,
            rate,
            started: time::now(),
            sent: 0,
        }
    }

    /// When the next write must have made progress.
    pub(crate) fn deadline(&self) -> Instant {
        let pause = time::now() + self.stall;
        self.rate
            .deadline(self.started, self.sent)
            .map_or(pause, |d| d.min(pause))
    }
}

/// Writes all of `bufs` (in order) at `pace` (a long body to a slow but live peer is fine);
/// `false` on timeout or error. `pace.sent` counts what was written.
pub(crate) fn writev_progress<'a, T: Transport + ?Sized>(
    stream: &'a mut T,
    bufs: [&'a [u8]; 2],
    timer: &'a mut Sleep,
    pace: &'a mut Pace,
) -> impl Future<Output = bool> + 'a {
    let deadline = pace.deadline();
    writev_all(stream, bufs, timer, deadline, Some(pace))
}

/// The write loop behind the helpers above. These are plain functions returning the
/// `poll_fn` (the timer armed when called; every caller awaits at once), not `async fn`s
/// wrapping one another: each async layer would keep its own copy of the arguments, and the
/// largest of these futures sets the size of every connection's task, idle ones included.
fn writev_all<'a, T: Transport + ?Sized>(
    stream: &'a mut T,
    bufs: [&'a [u8]; 2],
    timer: &'a mut Sleep,
    mut deadline: Instant,
    mut pace: Option<&'a mut Pace>,
) -> impl Future<Output = bool> + 'a {
    arm(timer, deadline);
    let (mut first, mut second) = (bufs[0], bufs[1]);
    poll_fn(move |cx| {
        while !first.is_empty() || !second.is_empty() {
            let slices = [IoSlice::new(first), IoSlice::new(second)];
            let parts = if first.is_empty() {
                &slices[1..]
            } else if second.is_empty() {
                &slices[..1]
            } else {
                &slices[..]
            };
            match stream.poll_writev(cx, parts) {
                Poll::Ready(Ok(0)) => return Poll::Ready(false),
                Poll::Ready(Ok(mut n)) => {
                    if let Some(p) = pace.as_deref_mut() {
                        p.sent += n as u64;
                    }
                    let a = n.min(first.len());
                    first = &first[a..];
                    n -= a;
                    second = &second[n.min(second.len())..];
                    if let Some(p) = pace.as_deref() {
                        deadline = p.deadline();
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(_)) => return Poll::Ready(false),
                Poll::Pending => return write_stalled(timer, deadline, cx),
            }
        }
        poll_flushed(stream, timer, deadline, cx)
    })
}

/// Polls a flush: `Ready(true)` once everything written has left, `Ready(false)` on an
/// error or once the deadline has passed.
fn poll_flushed<T: Transport + ?Sized>(
    stream: &mut T,
    timer: &mut Sleep,
    deadline: Instant,
    cx: &mut std::task::Context<'_>,
) -> Poll<bool> {
    match stream.poll_flush(cx) {
        Poll::Ready(r) => Poll::Ready(r.is_ok()),
        Poll::Pending => write_stalled(timer, deadline, cx),
    }
}

/// Closes the write side of `stream` (after a flush), within `deadline`; `false` when that
/// failed or timed out.
pub(crate) fn shutdown_until<'a, T: Transport + ?Sized>(
    stream: &'a mut T,
    timer: &'a mut Sleep,
    deadline: Instant,
) -> impl Future<Output = bool> + 'a {
    arm(timer, deadline);
    poll_fn(move |cx| match poll_flushed(stream, timer, deadline, cx) {
        Poll::Ready(true) => match stream.poll_shutdown(cx) {
            Poll::Ready(r) => Poll::Ready(r.is_ok()),
            Poll::Pending => write_stalled(timer, deadline, cx),
        },
        other => other,
    })
}

/// Writes all of `buf` before the deadline; `false` on timeout or error.
pub(crate) fn write_all_until<'a, T: Transport + ?Sized>(
    stream: &'a mut T,
    buf: &'a [u8],
    timer: &'a mut Sleep,
    deadline: Instant,
) -> impl Future<Output = bool> + 'a {
    writev_all_until(stream, [buf, &[]], timer, deadline)
}

/// Writes `head`, then `body` (its parts sent with `sendfile`, or read and written where the
/// transport has no `sendfile`), allowing `timeout` between two writes that make progress.
/// `false` on timeout, error, or a file shorter than promised.
pub(crate) async fn write_file_body<T: Transport + ?Sized>(
    stream: &mut T,
    head: &[u8],
    body: &FileBody,
    timer: &mut Sleep,
    pace: &mut Pace,
) -> bool {
    if !stream.can_sendfile() {
        let mut buf = super::pool::take_input(COPY_CHUNK);
        let ok = write_file_parts(stream, head, body, timer, pace, Some(&mut buf)).await;
        super::pool::give_input(buf);
        return ok;
    }
    // Corked, the head joins the file's first segment and partial segments wait for the
    // next transfer; uncorking at the end pushes the tail out.
    let _ = stream.set_cork(true);
    let ok = write_file_parts(stream, head, body, timer, pace, None).await;
    let _ = stream.set_cork(false);
    ok
}

/// Each part: the bytes before it, then its range of the file, with `sendfile`, or, given
/// a buffer, read from the file and written (page-cache reads: the file is already open, as
/// for `sendfile`); then the trailer.
async fn write_file_parts<T: Transport + ?Sized>(
    stream: &mut T,
    head: &[u8],
    body: &FileBody,
    timer: &mut Sleep,
    pace: &mut Pace,
    mut copy: Option<&mut Vec<u8>>,
) -> bool {
    let mut head = head;
    for part in &body.parts {
        if !writev_progress(stream, [head, &part.before], timer, pace).await {
            return false;
        }
        head = &[];
        let sent = match copy.as_deref_mut() {
            Some(buf) => {
                copy_range(stream, &body.file, part.offset, part.len, buf, timer, pace).await
            }
            None => sendfile_all(stream, &body.file, part.offset, part.len, timer, pace).await,
        };
        if !sent {
            return false;
        }
    }
    writev_progress(stream, [head, &body.trailer], timer, pace).await
}

/// Reads `len` bytes of `file` from `offset` into `buf`, piece by piece, and writes them;
/// `false` on a write failure or a file shorter than promised.
async fn copy_range<T: Transport + ?Sized>(
    stream: &mut T,
    file: &File,
    mut offset: u64,
    mut left: u64,
    buf: &mut [u8],
    timer: &mut Sleep,
    pace: &mut Pace,
) -> bool {
    use std::os::unix::fs::FileExt;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = match file.read_at(&mut buf[..want], offset) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if !writev_progress(stream, [&buf[..n], &[]], timer, pace).await {
            return false;
        }
        offset += n as u64;
        left -= n as u64;
    }
    true
}

/// What the read-and-write fallback of [`write_file_body`] reads at a time.
const COPY_CHUNK: usize = 16 * 1024;

/// Sends `len` bytes of `file` from `offset`; the deadline moves with each transfer.
async fn sendfile_all<T: Transport + ?Sized>(
    stream: &mut T,
    file: &File,
    mut offset: u64,
    mut len: u64,
    timer: &mut Sleep,
    pace: &mut Pace,
) -> bool {
    let mut deadline = pace.deadline();
    arm(timer, deadline);
    poll_fn(|cx| {
        while len > 0 {
            let count = usize::try_from(len).unwrap_or(usize::MAX);
            match stream.poll_sendfile(cx, file, &mut offset, count) {
                // The file ended early: it was truncated while being sent.
                Poll::Ready(Ok(0)) => return Poll::Ready(false),
                Poll::Ready(Ok(n)) => {
                    len = len.saturating_sub(n as u64);
                    pace.sent += n as u64;
                    deadline = pace.deadline();
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(_)) => return Poll::Ready(false),
                Poll::Pending => return write_stalled(timer, deadline, cx),
            }
        }
        Poll::Ready(true)
    })
    .await
}
