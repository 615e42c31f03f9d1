//! One request's exchange with the client: the one value a handler reads the body from,
//! writes the response into, and (for the proxy) watches the client and takes the
//! connection over after `101 Switching Protocols`.
//!
//! The driver owns the connection's transport and lends it to the exchange for the
//! duration of one request; a handler never sees the transport itself, only what the
//! exchange offers: [`Exchange::body_chunk`], the `send_*` family, [`Exchange::write_body`],
//! [`Exchange::unless_client_gone`] and [`Exchange::upgrade`]. One owner, so a transport
//! that needs `&mut` access (TLS) fits, and nothing reaches past the driver into a socket.

use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use anygate_runtime::time::Sleep;
use anygate_runtime::transport::Transport;

use crate::error::ErrorKind;
use crate::message::ResponseHead;
use crate::server::Drain;
use crate::server::body::BodyState;
use crate::server::io::{Pace, writev_progress};
use crate::server::response::{HeadHook, Tail};

/// What is known of one request as it goes, protocol-neutral: the driver fills timing,
/// sizes, status and error; the pipeline and the actions fill route, action, upstream and
/// attempt. It reaches the end of the request ([`crate::Service::finish`]), where access
/// logs and metrics read it.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The matched rule's id (its index in the configuration), if one matched.
    pub route: Option<u32>,
    /// The action kind (`fixed`, `echo`, `static`, `proxy`), once dispatched.
    pub action: Option<&'static str>,
    /// The upstream address of the last attempt (proxy).
    pub upstream: Option<SocketAddr>,
    /// Attempts made at the upstream (proxy; 0 when none).
    pub attempt: u8,
    /// When the request was routed (the worker's cached clock). Timing is recorded only for
    /// requests that something observes (a chain with an `observe` phase): reading the
    /// clock costs the other paths nothing then.
    pub start: Option<Instant>,
    /// When the response head was encoded (recorded when `start` is).
    pub first_byte: Option<Instant>,
    /// Bytes of the request read from the connection: the head and the body (framing
    /// included) as far as it was read.
    pub bytes_in: u64,
    /// Bytes of the response produced for the connection: head, fields and body.
    pub bytes_out: u64,
    /// The response status (0 until sent).
    pub status: u16,
    /// The error, when the response is an error.
    pub error: Option<ErrorKind>,
    /// The client's address: the peer's, or, when the peer is a trusted proxy, the
    /// right-most untrusted hop of its `X-Forwarded-For` chain (set by the pipeline; what
    /// logs, rate limits and IP rules read).
    pub client: Option<IpAddr>,
    /// Whether the peer is a trusted proxy (`server.trusted_proxies`): then its forwarding
    /// fields are kept and extended, otherwise replaced.
    pub peer_trusted: bool,
    /// Whether the request came over TLS.
    pub tls: bool,
    /// When the response was over (stamped by the driver for timed requests, before
    /// [`crate::Service::finish`]).
    pub end: Option<Instant>,
    /// The request's place in a trace, when tracing is on (set by the pipeline).
    pub trace: Option<TraceCtx>,
    /// The instants of its phases, for a sampled trace only (boxed: an unsampled or
    /// untraced request allocates nothing and keeps a small context).
    pub marks: Option<Box<Marks>>,
    /// How the static action answered: bits of `anygate_obs::metrics::static_kind`
    /// (0 for other actions).
    pub static_kinds: u8,
    /// How long opening the upstream connection took, when the proxy opened one for this
    /// request and the request is timed (`start` is set).
    pub connect: Option<Duration>,
}

/// A traced request's W3C Trace Context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceCtx {
    /// The trace.
    pub trace_id: [u8; 16],
    /// This request's `server.request` span.
    pub span_id: [u8; 8],
    /// The caller's span (its `traceparent`), if any.
    pub parent: Option<[u8; 8]>,
    /// Whether the trace is sampled (the caller's flag, or our own draw).
    pub sampled: bool,
}

/// The instants of a traced request's phases, for its spans.
#[derive(Clone, Copy, Debug, Default)]
pub struct Marks {
    /// The router answered.
    pub routed: Option<Instant>,
    /// The chain's `pre` phase ended.
    pub pre_end: Option<Instant>,
    /// The chain's `post` phase ran (start, end).
    pub post: Option<(Instant, Instant)>,
    /// The proxy connected to its upstream (start, end), when it opened a connection.
    pub connect: Option<(Instant, Instant)>,
    /// The proxy's last attempt: the span id it sent upstream in `traceparent`, when it
    /// started writing the request, when the response head arrived (or the attempt
    /// failed).
    pub upstream: Option<([u8; 8], Instant, Instant)>,
}

impl Default for Ctx {
    fn default() -> Self {
        Self::new()
    }
}

