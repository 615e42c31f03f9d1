//! The HTTP/2 driver: the `h2` crate's connection state machine (framing, HPACK, flow
//! control, stream states) on the runtime's tokio-io adapter, mapped onto the same
//! [`Exchange`] and [`Service`] as HTTP/1.1, so every action and filter runs unchanged.
//!
//! # Shape
//!
//! - One task owns the connection ([`serve`]): it polls `h2`'s `Connection` (which reads and
//!   writes the socket for every stream), accepts streams, sends GOAWAY on a drain or after
//!   the idle timeout with no stream open, and closes a connection whose handshake does
//!   not complete within the head timeout.
//! - Each accepted stream runs in a task of its own (`h2` makes progress only while the
//!   connection is polled, and a stream's handler may wait on an upstream for long). The
//!   stream task records the request head in the shape the HTTP/1.1 parser produces
//!   (`h1::parse::Head`, spans into a pooled buffer): method, `:path` as the target,
//!   `:authority` as `host` (added as a field when the client sent none, so filters and
//!   echo see one request shape), fields in order, `cookie` fields joined with `; `
//!   (RFC 9113 §8.2.3). Limits are HTTP/1.1's: `max_uri` 414, `max_headers` 431, `max_body`
//!   413, underscores dropped.
//! - The exchange writes the response head and small bodies into the same buffers as over
//!   HTTP/1.1; nothing is encoded until the head leaves: then the fields become an
//!   `http::Response` (connection-specific fields dropped, `content-length`, `date` and
//!   `x-request-id` added) and the body goes out as DATA frames, never more than the
//!   client's window grants ([`Exchange::h2_write_body`], `Exchange::h2_finish`). Shared
//!   bodies leave without a copy; file bodies are read in window-sized pieces.
//! - A response cut short ([`Exchange::abort`], a `Content-Length` body that ends early, a
//!   handler that panicked after its head left) resets the stream (`INTERNAL_ERROR`); the
//!   connection and its other streams go on.
//!
//! # Costs and non-goals
//!
//! `h2` allocates per stream (its header map, HPACK strings) and keeps the connection's
//! state behind a lock its handles share: the zero-allocation rule of SPEC §11 is stated
//! for HTTP/1.1. No server push; no extended CONNECT (RFC 8441: WebSocket stays on
//! HTTP/1.1). `Expect: 100-continue` is answered with an interim `100` at the first read
//! of the body, as over HTTP/1.1.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::h2::server::SendResponse;
use ::h2::{Reason, RecvStream, SendStream};
use anygate_runtime::compat::TokioIo;
use anygate_runtime::sync::AtomicWaker;
use anygate_runtime::time::{self, Sleep};
use anygate_runtime::transport::Transport;
use bytes::Bytes;
use http::header::{DATE, HeaderName, HeaderValue};

use super::body::BodyState;
use super::exchange::Wire;
use super::h2meter::{Flood, Meter};
use super::io::{Pace, arm, expired};
use super::response::{FileBody, Tail};
use super::{Connection, Ctx, Drain, Exchange, Request, Service, fresh_id, pool};
use crate::error::ErrorKind;
use crate::h1::chunked::ChunkedDecoder;
use crate::h1::parse::{Field, Framing, Head, Span, Version, is_host};
use crate::limits::{Limits, MAX_HEADERS};
use crate::message::{BodyFraming, Prebuilt, bodiless, framing_of, h2_fields};
use crate::{date, request_id};

/// Most bytes of a file read for one DATA write.
const FILE_PIECE: usize = 64 * 1024;

/// Streams a client may reset before their responses ended, on one connection, before the
/// share of them counts (below it, a client cancelling what it no longer needs is normal).
const RESET_FLOOR: usize = 100;

/// One HTTP/2 stream, as its exchange drives it.
pub(crate) struct Stream {
    respond: SendResponse<Bytes>,
    /// Once the response head has left.
    send: Option<SendStream<Bytes>>,
    /// The request body, until the proxy takes it ([`Exchange::take_h2_body`]).
    recv: Option<RecvStream>,
    /// The body piece last handed to the handler: its window is given back on the next
    /// read, so the client's window follows what the handler consumed.
    chunk: Bytes,
    /// The body's last piece, its window already given back.
    last: Bytes,
    /// The framing the response head declared.
    framing: BodyFraming,
    /// A prebuilt response's fields, as `h2` takes them.
    prebuilt: Option<http::HeaderMap>,
    /// The body's first piece, read before the handler ran (see [`peek_end`]).
    first: Option<Bytes>,
    /// Body bytes sent.
    sent: u64,
    /// END_STREAM or RST_STREAM has been sent, or the stream is gone: nothing more leaves.
    ended: bool,
    /// The stream can no longer carry the response (reset by either side, connection gone).
    failed: bool,
    /// The handler cut the response short.
    aborted: bool,
    /// This side reset the stream (so a reset seen later is not the client's).
    reset_here: bool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("sent", &self.sent)
            .field("ended", &self.ended)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// Sends the interim `100 Continue` a client that said `Expect: 100-continue` waits
    /// for (nothing once the response head left).
    fn send_continue(&mut self) {
        if self.send.is_none() && !self.ended {
            let mut interim = http::Response::new(());
            *interim.status_mut() = http::StatusCode::CONTINUE;
            let _ = self.respond.send_informational(interim);
        }
    }

    /// Marks the response as cut short: the stream is reset instead of ended.
    pub(crate) fn abort(&mut self) {
        self.aborted = true;
    }

    /// The framing the head declares (set when the head is committed).
    pub(crate) fn set_framing(&mut self, framing: BodyFraming) {
        self.framing = framing;
    }

    /// Ready once the client reset the stream (or the connection is gone).
    pub(crate) fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let r = match &mut self.send {
            Some(s) => s.poll_reset(cx),
            None => self.respond.poll_reset(cx),
        };
        r.map(|_| ())
    }

    fn reset(&mut self, reason: Reason) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.failed = true;
        if self.reset_by_client() {
            // Already reset by the client (a send failed because of it): it stays the
            // client's reset, which the rapid-reset guard counts.
            return;
        }
        self.reset_here = true;
        match &mut self.send {
            Some(s) => s.send_reset(reason),
            None => self.respond.send_reset(reason),
        }
    }

    /// Whether the client has reset the stream (or the connection is gone), without
    /// waiting.
    fn reset_by_client(&mut self) -> bool {
        if self.reset_here {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.poll_reset(&mut cx).is_ready()
    }

    /// Gives the window of the piece last read back to the client.
    fn release(&mut self) {
        if !self.chunk.is_empty() {
            if let Some(recv) = &mut self.recv {
                let _ = recv.flow_control().release_capacity(self.chunk.len());
            }
            self.chunk = Bytes::new();
        }
    }
}

