//! The request body as the handler reads it: streamed from the connection's buffer, never
//! gathered whole.

use std::sync::atomic::{AtomicBool, Ordering};

use anygate_runtime::net::TcpStream;
use anygate_runtime::time::{self, Sleep};

use crate::error::ErrorKind;
use crate::h1::chunked::ChunkedDecoder;
use crate::h1::parse::Framing;
use crate::server::io::{ReadOutcome, read_until, write_all_until};

/// A request body. Read it with [`Body::chunk`] until `None`; what a handler leaves unread
/// is discarded by the connection (or the connection is closed).
#[derive(Debug)]
pub struct Body<'c> {
    pub(crate) stream: &'c TcpStream,
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
    pub(crate) timer: &'c mut Sleep,
    pub(crate) timeout: std::time::Duration,
    pub(crate) send_continue: bool,
    /// Shared with the response: set while the client waits for `100 Continue`.
    pub(crate) expecting: &'c AtomicBool,
    pub(crate) done: bool,
    pub(crate) failed: Option<ErrorKind>,
    /// Reads done for this body, to yield to other tasks now and then.
    pub(crate) fills: u32,
    /// Bytes read from the socket for this body (framing included).
    pub(crate) wire: u64,
}

impl Body<'_> {
    /// Whether the request has a body at all.
    pub fn is_present(&self) -> bool {
        self.framing != Framing::None
    }

    /// The declared length, for a `Content-Length` body.
    pub fn length(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        }
    }

    /// Whether the client waits for `100 Continue` before it sends the body (sent by the
    /// first read of the body).
    pub fn expects_continue(&self) -> bool {
        self.send_continue
    }

    /// For a request without a body: the bytes the client sent after the head (a tunnel's
    /// first bytes, after `Upgrade`), handed over once. The connection cannot serve another
    /// request afterwards; the caller must close it.
    pub fn take_buffered(&mut self) -> &[u8] {
        if self.framing != Framing::None {
            return &[];
        }
        let (from, to) = (self.start, self.end);
        self.start = to;
        &self.buf[from..to]
    }

    /// Bytes of body data read so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.done || self.framing == Framing::None
    }

    /// The next piece of the body, `None` at its end. An error means the request cannot be
    /// trusted any further: answer it with that error (the connection then closes).
    pub async fn chunk(&mut self) -> Result<Option<&[u8]>, ErrorKind> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.is_done() {
            // The whole body came without our `100 Continue`: the client did not wait.
            self.expecting.store(false, Ordering::Relaxed);
            return Ok(None);
        }
        loop {
            if self.start < self.end {
                let (from, to) = match self.framing {
                    Framing::Length(_) => {
                        let n = (self.end - self.start).min(self.remaining as usize);
                        self.remaining -= n as u64;
                        self.done = self.remaining == 0;
                        (self.start, self.start + n)
                    }
                    Framing::Chunked => {
                        let d = self
                            .decoder
                            .decode(&self.buf[self.start..self.end])
                            .map_err(|_| self.fail(ErrorKind::BadChunk))?;
                        let at = self.start;
                        self.start += d.consumed;
                        self.done = self.decoder.is_done();
                        if d.data.is_empty() {
                            if self.done {
                                return Ok(None);
                            }
                            continue;
                        }
                        self.received += d.data.len() as u64;
                        self.check_limit()?;
                        return Ok(Some(&self.buf[at + d.data.start..at + d.data.end]));
                    }
                    Framing::None => return Ok(None),
                };
                self.start = to;
                self.received += (to - from) as u64;
                return Ok(Some(&self.buf[from..to]));
            }
            self.fill().await?;
        }
    }

    /// Reads and drops the rest of the body.
    pub async fn discard(&mut self) -> Result<(), ErrorKind> {
        while self.chunk().await?.is_some() {}
        Ok(())
    }

    /// Reads and drops the rest of the body if it is at most `limit` bytes: `Ok(true)` when
    /// the body is done, `Ok(false)` when it is longer (the rest is left unread).
    pub async fn discard_up_to(&mut self, limit: u64) -> Result<bool, ErrorKind> {
        if let Framing::Length(_) = self.framing
            && self.remaining > limit
        {
            return Ok(false);
        }
        // Bounded by data and by bytes on the wire: chunk framing (extensions) must not
        // make a small body cost unbounded reading.
        let (start, wire) = (self.received, self.wire);
        while self.chunk().await?.is_some() {
            if self.received - start > limit || self.wire - wire > 2 * limit + 64 * 1024 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn fail(&mut self, e: ErrorKind) -> ErrorKind {
        self.failed = Some(e);
        e
    }

    fn check_limit(&mut self) -> Result<(), ErrorKind> {
        if self.limit > 0 && self.received > self.limit {
            return Err(self.fail(ErrorKind::BodyTooLarge));
        }
        Ok(())
    }

    /// Reads more bytes into the (empty) buffer.
    async fn fill(&mut self) -> Result<(), ErrorKind> {
        self.fills += 1;
        if self.fills.is_multiple_of(16) {
            anygate_runtime::yield_now().await;
        }
        if self.send_continue {
            self.send_continue = false;
            self.expecting.store(false, Ordering::Relaxed);
            let deadline = time::now() + self.timeout;
            if !write_all_until(
                self.stream,
                b"HTTP/1.1 100 Continue\r\n\r\n",
                self.timer,
                deadline,
            )
            .await
            {
                return Err(self.fail(ErrorKind::IncompleteBody));
            }
        }
        self.start = 0;
        self.end = 0;
        // A `Content-Length` body is read no further than its end, so the bytes after it
        // (a pipelined request) stay where the connection expects them.
        let room = match self.framing {
            Framing::Length(_) => (self.remaining as usize).min(self.buf.len()),
            _ => self.buf.len(),
        };
        let deadline = time::now() + self.timeout;
        match read_until(
            self.stream,
            &mut self.buf[..room],
            self.timer,
            deadline,
            None,
        )
        .await
        {
            ReadOutcome::Data(n) => {
                self.end = n;
                self.wire += n as u64;
                Ok(())
            }
            ReadOutcome::Timeout => Err(self.fail(ErrorKind::BodyTimeout)),
            ReadOutcome::Eof | ReadOutcome::Error | ReadOutcome::Draining => {
                Err(self.fail(ErrorKind::IncompleteBody))
            }
        }
    }
}