impl Ctx {
    /// An empty context.
    pub const fn new() -> Self {
        Self {
            route: None,
            action: None,
            upstream: None,
            attempt: 0,
            start: None,
            first_byte: None,
            bytes_in: 0,
            bytes_out: 0,
            status: 0,
            error: None,
            client: None,
            peer_trusted: false,
            tls: false,
            end: None,
            trace: None,
            marks: None,
            static_kinds: 0,
            connect: None,
        }
    }
}

/// What carries one exchange: the HTTP/1.x connection itself, or one HTTP/2 stream. Every
/// method of [`Exchange`] that touches the wire matches on it once; the HTTP/2 arms call
/// out-of-line functions (`server/http2.rs`), so the HTTP/1.1 paths stay as they were.
pub(crate) enum Wire<'c> {
    /// The client connection (HTTP/1.x).
    H1(&'c mut dyn Transport),
    /// One stream of an HTTP/2 connection.
    H2(&'c mut super::http2::Stream),
}

/// The exchange of one request: its body, its response, and the client connection under
/// the driver's control.
pub struct Exchange<'c> {
    /// The client connection, or the request's HTTP/2 stream.
    pub(crate) io: Wire<'c>,
    /// The request body, read through [`Exchange::body_chunk`].
    pub(crate) body: BodyState<'c>,
    /// The connection's timer (body reads, `100 Continue`).
    pub(crate) timer: &'c mut Sleep,
    pub(crate) out: &'c mut Vec<u8>,
    pub(crate) scratch: &'c mut Vec<u8>,
    pub(crate) tail: &'c mut Tail,
    pub(crate) head_only: bool,
    pub(crate) close: bool,
    pub(crate) http10_keep_alive: bool,
    pub(crate) request_id: &'c [u8],
    pub(crate) date: &'c [u8],
    /// A drain that starts while the handler runs still closes the connection after it.
    pub(crate) drain: &'c Drain,
    /// Set while the client waits for `100 Continue` (cleared when the body is read): a
    /// response written then ends the connection, and says so.
    pub(crate) expecting: bool,
    pub(crate) status: u16,
    pub(crate) error: Option<ErrorKind>,
    /// The response head being built (the connection's, reused).
    pub(crate) head: &'c mut ResponseHead,
    /// Sees the head before it is encoded.
    pub(crate) hook: Option<Arc<dyn HeadHook>>,
    /// The request's error pages, and whether the client asked for HTML.
    pub(crate) pages: Option<(Arc<super::ErrorPages>, bool)>,
    /// What the filters changed about the request and add to its response.
    pub(crate) edits: &'c mut crate::server::Edits,
    pub(crate) ctx: Ctx,
    /// The slowest average rate a streamed response may be written at, and when its first
    /// write began.
    pub(crate) send_rate: crate::limits::MinRate,
    pub(crate) send_started: Option<Instant>,
    /// The request is a gRPC call (HTTP/2, `content-type: application/grpc…`): the
    /// gateway's own errors answer it as gRPC statuses.
    pub(crate) grpc: bool,
}

impl std::fmt::Debug for Exchange<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("status", &self.status)
            .field("close", &self.close)
            .field("body", &self.body)
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

/// The request's context.
impl Exchange<'_> {
    /// What is known of the request so far.
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// The context, for the pipeline and the actions to fill in.
    pub fn ctx_mut(&mut self) -> &mut Ctx {
        &mut self.ctx
    }
}

/// The client connection after `101 Switching Protocols`: the bytes it sent after its
/// request head, and the transport, for a tunnel. The connection closes afterwards.
pub struct Upgraded<'e> {
    /// What the client sent after its head (a tunnel's first bytes).
    pub pending: &'e [u8],
    /// The client connection.
    pub io: &'e mut dyn Transport,
}