/// The `date` value for `date` (the worker's current one, kept while it is the same second:
/// one copy per second instead of one per response).
fn date_value(date: &[u8]) -> Option<HeaderValue> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<HeaderValue>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if let Some(v) = last
            && v.as_bytes() == date
        {
            return Some(v.clone());
        }
        let v = HeaderValue::from_bytes(date).ok()?;
        *last = Some(v.clone());
        Some(v)
    })
}

/// The response head as `h2` sends it: `fields` (from [`h2_fields`], or a prebuilt
/// response's, copied), `date` and `x-request-id`.
fn response(
    status: u16,
    mut fields: http::HeaderMap,
    date: &[u8],
    request_id: &[u8],
) -> http::Response<()> {
    if let Some(v) = date_value(date) {
        fields.insert(DATE, v);
    }
    if let Ok(mut v) = HeaderValue::from_bytes(request_id) {
        // Never indexed: a value seen once would only churn the client's HPACK table
        // (evicting what repeats: `date`, `content-type`).
        v.set_sensitive(true);
        fields.insert(HeaderName::from_static("x-request-id"), v);
    }
    let mut res = http::Response::new(());
    *res.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    *res.headers_mut() = fields;
    res
}

/// Waits until `send` may carry up to `want` more bytes (at least one), within `pace`'s
/// deadline (the stall timeout, and the minimum average rate: a client that opens its window
/// a byte at a time cannot hold the stream); `None` when the stream is gone or the client
/// gave no window in time.
async fn capacity(
    send: &mut SendStream<Bytes>,
    want: usize,
    timer: &mut Sleep,
    pace: &Pace,
) -> Option<usize> {
    send.reserve_capacity(want);
    let deadline = pace.deadline();
    arm(timer, deadline);
    poll_fn(|cx| {
        loop {
            let have = send.capacity();
            if have > 0 {
                return Poll::Ready(Some(have.min(want)));
            }
            match send.poll_capacity(cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(_) => return Poll::Ready(None),
                Poll::Pending => {
                    return if expired(timer, deadline, cx) {
                        Poll::Ready(None)
                    } else {
                        Poll::Pending
                    };
                }
            }
        }
    })
    .await
}

/// Sends `data` as the window allows; `end` ends the stream with its last piece.
async fn send_bytes(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    timer: &mut Sleep,
    pace: &mut Pace,
) -> bool {
    if data.is_empty() {
        return !end || send.send_data(Bytes::new(), true).is_ok();
    }
    while !data.is_empty() {
        let Some(n) = capacity(send, data.len(), timer, pace).await else {
            return false;
        };
        let piece = data.split_to(n.min(data.len()));
        pace.sent += piece.len() as u64;
        if send.send_data(piece, end && data.is_empty()).is_err() {
            return false;
        }
    }
    true
}

/// Sends the parts of a file body, read in pieces the window allows.
async fn send_file(
    send: &mut SendStream<Bytes>,
    body: FileBody,
    timer: &mut Sleep,
    pace: &mut Pace,
) -> bool {
    use std::os::unix::fs::FileExt;
    let FileBody {
        file,
        parts,
        trailer,
    } = body;
    for part in parts {
        if !send_bytes(send, Bytes::from(part.before), false, timer, pace).await {
            return false;
        }
        let (mut offset, end) = (part.offset, part.offset + part.len);
        while offset < end {
            let left = usize::try_from(end - offset).unwrap_or(usize::MAX);
            let Some(n) = capacity(send, left.min(FILE_PIECE), timer, pace).await else {
                return false;
            };
            let mut piece = vec![0u8; n];
            // A short read (the file shrank) cannot honour the length already sent.
            match file.read_at(&mut piece, offset) {
                Ok(got) if got > 0 => piece.truncate(got),
                _ => return false,
            }
            offset += piece.len() as u64;
            pace.sent += piece.len() as u64;
            if send.send_data(Bytes::from(piece), false).is_err() {
                return false;
            }
        }
    }
    send_bytes(send, Bytes::from(trailer), false, timer, pace).await
}

/// Whether a request is a gRPC call: `content-type: application/grpc`, alone or with a
/// `+format` or `;parameters` suffix.
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

/// An HTTP/2 request body taken out of its exchange ([`Exchange::take_h2_body`]), so that
/// the proxy can relay it while the response goes the other way (gRPC streams both at
/// once). Each piece's window is given back to the client when the next one is asked
/// for: the client sends no faster than the upstream takes.
pub struct H2Body {
    recv: RecvStream,
    /// A piece read before the handler ran, handed out first.
    first: Option<Bytes>,
    /// The length of the piece last handed out, its window not yet given back.
    unreleased: usize,
    received: u64,
    /// `max_body` (0: none).
    limit: u64,
}

impl std::fmt::Debug for H2Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Body")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl H2Body {
    /// The next piece of the body (`None` at its end); an error when the client reset the
    /// stream or sent more than `max_body`.
    pub fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ErrorKind>>> {
        if self.unreleased > 0 {
            let _ = self.recv.flow_control().release_capacity(self.unreleased);
            self.unreleased = 0;
        }
        let mut first = self.first.take();
        loop {
            let polled = match first.take() {
                Some(b) => Poll::Ready(Some(Ok(b))),
                None => self.recv.poll_data(cx),
            };
            return match polled {
                Poll::Ready(Some(Ok(b))) if b.is_empty() => {
                    if self.recv.is_end_stream() {
                        Poll::Ready(None)
                    } else {
                        continue;
                    }
                }
                Poll::Ready(Some(Ok(b))) => {
                    self.received += b.len() as u64;
                    if self.limit > 0 && self.received > self.limit {
                        return Poll::Ready(Some(Err(ErrorKind::BodyTooLarge)));
                    }
                    self.unreleased = b.len();
                    Poll::Ready(Some(Ok(b)))
                }
                Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(ErrorKind::IncompleteBody))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }

    /// Whether the client has ended the body.
    pub fn is_end(&self) -> bool {
        self.recv.is_end_stream()
    }

    /// Body bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }
}

