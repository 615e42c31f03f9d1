//! The request body as the handler reads it through its [`Exchange`]: streamed from the
//! connection's buffer, never gathered whole.

use std::time::Instant;

use anygate_runtime::time;

use crate::error::ErrorKind;
use crate::h1::chunked::ChunkedDecoder;
use crate::h1::parse::Framing;
use crate::server::Exchange;
use crate::server::exchange::Wire;
use crate::server::io::{ReadOutcome, read_until, write_all_until};

/// Where a request body stands. Read it with [`Exchange::body_chunk`] until `None`; what a
/// handler leaves unread is discarded by the connection (or the connection is closed).
#[derive(Debug)]
pub(crate) struct BodyState<'c> {
    /// The connection buffer after the request head.
    pub(crate) buf: &'c mut [u8],
    /// Unread bytes are `buf[start..end]`.
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) framing: Framing,
    /// Bytes left for a `Content-Length` body.
    pub(crate) remaining: u64,
    pub(crate) decoder: ChunkedDecoder,
    pub(crate) received: u64,
    pub(crate) limit: u64,
    pub(crate) timeout: std::time::Duration,
    pub(crate) send_continue: bool,
    pub(crate) done: bool,
    pub(crate) failed: Option<ErrorKind>,
    /// Reads done for this body, to yield to other tasks now and then.
    pub(crate) fills: u32,
    /// Bytes read from the socket for this body (framing included).
    pub(crate) wire: u64,
    /// The minimum average rate, and when the first read of the body began.
    pub(crate) rate: crate::limits::MinRate,
    pub(crate) started: Option<Instant>,
}

impl BodyState<'_> {
    /// No body (a request rejected before its head was parsed).
    pub(crate) fn none() -> BodyState<'static> {
        BodyState {
            buf: &mut [],
            start: 0,
            end: 0,
            framing: Framing::None,
            remaining: 0,
            decoder: ChunkedDecoder::new(),
            received: 0,
            limit: 0,
            timeout: std::time::Duration::ZERO,
            send_continue: false,
            done: true,
            failed: None,
            fills: 0,
            wire: 0,
            rate: crate::limits::MinRate::OFF,
            started: None,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done || self.framing == Framing::None
    }

    pub(crate) fn fail(&mut self, e: ErrorKind) -> ErrorKind {
        self.failed = Some(e);
        e
    }

    pub(crate) fn check_limit(&mut self) -> Result<(), ErrorKind> {
        if self.limit > 0 && self.received > self.limit {
            return Err(self.fail(ErrorKind::BodyTooLarge));
        }
        Ok(())
    }
}