impl std::fmt::Debug for Upgraded<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// The client connection.
impl Exchange<'_> {
    /// Writes what is pending in the output buffer (earlier pipelined responses, the head
    /// of [`Exchange::start_stream`]) and then `data`, straight to the client, allowing
    /// `timeout` between two writes that make progress. `false` when the client is gone or
    /// too slow: the connection then closes.
    pub async fn write_body(&mut self, data: &[u8], timer: &mut Sleep, timeout: Duration) -> bool {
        if let Wire::H2(_) = self.io {
            // Boxed: the HTTP/1.1 future does not carry the HTTP/2 one's state.
            return Box::pin(self.h2_write_body(data, timer, timeout)).await;
        }
        let Wire::H1(io) = &mut self.io else {
            return false;
        };
        let io = &mut **io;
        let data = if self.head_only { &[][..] } else { data };
        if self.out.is_empty() && data.is_empty() {
            return true;
        }
        self.ctx.bytes_out += data.len() as u64;
        // The average rate counts from the first write of the response; what went before
        // this call was `bytes_out` less what is being written now.
        let started = *self
            .send_started
            .get_or_insert_with(anygate_runtime::time::now);
        let mut pace = Pace {
            stall: timeout,
            rate: self.send_rate,
            started,
            // (`out` may also hold an earlier pipelined response, counted in its own
            // request's context.)
            sent: self
                .ctx
                .bytes_out
                .saturating_sub((self.out.len() + data.len()) as u64),
        };
        let ok = writev_progress(io, [self.out, data], timer, &mut pace).await;
        self.out.clear();
        if !ok {
            self.close = true;
        }
        ok
    }

    /// Runs `fut` (pinned by the caller, so that it is stored once) while watching the
    /// client: `None` when the client closed its connection (or it failed) first; the
    /// caller then drops `fut`. Bytes of a next request show the client is there, and end
    /// the watch. A transport that cannot peek is not watched.
    pub async fn unless_client_gone<F: Future>(
        &mut self,
        mut fut: std::pin::Pin<&mut F>,
    ) -> Option<F::Output> {
        let mut watching = true;
        let mut byte = [0u8; 1];
        let io = &mut self.io;
        poll_fn(|cx| {
            if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            let io = match io {
                Wire::H1(io) => &mut **io,
                Wire::H2(stream) => {
                    return match stream.poll_reset(cx) {
                        Poll::Ready(()) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    };
                }
            };
            if watching {
                match io.poll_peek(cx, &mut byte) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(None),
                    Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                        watching = false;
                    }
                    Poll::Ready(Err(e)) if e.kind() != std::io::ErrorKind::WouldBlock => {
                        return Poll::Ready(None);
                    }
                    // Data (a next request) keeps the socket readable: stop looking.
                    Poll::Ready(_) => watching = false,
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Whether the request is a gRPC call (over HTTP/2, `content-type: application/grpc`);
    /// the gateway's own errors then answer it with HTTP 200 and a `grpc-status`.
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }

    /// Takes an HTTP/2 request's body out of the exchange, for a handler that reads it
    /// while it writes the response (the proxy, for gRPC streams); `None` over HTTP/1.x, or
    /// when it was taken. The exchange's own body reads then see the body ended.
    pub fn take_h2_body(&mut self) -> Option<super::H2Body> {
        if let Wire::H2(_) = self.io {
            return self.h2_take_body();
        }
        None
    }

    /// Ends a streamed response with a trailer section (`trailers`; fields that describe
    /// the connection or the framing are left out). Over HTTP/2, the head and what is
    /// pending go first, then the trailers end the stream; over HTTP/1.1 the response must
    /// have been started with [`BodyFraming::Chunked`](crate::message::BodyFraming): the
    /// last chunk and the trailers are queued in the output. `false` when the client is gone.
    pub async fn send_trailers(
        &mut self,
        trailers: &crate::message::Fields,
        timer: &mut Sleep,
        timeout: Duration,
    ) -> bool {
        if let Wire::H2(_) = self.io {
            return Box::pin(self.h2_send_trailers(trailers, timer, timeout)).await;
        }
        if self.head_only || crate::message::bodiless(self.status) {
            return true;
        }
        let at = self.out.len();
        self.out.extend_from_slice(b"0\r\n");
        for (name, value) in trailers.iter() {
            if crate::message::is_token(name)
                && crate::message::is_field_value(value)
                && !crate::message::is_hop_by_hop(name)
                && !crate::server::response::driver_owned(name)
            {
                crate::h1::encode::field(self.out, name, value);
            }
        }
        self.out.extend_from_slice(b"\r\n");
        self.ctx.bytes_out += (self.out.len() - at) as u64;
        true
    }

    /// Takes the connection over after a `101` response started with
    /// [`Exchange::start_stream`]: the head (and anything pending) is written first, within
    /// `timeout` between writes. `None` when the client is gone. The connection closes once
    /// the handler returns.
    pub async fn upgrade(&mut self, timer: &mut Sleep, timeout: Duration) -> Option<Upgraded<'_>> {
        self.close = true;
        if let Wire::H2(_) = self.io {
            // HTTP/2 has no upgrade (RFC 9113 §8.6); extended CONNECT is not offered.
            return None;
        }
        if !self.write_body(&[], timer, timeout).await {
            return None;
        }
        let pending = if self.body.framing == crate::h1::parse::Framing::None {
            let (from, to) = (self.body.start, self.body.end);
            self.body.start = to;
            self.ctx.bytes_in += (to - from) as u64;
            &self.body.buf[from..to]
        } else {
            &[]
        };
        let Wire::H1(io) = &mut self.io else {
            return None;
        };
        Some(Upgraded {
            pending,
            io: &mut **io,
        })
    }
}