/// The fields of a trailer section as `h2` sends them: what HTTP/2 forbids, and what
/// describes the message's framing or routing, is left out.
fn trailer_map(trailers: &crate::message::Fields) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in trailers.iter() {
        if crate::message::is_connection_specific(name) || crate::message::is_hop_by_hop(name) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(n, v);
        }
    }
    map
}

/// The response over an HTTP/2 stream.
impl Exchange<'_> {
    /// [`Exchange::take_h2_body`].
    pub(crate) fn h2_take_body(&mut self) -> Option<H2Body> {
        let Wire::H2(stream) = &mut self.io else {
            return None;
        };
        stream.release();
        if self.body.send_continue {
            self.body.send_continue = false;
            stream.send_continue();
        }
        let recv = stream.recv.take()?;
        let limit = self.body.limit.saturating_sub(self.body.received);
        self.body.done = true;
        Some(H2Body {
            recv,
            first: stream.first.take(),
            unreleased: 0,
            received: 0,
            limit: if self.body.limit == 0 {
                0
            } else {
                limit.max(1)
            },
        })
    }

    /// [`Exchange::send_trailers`] over HTTP/2: the head and what is pending, then a
    /// HEADERS frame with the trailers, ending the stream.
    pub(crate) async fn h2_send_trailers(
        &mut self,
        trailers: &crate::message::Fields,
        timer: &mut Sleep,
        timeout: Duration,
    ) -> bool {
        if self.head_only || bodiless(self.status) {
            return self.h2_write_body(&[], timer, timeout).await;
        }
        if !self.h2_write_body(&[], timer, timeout).await {
            return false;
        }
        let Wire::H2(stream) = &mut self.io else {
            return false;
        };
        if stream.ended {
            return !stream.failed;
        }
        if let BodyFraming::Length(n) = stream.framing
            && stream.sent != n
        {
            // A short body cannot be ended by trailers: `h2_finish` resets it.
            return false;
        }
        let Some(send) = &mut stream.send else {
            return false;
        };
        stream.ended = true;
        if send.send_trailers(trailer_map(trailers)).is_err() {
            stream.failed = true;
            return false;
        }
        true
    }

    /// [`Exchange::error`] for a gRPC call: a trailers-only response (HTTP 200, the
    /// status in `grpc-status`, the code and message in `grpc-message`).
    #[cold]
    #[inline(never)]
    pub(crate) fn grpc_error(&mut self, kind: ErrorKind) {
        self.head.reset(200, "OK");
        let fields = &mut self.head.fields;
        fields.append(b"content-type", b"application/grpc");
        let mut digits = [0u8; 20];
        fields.append(
            b"grpc-status",
            crate::message::decimal(u64::from(kind.grpc_status()), &mut digits),
        );
        // Printable ASCII without `%` passes as it is (gRPC's percent-encoding).
        let mut message = String::with_capacity(64);
        message.push_str(kind.code());
        message.push(' ');
        message.push_str(kind.message());
        fields.append(b"grpc-message", message.replace('%', "%25").as_bytes());
        self.commit(BodyFraming::Unframed);
    }

    /// The head is committed (`commit` set the stream's framing): records the response.
    pub(crate) fn h2_committed(&mut self) {
        debug_assert!(self.status == 0, "two responses to one request");
        self.status = self.head.status();
        // What the head weighs before HPACK: its fields, as HTTP/1.1 would count them.
        self.ctx.bytes_out += self
            .head
            .fields
            .iter()
            .map(|(n, v)| (n.len() + v.len() + 4) as u64)
            .sum::<u64>()
            + 13;
        if self.ctx.start.is_some() {
            self.ctx.first_byte = Some(time::precise_now());
        }
    }

    /// A response fixed at load time: its head (already through the hook when it had to
    /// be) and its body, shared.
    pub(crate) fn h2_prebuilt(&mut self, p: &Prebuilt) {
        self.head.copy_from(&p.head);
        let len = p.body.len();
        if let Wire::H2(stream) = &mut self.io {
            stream.set_framing(framing_of(p.status(), len));
            // Its fields converted once, at load: copied, not parsed again.
            stream.prebuilt = Some((*p.h2).clone());
        }
        self.h2_committed();
        if !self.head_only && len > 0 {
            self.ctx.bytes_out += len as u64;
            *self.tail = Tail::Shared(p.body.clone(), 0..len);
        }
    }

    /// Sends the head if it has not left, with END_STREAM when `end`. `false` when the
    /// stream cannot carry it.
    fn h2_send_head(&mut self, end: bool) -> bool {
        let Wire::H2(stream) = &mut self.io else {
            return false;
        };
        if stream.send.is_some() || stream.ended {
            return !stream.failed;
        }
        let fields = match stream.prebuilt.take() {
            Some(f) => f,
            None => h2_fields(self.head, stream.framing),
        };
        let res = response(self.head.status(), fields, self.date, self.request_id);
        match stream.respond.send_response(res, end) {
            Ok(send) => {
                stream.send = Some(send);
                stream.ended = end;
                true
            }
            Err(_) => {
                stream.ended = true;
                stream.failed = true;
                false
            }
        }
    }

    /// [`Exchange::write_body`] over HTTP/2: the head (once), what is pending, then
    /// `data`, as the client's window allows, each wait at most `timeout`.
    pub(crate) async fn h2_write_body(
        &mut self,
        data: &[u8],
        timer: &mut Sleep,
        timeout: Duration,
    ) -> bool {
        let data = if self.head_only { &[][..] } else { data };
        self.ctx.bytes_out += data.len() as u64;
        let bodiless = self.head_only || bodiless(self.status);
        if !self.h2_send_head(bodiless) {
            return false;
        }
        let Wire::H2(stream) = &mut self.io else {
            return false;
        };
        if stream.ended {
            self.out.clear();
            return !stream.failed;
        }
        if self.out.is_empty() && data.is_empty() {
            return true;
        }
        let mut piece = Vec::with_capacity(self.out.len() + data.len());
        piece.extend_from_slice(self.out);
        piece.extend_from_slice(data);
        self.out.clear();
        let n = piece.len() as u64;
        let started = *self.send_started.get_or_insert_with(time::now);
        let mut pace = Pace {
            stall: timeout,
            rate: self.send_rate,
            started,
            sent: stream.sent,
        };
        let Some(send) = &mut stream.send else {
            return false;
        };
        if !send_bytes(send, Bytes::from(piece), false, timer, &mut pace).await {
            stream.reset(Reason::CANCEL);
            return false;
        }
        stream.sent += n;
        true
    }

    /// After the handler: sends what it left (the head, the buffered body, a shared or
    /// file body) and ends the stream, or resets it when the response is incomplete.
    pub(crate) async fn h2_finish(&mut self, timeout: Duration) {
        let tail = std::mem::take(self.tail);
        let Wire::H2(stream) = &mut self.io else {
            return;
        };
        stream.release();
        if stream.ended {
            return;
        }
        if stream.aborted {
            return stream.reset(Reason::INTERNAL_ERROR);
        }
        let pending = self.out.len() as u64
            + match &tail {
                Tail::None => 0,
                Tail::Shared(b, r) => b.get(r.clone()).map_or(0, |p| p.len() as u64),
                Tail::File(f) => f.len(),
            };
        let body = !(self.head_only || bodiless(self.status));
        let complete = !body
            || match stream.framing {
                BodyFraming::Length(n) => stream.sent + pending == n,
                _ => true,
            };
        // The END_STREAM flag rides on the last frame: the HEADERS frame when nothing
        // follows, else the last piece of the body.
        let last_in_head = !body || (pending == 0 && complete);
        if !self.h2_send_head(last_in_head) {
            return;
        }
        let Wire::H2(stream) = &mut self.io else {
            return;
        };
        if stream.ended {
            return;
        }
        let Some(send) = &mut stream.send else {
            return;
        };
        let timer = &mut *self.timer;
        let started = *self.send_started.get_or_insert_with(time::now);
        let pace = &mut Pace {
            stall: timeout,
            rate: self.send_rate,
            started,
            sent: stream.sent,
        };
        let out = std::mem::take(self.out);
        let has_tail = !tail.is_none();
        let mut ok = if !out.is_empty() {
            let end = complete && !has_tail;
            send_bytes(send, Bytes::copy_from_slice(&out), end, timer, pace).await
        } else if !has_tail && complete {
            // A streamed body whose last piece already left: an empty last frame ends it.
            send.send_data(Bytes::new(), true).is_ok()
        } else {
            true
        };
        *self.out = out;
        self.out.clear();
        if ok {
            ok = match tail {
                Tail::None => true,
                Tail::Shared(b, r) => {
                    let bytes = Bytes::from_owner(b).slice(r);
                    send_bytes(send, bytes, complete, timer, pace).await
                }
                Tail::File(f) => {
                    send_file(send, f, timer, pace).await
                        && (!complete || send.send_data(Bytes::new(), true).is_ok())
                }
            };
        }
        stream.sent += pending;
        if ok && complete {
            stream.ended = true;
        } else {
            stream.reset(if ok {
                Reason::INTERNAL_ERROR
            } else {
                Reason::CANCEL
            });
        }
    }

    /// [`Exchange::body_chunk`] over HTTP/2: the next DATA frame's payload, within the
    /// body timeout.
    pub(crate) async fn h2_body_chunk(&mut self) -> Result<Option<&[u8]>, ErrorKind> {
        // The pause allowed between two pieces, and the minimum average rate since the first.
        let now = time::now();
        let started = *self.body.started.get_or_insert(now);
        let pause = now + self.body.timeout;
        let slow = self.body.rate.deadline(started, self.body.wire);
        let deadline = slow.map_or(pause, |s| s.min(pause));
        arm(self.timer, deadline);
        let Wire::H2(stream) = &mut self.io else {
            return Ok(None);
        };
        stream.release();
        if self.body.send_continue {
            self.body.send_continue = false;
            stream.send_continue();
        }
        let timer = &mut *self.timer;
        let Some(recv) = &mut stream.recv else {
            return Ok(None);
        };
        let got = match stream.first.take() {
            Some(first) => Some(Some(Ok(first))),
            None => {
                poll_fn(|cx| {
                    loop {
                        match recv.poll_data(cx) {
                            // An empty DATA frame (not the last) says nothing.
                            Poll::Ready(Some(Ok(b))) if b.is_empty() && !recv.is_end_stream() => {
                                continue;
                            }
                            Poll::Ready(r) => return Poll::Ready(Some(r)),
                            Poll::Pending if expired(timer, deadline, cx) => {
                                return Poll::Ready(None);
                            }
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                })
                .await
            }
        };
        match got {
            None if slow.is_some_and(|s| s < pause) => Err(self.body.fail(ErrorKind::BodyTooSlow)),
            None => Err(self.body.fail(ErrorKind::BodyTimeout)),
            Some(None) => {
                self.body.done = true;
                Ok(None)
            }
            Some(Some(Err(_))) => Err(self.body.fail(ErrorKind::IncompleteBody)),
            Some(Some(Ok(bytes))) => {
                let n = bytes.len() as u64;
                self.body.received += n;
                self.body.wire += n;
                self.ctx.bytes_in += n;
                self.body.remaining = self.body.remaining.saturating_sub(n);
                self.body.done = recv.is_end_stream();
                if self.body.done {
                    // The last piece: no later read gives its window back (the body is
                    // done), so it is given back now; the bytes stay valid.
                    let _ = recv.flow_control().release_capacity(bytes.len());
                    stream.chunk = Bytes::new();
                    self.body.check_limit()?;
                    stream.last = bytes;
                    // An empty last frame (END_STREAM on its own) ends the body; it is not
                    // an empty piece of it (the proxy would frame a 0-size chunk).
                    if stream.last.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(&stream.last));
                }
                stream.chunk = bytes;
                self.body.check_limit()?;
                if stream.chunk.is_empty() {
                    return Ok(None);
                }
                Ok(Some(&stream.chunk))
            }
        }
    }
}