/// The request body.
impl Exchange<'_> {
    /// Whether the request has a body at all.
    pub fn body_present(&self) -> bool {
        self.body.framing != Framing::None
    }

    /// The declared length, for a `Content-Length` body.
    pub fn body_length(&self) -> Option<u64> {
        match self.body.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        }
    }

    /// Whether the client waits for `100 Continue` before it sends the body (sent by the
    /// first read of the body).
    pub fn expects_continue(&self) -> bool {
        self.body.send_continue
    }

    /// Bytes of body data read so far.
    pub fn body_received(&self) -> u64 {
        self.body.received
    }

    /// Lowers the request body's limit to `limit` bytes (a rule's `max_body`); `false`
    /// when its `Content-Length` is already above it (answer 413 then).
    pub fn limit_body(&mut self, limit: u64) -> bool {
        if let Framing::Length(n) = self.body.framing
            && n > limit
        {
            return false;
        }
        if self.body.limit == 0 || limit < self.body.limit {
            self.body.limit = limit;
        }
        true
    }

    /// Whether the whole body has been read.
    pub fn body_done(&self) -> bool {
        self.body.is_done()
    }

    /// The next piece of the body, `None` at its end. An error means the request cannot be
    /// trusted any further: answer it with that error (the connection then closes).
    pub async fn body_chunk(&mut self) -> Result<Option<&[u8]>, ErrorKind> {
        if let Some(e) = self.body.failed {
            return Err(e);
        }
        if self.body.is_done() {
            // The whole body came without our `100 Continue`: the client did not wait.
            self.expecting = false;
            return Ok(None);
        }
        if let Wire::H2(_) = self.io {
            return self.h2_body_chunk().await;
        }
        loop {
            if self.body.start < self.body.end {
                let (from, to) = match self.body.framing {
                    Framing::Length(_) => {
                        let n = (self.body.end - self.body.start).min(self.body.remaining as usize);
                        self.body.remaining -= n as u64;
                        self.ctx.bytes_in += n as u64;
                        self.body.done = self.body.remaining == 0;
                        (self.body.start, self.body.start + n)
                    }
                    Framing::Chunked => {
                        let d = self
                            .body
                            .decoder
                            .decode(&self.body.buf[self.body.start..self.body.end])
                            .map_err(|_| self.body.fail(ErrorKind::BadChunk))?;
                        let at = self.body.start;
                        self.body.start += d.consumed;
                        self.ctx.bytes_in += d.consumed as u64;
                        self.body.done = self.body.decoder.is_done();
                        if d.data.is_empty() {
                            if self.body.done {
                                return Ok(None);
                            }
                            continue;
                        }
                        self.body.received += d.data.len() as u64;
                        self.body.check_limit()?;
                        return Ok(Some(&self.body.buf[at + d.data.start..at + d.data.end]));
                    }
                    Framing::None => return Ok(None),
                };
                self.body.start = to;
                self.body.received += (to - from) as u64;
                return Ok(Some(&self.body.buf[from..to]));
            }
            self.fill().await?;
        }
    }

    /// Reads and drops the rest of the body.
    pub async fn discard_body(&mut self) -> Result<(), ErrorKind> {
        while self.body_chunk().await?.is_some() {}
        Ok(())
    }

    /// Reads and drops the rest of the body if it is at most `limit` bytes: `Ok(true)` when
    /// the body is done, `Ok(false)` when it is longer (the rest is left unread).
    pub async fn discard_body_up_to(&mut self, limit: u64) -> Result<bool, ErrorKind> {
        if let Framing::Length(_) = self.body.framing
            && self.body.remaining > limit
        {
            return Ok(false);
        }
        // Bounded by data and by bytes on the wire: chunk framing (extensions) must not
        // make a small body cost unbounded reading.
        let (start, wire) = (self.body.received, self.body.wire);
        while self.body_chunk().await?.is_some() {
            if self.body.received - start > limit || self.body.wire - wire > 2 * limit + 64 * 1024 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads more bytes into the (empty) buffer.
    async fn fill(&mut self) -> Result<(), ErrorKind> {
        let Wire::H1(io) = &mut self.io else {
            return Err(self.body.fail(ErrorKind::IncompleteBody));
        };
        let io = &mut **io;
        self.body.fills += 1;
        if self.body.fills.is_multiple_of(16) {
            anygate_runtime::yield_now().await;
        }
        if self.body.send_continue {
            self.body.send_continue = false;
            self.expecting = false;
            let deadline = time::now() + self.body.timeout;
            if !write_all_until(&mut *io, crate::h1::encode::CONTINUE, self.timer, deadline).await {
                return Err(self.body.fail(ErrorKind::IncompleteBody));
            }
        }
        self.body.start = 0;
        self.body.end = 0;
        // A `Content-Length` body is read no further than its end, so the bytes after it
        // (a pipelined request) stay where the connection expects them.
        let room = match self.body.framing {
            Framing::Length(_) => (self.body.remaining as usize).min(self.body.buf.len()),
            _ => self.body.buf.len(),
        };
        // The pause allowed between two reads, and the average rate since the first.
        let now = time::now();
        let started = *self.body.started.get_or_insert(now);
        let pause = now + self.body.timeout;
        let slow = self.body.rate.deadline(started, self.body.wire);
        let deadline = slow.map_or(pause, |s| s.min(pause));
        match read_until(io, &mut self.body.buf[..room], self.timer, deadline, None).await {
            ReadOutcome::Data(n) => {
                self.body.end = n;
                self.body.wire += n as u64;
                Ok(())
            }
            ReadOutcome::Timeout if slow.is_some_and(|s| s < pause) => {
                Err(self.body.fail(ErrorKind::BodyTooSlow))
            }
            ReadOutcome::Timeout => Err(self.body.fail(ErrorKind::BodyTimeout)),
            ReadOutcome::Eof
            | ReadOutcome::Error
            | ReadOutcome::Draining
            | ReadOutcome::Reconfigured => Err(self.body.fail(ErrorKind::IncompleteBody)),
        }
    }
}