/// Whether a stream whose HEADERS did not end it has ended since: some clients send a GET
/// and then END_STREAM in an empty DATA frame; read at once (both frames usually came in
/// one read), the request is bodiless rather than of unknown length, which the proxy would
/// send chunked (regression: a GET went up with `transfer-encoding: chunked`). A piece of
/// body read here is kept for the handler.
fn peek_end(stream: &mut Stream) -> bool {
    let Some(recv) = &mut stream.recv else {
        return true;
    };
    // Polled once, without waiting: a later read registers the real waker.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match recv.poll_data(&mut cx) {
        Poll::Ready(None) => true,
        Poll::Ready(Some(Ok(b))) if b.is_empty() => recv.is_end_stream(),
        Poll::Ready(Some(Ok(b))) => {
            stream.first = Some(b);
            false
        }
        Poll::Ready(Some(Err(_))) | Poll::Pending => false,
    }
}

/// Records an HTTP/2 request head in `head`, its bytes copied into `buf`, as the HTTP/1.1
/// parser would have; `end_stream`: the request has no body.
fn request_head(
    parts: &http::request::Parts,
    end_stream: bool,
    limits: &Limits,
    buf: &mut Vec<u8>,
    head: &mut Head,
) -> Result<(), ErrorKind> {
    buf.clear();
    let span = |buf: &mut Vec<u8>, bytes: &[u8]| {
        let start = buf.len() as u32;
        buf.extend_from_slice(bytes);
        Span {
            start,
            end: buf.len() as u32,
        }
    };
    head.method = span(buf, parts.method.as_str().as_bytes());
    head.version = Version::H2;
    head.keep_alive = true;
    head.expect_continue = false;
    head.request_id = None;
    head.host = None;
    head.count = 0;
    head.query = None;
    let target = match parts.uri.path_and_query() {
        Some(pq) => pq.as_str(),
        // CONNECT: the authority is the target (it has no path).
        None => parts.uri.authority().map_or("", |a| a.as_str()),
    };
    if target.len() > limits.max_uri {
        return Err(ErrorKind::UriTooLong);
    }
    head.target = span(buf, target.as_bytes());
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let at = head.target.start;
    head.path = Span {
        start: at,
        end: at + path.len() as u32,
    };
    head.query = query.map(|q| Span {
        start: head.target.end - q.len() as u32,
        end: head.target.end,
    });
    let max_fields = limits.max_headers.min(MAX_HEADERS);
    let push = |head: &mut Head, name: Span, value: Span| {
        if head.count >= max_fields {
            return Err(ErrorKind::HeadersTooLarge);
        }
        head.fields[head.count] = Field { name, value };
        head.count += 1;
        Ok(())
    };
    let mut length = None;
    let mut cookies = 0;
    let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
    for (name, value) in &parts.headers {
        let (n, v) = (name.as_str().as_bytes(), value.as_bytes());
        if !limits.allow_underscores && n.contains(&b'_') {
            continue;
        }
        if n == b"cookie" {
            cookies += 1;
            continue;
        }
        let name_span = span(buf, n);
        let value_span = span(buf, v);
        push(head, name_span, value_span)?;
        match n {
            b"content-length" => {
                let len = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(ErrorKind::BadFraming)?;
                if length.is_some_and(|l| l != len) {
                    return Err(ErrorKind::BadFraming);
                }
                length = Some(len);
            }
            b"host" => {
                if !is_host(v)
                    || head.host.is_some()
                    || authority.is_some_and(|a| !a.eq_ignore_ascii_case(v))
                {
                    return Err(ErrorKind::BadHost);
                }
                head.host = Some(value_span);
            }
            b"x-request-id" => head.request_id = Some(value_span),
            _ => {}
        }
    }
    if cookies > 0 {
        let name = span(buf, b"cookie");
        let start = buf.len() as u32;
        for (i, v) in parts.headers.get_all("cookie").iter().enumerate() {
            if i > 0 {
                buf.extend_from_slice(b"; ");
            }
            buf.extend_from_slice(v.as_bytes());
        }
        let value = Span {
            start,
            end: buf.len() as u32,
        };
        push(head, name, value)?;
    }
    if head.host.is_none()
        && let Some(a) = authority
    {
        if !is_host(a) {
            return Err(ErrorKind::BadHost);
        }
        let name = span(buf, b"host");
        let value = span(buf, a);
        push(head, name, value)?;
        head.host = Some(value);
    }
    if buf.len() > limits.max_head {
        return Err(ErrorKind::HeadersTooLarge);
    }
    head.len = buf.len();
    head.framing = match length {
        Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
        // A body of unknown length: sent on chunked to an HTTP/1.1 upstream.
        None if !end_stream => Framing::Chunked,
        None => Framing::None,
    };
    Ok(())
}

/// What the streams of one connection share.
struct Shared<S: Service> {
    service: Arc<S>,
    limits: Arc<Limits>,
    drain: Arc<Drain>,
    facts: Connection,
    /// Streams in progress, and the connection task, woken when the last one ends (its
    /// idle timeout starts then) and when a client reset is counted.
    active: AtomicUsize,
    idle: AtomicWaker,
    /// Streams the client reset before their responses ended.
    premature: AtomicUsize,
}

impl<S: Service> Shared<S> {
    fn count_premature_reset(&self) {
        self.premature.fetch_add(1, Ordering::Relaxed);
        self.idle.wake();
    }
}

/// Counts one stream in progress.
struct Active<S: Service>(Arc<Shared<S>>);

impl<S: Service> Drop for Active<S> {
    fn drop(&mut self) {
        // The connection task waits for the last stream (its idle timeout starts), or for
        // room below its cap on running streams.
        let before = self.0.active.fetch_sub(1, Ordering::AcqRel);
        if before == 1 || before >= max_running(&self.0.limits) {
            self.0.idle.wake();
        }
    }
}

/// Streams whose handlers may run at once on one connection (see [`serve`]).
fn max_running(limits: &Limits) -> usize {
    2 * (limits.h2.max_concurrent_streams.max(1) as usize)
}

/// The `h2` server settings of `limits`.
fn builder(limits: &Limits) -> ::h2::server::Builder {
    let s = &limits.h2;
    let header_list = if s.max_header_list_size == 0 {
        u32::try_from(limits.max_head).unwrap_or(u32::MAX)
    } else {
        s.max_header_list_size
    };
    let mut b = ::h2::server::Builder::new();
    b.max_concurrent_streams(s.max_concurrent_streams)
        .initial_window_size(s.initial_stream_window)
        .initial_connection_window_size(s.initial_connection_window)
        .max_frame_size(s.max_frame_size.clamp(16_384, 16_777_215))
        .max_header_list_size(header_list)
        .max_send_buffer_size(s.max_send_buffer_size)
        .max_pending_accept_reset_streams(s.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(Some(s.max_local_error_reset_streams));
    b
}

/// Serves one HTTP/2 connection over `stream` until it closes: a handshake within the
/// head timeout, then a task per stream.
pub(crate) async fn serve<S: Service, T: Transport + 'static>(
    stream: T,
    facts: Connection,
    service: Arc<S>,
    limits: Arc<Limits>,
    drain: Arc<Drain>,
) {
    let mut timer = time::sleep(limits.head_timeout);
    let (meter, flood) = Meter::new(stream);
    let mut io = TokioIo::new(meter);
    // h2 drives a borrow of the transport, so that it is ours again for the lingering close.
    if drive(&mut io, &mut timer, facts, service, limits, drain, &flood).await {
        linger(io.get_mut().get_mut(), &mut timer).await;
    }
}

/// [`serve`]'s connection: `true` when it ended in an orderly way (then linger).
async fn drive<S: Service, T: Transport + 'static>(
    io: &mut TokioIo<Meter<T>>,
    timer: &mut Sleep,
    facts: Connection,
    service: Arc<S>,
    limits: Arc<Limits>,
    drain: Arc<Drain>,
    flood: &Flood,
) -> bool {
    let deadline = timer.deadline();
    let conn = {
        let mut handshake = pin!(builder(&limits).handshake::<_, Bytes>(io));
        poll_fn(|cx| {
            if let Poll::Ready(r) = handshake.as_mut().poll(cx) {
                return Poll::Ready(r.ok());
            }
            if expired(timer, deadline, cx) {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        })
        .await
    };
    let Some(mut conn) = conn else {
        return false;
    };
    let idle_timeout = limits.idle_timeout;
    let shared = Arc::new(Shared {
        service,
        limits,
        drain,
        facts,
        active: AtomicUsize::new(0),
        idle: AtomicWaker::new(),
        premature: AtomicUsize::new(0),
    });
    anygate_obs::metrics::count(anygate_obs::metrics::Counter::H2Connection);
    let head_timeout = shared.limits.head_timeout;
    // Handlers still running for streams the client has reset no longer count against
    // `max_concurrent_streams` in h2: past twice that many running, no new stream is taken
    // (they wait in h2, where its own limit on streams reset before they were taken holds).
    let max_running = max_running(&shared.limits);
    let mut closing = false;
    let mut calmed = false;
    let mut accepted = 0usize;
    let mut idle_since: Option<Instant> = None;
    let mut close_by: Option<Instant> = None;
    loop {
        let next = poll_fn(|cx| {
            if !closing && shared.drain.is_draining() {
                // GOAWAY twice (h2: the last stream id, then after a PING the last one
                // processed); open streams finish.
                conn.graceful_shutdown();
                closing = true;
            }
            shared.idle.register(cx.waker());
            let running = shared.active.load(Ordering::Acquire);
            if running < max_running {
                match conn.poll_accept(cx) {
                    Poll::Ready(Some(Ok(pair))) => {
                        flood.accepted();
                        return Poll::Ready(Some(pair));
                    }
                    Poll::Ready(Some(Err(e))) => {
                        if e.is_go_away()
                            && !e.is_remote()
                            && e.reason() == Some(Reason::ENHANCE_YOUR_CALM)
                            && !calmed
                        {
                            anygate_obs::metrics::count(
                                anygate_obs::metrics::Counter::H2LimitFlood,
                            );
                        }
                        return Poll::Ready(None);
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => {}
                }
            } else if conn.poll_closed(cx).is_ready() {
                return Poll::Ready(None);
            }
            // Rapid reset (CVE-2023-44487): h2 bounds streams reset before they were
            // taken; these are the ones reset after, while their work had begun. A client
            // that resets most of what it opens is not using the streams, it is costing us.
            let premature = shared.premature.load(Ordering::Relaxed);
            let calm = if calmed {
                None
            } else if premature >= RESET_FLOOR && premature * 2 > accepted {
                Some(anygate_obs::metrics::Counter::H2ResetFlood)
            } else if flood.is_flooded() {
                // PING, SETTINGS, WINDOW_UPDATE, empty DATA... past the budget (`h2meter`).
                Some(anygate_obs::metrics::Counter::H2ControlFlood)
            } else {
                None
            };
            if let Some(counter) = calm {
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                anygate_obs::metrics::count(counter);
                calmed = true;
                closing = true;
                cx.waker().wake_by_ref();
            }
            if running > 0 {
                idle_since = None;
                close_by = None;
            } else if !closing {
                let deadline = *idle_since.get_or_insert_with(time::now) + idle_timeout;
                arm(timer, deadline);
                if expired(timer, deadline, cx) {
                    conn.graceful_shutdown();
                    closing = true;
                    // Polled again at once, so the GOAWAY leaves.
                    cx.waker().wake_by_ref();
                }
            } else {
                // Closing with no handler left: h2 closes once the client answers the
                // GOAWAY's PING and has read what its streams still hold; one that never
                // does (or stops reading) is dropped after the head timeout, or, while h2
                // still holds response data for it, the idle timeout.
                let wait = if conn.has_streams() {
                    idle_timeout
                } else {
                    head_timeout
                };
                let by = *close_by.get_or_insert_with(|| time::now() + wait);
                arm(timer, by);
                if expired(timer, by, cx) {
                    return Poll::Ready(None);
                }
            }
            Poll::Pending
        })
        .await;
        let Some((req, respond)) = next else {
            // The streams see the connection gone (their sends fail, a proxied request
            // stops waiting); the connection counts as open until they have finished
            // (their access log lines written), within the idle timeout.
            drop(conn);
            let by = time::now() + idle_timeout;
            arm(timer, by);
            poll_fn(|cx| {
                shared.idle.register(cx.waker());
                if shared.active.load(Ordering::Acquire) == 0 || expired(timer, by, cx) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            return true;
        };
        idle_since = None;
        accepted += 1;
        shared.active.fetch_add(1, Ordering::AcqRel);
        // Boxed here: the spawn then moves a pointer, not the stream's whole state machine
        // through its layers (four copies of it cost ~1 000 instructions a stream).
        let stream = Box::pin(serve_stream(req, respond, Active(shared.clone())));
        anygate_runtime::spawn(stream);
    }
}

/// Closes our side, then reads and drops what the client still sends for a moment (as
/// the HTTP/1.1 driver does): closing with unread input would reset the connection, and a
/// reset can destroy the last responses before the client has read them.
async fn linger<T: Transport>(stream: &mut T, timer: &mut Sleep) {
    let deadline = time::now() + super::LINGER_TIME;
    if !super::io::shutdown_until(stream, timer, deadline).await {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut budget = super::LINGER_BYTES;
    while budget > 0 {
        match super::io::read_until(stream, &mut sink, timer, deadline, None).await {
            super::io::ReadOutcome::Data(n) => budget = budget.saturating_sub(n),
            _ => return,
        }
    }
}

/// Answers one stream.
async fn serve_stream<S: Service>(
    req: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    active: Active<S>,
) {
    let shared = &*active.0;
    let limits = &*shared.limits;
    let (parts, recv) = req.into_parts();
    let mut stream = Stream {
        respond,
        send: None,
        recv: Some(recv),
        chunk: Bytes::new(),
        last: Bytes::new(),
        framing: BodyFraming::Unframed,
        prebuilt: None,
        first: None,
        sent: 0,
        ended: false,
        failed: false,
        aborted: false,
        reset_here: false,
    };
    if stream.reset_by_client() {
        // Reset before its task ran (a flood's usual stream): no work for it at all.
        return shared.count_premature_reset();
    }
    let mut heads = pool::take_heads();
    let mut buf = pool::take_output();
    let mut out = pool::take_output();
    let mut scratch = pool::take_output();
    let mut tail = Tail::None;
    let mut timer = time::sleep_until(time::now() + limits.body_timeout);
    let mut state = shared.service.connect();
    let pool::Heads {
        request: head,
        response,
        edits,
    } = &mut *heads;
    edits.clear();
    let mut end_stream = stream.recv.as_ref().is_none_or(RecvStream::is_end_stream);
    if !end_stream
        && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
        && matches!(
            parts.method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::DELETE
        )
    {
        end_stream = peek_end(&mut stream);
    }
    let mut refused = request_head(&parts, end_stream, limits, &mut buf, head).err();
    if refused.is_none()
        && let Framing::Length(n) = head.framing
        && limits.max_body > 0
        && n > limits.max_body
    {
        refused = Some(ErrorKind::BodyTooLarge);
    }
    if refused.is_some() {
        *head = Head::default();
        buf.clear();
    }
    let mut generated = [0u8; 32];
    let id_span = head.request_id.filter(|s| request_id::is_sane(s.get(&buf)));
    if id_span.is_none() {
        generated = fresh_id(head, &buf);
    }
    let request_id: &[u8] = match id_span {
        Some(s) => s.get(&buf),
        None => &generated,
    };
    let date = date::now();
    let req = Request {
        buf: &buf,
        head: &*head,
        request_id,
        peer: shared.facts.peer,
        tls: shared.facts.tls.as_deref(),
    };
    let mut ctx = Ctx::new();
    ctx.bytes_in = buf.len() as u64;
    ctx.tls = shared.facts.tls.is_some();
    let framing = head.framing;
    let mut ex = Exchange {
        io: Wire::H2(&mut stream),
        body: BodyState {
            buf: &mut [],
            start: 0,
            end: 0,
            framing,
            remaining: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            decoder: ChunkedDecoder::new(),
            received: 0,
            limit: limits.max_body,
            timeout: limits.body_timeout,
            // `Expect: 100-continue` (RFC 9113 §8.1: HTTP/2 keeps it): the first read of the
            // body sends the interim `100`.
            send_continue: !end_stream
                && parts
                    .headers
                    .get(http::header::EXPECT)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")),
            done: framing == Framing::None,
            failed: None,
            fills: 0,
            wire: 0,
            rate: limits.min_body_rate,
            started: None,
        },
        timer: &mut timer,
        out: &mut out,
        scratch: &mut scratch,
        tail: &mut tail,
        head_only: req.method() == b"HEAD",
        close: false,
        http10_keep_alive: false,
        request_id,
        date: &date,
        drain: &shared.drain,
        expecting: false,
        status: 0,
        error: None,
        head: response,
        hook: None,
        pages: None,
        edits,
        ctx,
        send_rate: limits.min_send_rate,
        send_started: None,
        grpc: is_grpc(&parts.headers),
    };
    if let Some(kind) = refused {
        ex.error(kind, None);
        ex.h2_finish(limits.idle_timeout).await;
        ex.ctx.status = ex.status;
        ex.ctx.error = ex.error;
        shared.service.rejected(&mut state, &req, &ex.ctx);
    } else {
        let panicked = {
            let mut call = pin!(shared.service.call(&mut state, &req, &mut ex));
            poll_fn(|cx| super::poll_caught(call.as_mut(), cx)).await
        };
        if panicked || !ex.is_sent() {
            let head_left = matches!(&ex.io, Wire::H2(s) if s.send.is_some());
            if head_left {
                ex.abort();
            } else {
                ex.internal_error(0);
            }
        }
        ex.h2_finish(limits.idle_timeout).await;
        ex.ctx.status = ex.status;
        ex.ctx.error = ex.error;
        if ex.ctx.start.is_some() {
            ex.ctx.end = Some(time::precise_now());
        }
        shared.service.finish(&mut state, &req, &ex.ctx);
    }
    drop(ex);
    if stream.reset_by_client() {
        shared.count_premature_reset();
    }
    drop(state);
    out.clear();
    pool::give_output(out);
    pool::give_output(scratch);
    pool::give_output(buf);
    pool::give_heads(heads);
}

/// A transport that first replays bytes already read from it (the HTTP/1.1 driver read
/// the connection preface before it knew the client speaks HTTP/2).
pub(crate) struct Rewind<T> {
    read: Vec<u8>,
    at: usize,
    inner: T,
}

impl<T> Rewind<T> {
    pub(crate) fn new(read: Vec<u8>, inner: T) -> Self {
        Self { read, at: 0, inner }
    }
}

impl<T: Transport> Transport for Rewind<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let left = &self.read[self.at..];
        if left.is_empty() {
            return self.inner.poll_read(cx, buf);
        }
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.at += n;
        Poll::Ready(Ok(n))
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.at < self.read.len() {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_read_ready(cx)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.inner.poll_write(cx, buf)
    }

    fn poll_writev(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.inner.poll_writev(cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.poll_shutdown(cx)
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `read` (the first bytes of a connection, as many as arrived) begins the
/// HTTP/2 preface: at least its request line `PRI * HTTP/2.0`, and nothing that differs.
pub(crate) fn starts_preface(read: &[u8]) -> bool {
    let n = read.len().min(PREFACE.len());
    n >= 14 && read[..n] == PREFACE[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::Request<()>) -> http::request::Parts {
        req.into_parts().0
    }

    #[test]
    fn an_h2_request_head_has_the_h1_shape_with_host_and_joined_cookies() {
        let req = http::Request::builder()
            .method("POST")
            .uri("https://a.example:8443/x/y?q=1")
            .header("cookie", "a=1")
            .header("accept", "*/*")
            .header("cookie", "b=2")
            .header("content-length", "5")
            .header("x_under", "dropped")
            .body(())
            .unwrap();
        let (mut buf, mut head) = (Vec::new(), Head::default());
        request_head(&parts(req), false, &Limits::default(), &mut buf, &mut head).unwrap();
        let fields: Vec<(&[u8], &[u8])> = head
            .fields()
            .iter()
            .map(|f| (f.name.get(&buf), f.value.get(&buf)))
            .collect();
        assert_eq!(head.method.get(&buf), b"POST");
        assert_eq!(head.target.get(&buf), b"/x/y?q=1");
        assert_eq!(head.path.get(&buf), b"/x/y");
        assert_eq!(head.query.unwrap().get(&buf), b"q=1");
        assert_eq!(head.host.unwrap().get(&buf), b"a.example:8443");
        assert_eq!(head.framing, Framing::Length(5));
        assert_eq!(
            fields,
            [
                (&b"accept"[..], &b"*/*"[..]),
                (b"content-length", b"5"),
                (b"cookie", b"a=1; b=2"),
                (b"host", b"a.example:8443"),
            ]
        );
    }

    #[test]
    fn an_h2_request_head_is_refused_as_over_h1() {
        let limits = Limits {
            max_uri: 10,
            max_headers: 2,
            ..Limits::default()
        };
        let check = |req: http::Request<()>| {
            let (mut buf, mut head) = (Vec::new(), Head::default());
            request_head(&parts(req), true, &limits, &mut buf, &mut head).err()
        };
        let long = http::Request::get("http://a/0123456789").body(()).unwrap();
        assert_eq!(check(long), Some(ErrorKind::UriTooLong));
        let mut many = http::Request::get("http://a/").body(()).unwrap();
        for n in ["a", "b", "c"] {
            many.headers_mut()
                .insert(HeaderName::from_static(n), HeaderValue::from_static("1"));
        }
        assert_eq!(check(many), Some(ErrorKind::HeadersTooLarge));
        let other_host = http::Request::get("http://a/")
            .header("host", "b")
            .body(())
            .unwrap();
        assert_eq!(check(other_host), Some(ErrorKind::BadHost));
        let bad_length = http::Request::get("http://a/")
            .header("content-length", "x")
            .body(())
            .unwrap();
        assert_eq!(check(bad_length), Some(ErrorKind::BadFraming));
        let fine = http::Request::get("http://a/").body(()).unwrap();
        assert_eq!(check(fine), None);
    }

    #[test]
    fn connection_specific_fields_never_reach_an_h2_response() {
        let mut head = crate::message::ResponseHead::new(200, "OK");
        for (n, v) in [
            (&b"Connection"[..], &b"close"[..]),
            (b"keep-alive", b"5"),
            (b"transfer-encoding", b"chunked"),
            (b"upgrade", b"x"),
            (b"te", b"gzip"),
            (b"TE", b"Trailers"),
            (b"X-Kept", b"1"),
        ] {
            head.fields.append(n, v);
        }
        let res = response(
            head.status(),
            h2_fields(&head, BodyFraming::Length(3)),
            b"Mon",
            b"id1",
        );
        let mut names: Vec<_> = res.headers().keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "date", "x-kept", "x-request-id"]);
        assert_eq!(res.headers()["content-length"], "3");
    }

    proptest::proptest! {
        /// Whatever fields an HTTP/2 request carries (h2 has checked their syntax), the
        /// recorded head never panics, its spans stay inside the buffer, and a host it
        /// keeps is one the HTTP/1.1 parser would accept.
        #[test]
        fn any_h2_request_head_is_recorded_or_refused_without_panicking(
            path in "/[ -~]{0,40}",
            authority in "[a-zA-Z0-9.:\\[\\]-]{0,20}",
            fields in proptest::collection::vec(("[a-z_-]{1,12}", "[ -~]{0,20}"), 0..140),
            end in proptest::bool::ANY,
        ) {
            let mut builder = http::Request::builder().uri(path.as_str());
            if let Ok(uri) = format!("http://{authority}{path}").parse::<http::Uri>() {
                builder = builder.uri(uri);
            }
            for (n, v) in &fields {
                builder = builder.header(n.as_str(), v.as_str());
            }
            let Ok(req) = builder.body(()) else { return Ok(()) };
            let (mut buf, mut head) = (Vec::new(), Head::default());
            if request_head(&parts(req), end, &Limits::default(), &mut buf, &mut head).is_ok() {
                for f in head.fields() {
                    proptest::prop_assert!(f.name.end as usize <= buf.len());
                    proptest::prop_assert!(f.value.end as usize <= buf.len());
                }
                proptest::prop_assert!(head.target.end as usize <= buf.len());
                if let Some(h) = head.host {
                    proptest::prop_assert!(is_host(h.get(&buf)));
                }
            }
        }
    }

    #[test]
    fn the_preface_is_told_from_http1_methods() {
        assert!(starts_preface(PREFACE));
        assert!(starts_preface(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04"
        ));
        assert!(starts_preface(b"PRI * HTTP/2.0\r\n"));
        assert!(!starts_preface(b"PRI * HTTP/2"));
        assert!(!starts_preface(b"PRI * HTTP/1.1\r\n\r\n"));
        assert!(!starts_preface(b"POST / HTTP/1.1\r\n"));
    }
}
