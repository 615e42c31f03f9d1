//! Writing a response into the connection's output buffer.
//!
//! A handler writes exactly one response per request through its [`Exchange`]: it fills
//! the head ([`Exchange::head`], or [`Exchange::respond`]) and sends it with a body
//! ([`Exchange::send`] and its shorthands), or starts a streamed body
//! ([`Exchange::start_stream`]). At that moment, and only then, the head hook (the
//! pipeline's `post` filters) may edit the head, and the h1 codec encodes it, followed by
//! `Date`, `X-Request-Id` and `Connection`. A [`Prebuilt`] response skips the encoding when
//! there is no hook. Responses of pipelined requests accumulate in the buffer and leave in
//! one write. Nothing here allocates once the buffers have grown to their working size.

use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use crate::error::ErrorKind;
use crate::h1::encode::{self, Persistence};
use crate::message::{
    BodyFraming, Fields, Prebuilt, ResponseHead, bodiless, framing_of, is_field_value, is_token,
};
use crate::server::Exchange;
use crate::server::exchange::Wire;

/// Bodies up to this size are copied into the output buffer; larger shared bodies are
/// written from where they are, in the same `writev` as the head.
pub const COPY_LIMIT: usize = 16 * 1024;

/// What leaves after the output buffer, in the same flush.
#[derive(Debug, Default)]
pub(crate) enum Tail {
    /// Nothing: the whole response is in the buffer.
    #[default]
    None,
    /// A part of a shared body, written from where it is with `writev`.
    Shared(Arc<[u8]>, Range<usize>),
    /// Parts of a file, sent with `sendfile`.
    File(FileBody),
}

impl Tail {
    pub(crate) fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }
}

/// A response body sent from a file with `sendfile(2)`: one or more byte ranges of the file,
/// each preceded by bytes of its own (a `multipart/byteranges` part header), then trailing
/// bytes (the closing boundary). The file is read, never copied through user space.
///
/// If the file turns out shorter than promised (it was truncated while being sent), the
/// connection is closed: the `Content-Length` already sent cannot be honoured.
#[derive(Debug)]
pub struct FileBody {
    pub(crate) file: Arc<File>,
    pub(crate) parts: Vec<FilePart>,
    pub(crate) trailer: Vec<u8>,
}

/// One range of a [`FileBody`].
#[derive(Debug)]
pub(crate) struct FilePart {
    pub(crate) before: Vec<u8>,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl FileBody {
    /// `len` bytes of `file` from `offset`.
    pub fn range(file: Arc<File>, offset: u64, len: u64) -> Self {
        Self {
            file,
            parts: vec![FilePart {
                before: Vec::new(),
                offset,
                len,
            }],
            trailer: Vec::new(),
        }
    }

    /// An empty body to which [`FileBody::push`] adds parts.
    pub fn parts(file: Arc<File>) -> Self {
        Self {
            file,
            parts: Vec::new(),
            trailer: Vec::new(),
        }
    }

    /// Adds `before`, then `len` bytes of the file from `offset`.
    pub fn push(&mut self, before: Vec<u8>, offset: u64, len: u64) {
        self.parts.push(FilePart {
            before,
            offset,
            len,
        });
    }

    /// Sets the bytes sent after the last part.
    pub fn set_trailer(&mut self, trailer: Vec<u8>) {
        self.trailer = trailer;
    }

    /// The body's length on the wire.
    pub fn len(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| p.before.len() as u64 + p.len)
            .sum::<u64>()
            + self.trailer.len() as u64
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A response body, as a handler hands it over.
#[derive(Debug)]
pub enum ResponseBody<'a> {
    /// No body bytes (`Content-Length: 0`, or nothing for a bodiless status).
    Empty,
    /// Bytes copied into the output buffer.
    Bytes(&'a [u8]),
    /// A part of a shared body: copied when small, else written from where it is.
    Shared(&'a Arc<[u8]>, Range<usize>),
    /// Parts of a file (`sendfile` where the transport has it).
    File(FileBody),
}

impl ResponseBody<'_> {
    fn len(&self) -> u64 {
        match self {
            Self::Empty => 0,
            Self::Bytes(b) => b.len() as u64,
            Self::Shared(b, r) => b.get(r.clone()).map_or(0, |p| p.len() as u64),
            Self::File(f) => f.len(),
        }
    }
}

/// Called with each response head before it is encoded (the pipeline's `post` filters).
///
/// The hook edits the head's fields; the status is read from `ctx.status` and cannot be
/// changed (the body is already framed for it). Afterwards the driver drops, among the
/// fields the hook added (or replaced), those it writes itself (`Content-Length`,
/// `Transfer-Encoding`, `Date`, `X-Request-Id`) and any whose name is not a token or whose
/// value holds CR, LF or NUL. The fields the action built are not checked again.
pub trait HeadHook: Send + Sync {
    /// May edit `fields`; `ctx` says what is known of the request so far.
    fn on_head(&self, ctx: &super::Ctx, fields: &mut Fields);
}

/// Fields the driver writes itself: a hook cannot add them.
pub(crate) fn driver_owned(name: &[u8]) -> bool {
    [
        &b"content-length"[..],
        b"transfer-encoding",
        b"date",
        b"x-request-id",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

/// The response.
impl Exchange<'_> {
    /// Whether a response has been written.
    pub fn is_sent(&self) -> bool {
        self.status != 0
    }

    /// The status written (0 before).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The error kind, when the response is an error.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.error
    }

    /// The request id this response carries.
    pub fn request_id(&self) -> &[u8] {
        self.request_id
    }

    /// Closes the connection after this response.
    pub fn close(&mut self) {
        self.close = true;
    }

    /// Cuts a response already started short: over HTTP/1.1 the connection closes (the
    /// client sees the body end early); over HTTP/2 the stream is reset (`INTERNAL_ERROR`),
    /// never ended as if complete, and the connection stays.
    pub fn abort(&mut self) {
        self.close = true;
        if let Wire::H2(stream) = &mut self.io {
            stream.abort();
        }
    }

    /// Whether the connection will be closed after this response.
    pub fn will_close(&self) -> bool {
        self.close
    }

    /// Installs the hook that sees (and may edit) the response head before it is encoded.
    pub fn set_head_hook(&mut self, hook: Arc<dyn HeadHook>) {
        self.hook = Some(hook);
    }

    /// Sets the request's error pages (`html`: the client asked for HTML); the last call
    /// wins (the pipeline sets the top level's, then the rule's).
    pub fn set_error_pages(&mut self, pages: Arc<super::ErrorPages>, html: bool) {
        self.pages = Some((pages, html));
    }

    /// Whether an upstream response with `status` is to be replaced by an error page
    /// (`intercept_upstream` and a page for it that this client takes).
    pub fn intercepts(&self, status: u16) -> bool {
        status >= 400
            && self
                .pages
                .as_ref()
                .is_some_and(|(p, html)| p.intercept_upstream && p.pick(status, *html).is_some())
    }

    /// Sends the error page for `status` (see [`Exchange::intercepts`]); nothing happens
    /// when there is none.
    pub fn send_error_page(&mut self, status: u16, reason: &'static str) {
        self.send_page(status, reason, &[]);
    }

    /// Sends the page for `status`, if this request has one the client takes; whether it
    /// did.
    fn send_page(&mut self, status: u16, reason: &'static str, extra: &[(&[u8], &[u8])]) -> bool {
        let Some((pages, html)) = self.pages.take() else {
            return false;
        };
        let sent = match pages.pick(status, html) {
            Some(page) => {
                self.head.reset(status, reason);
                self.head
                    .fields
                    .append(b"content-type", page.content_type.as_bytes());
                for (name, value) in extra {
                    self.head.fields.append(name, value);
                }
                self.send(ResponseBody::Bytes(&page.body));
                true
            }
            None => false,
        };
        self.pages = Some((pages, html));
        sent
    }

    /// Whether a head hook is installed (a [`Prebuilt`] response then goes through the
    /// structured head).
    pub fn has_head_hook(&self) -> bool {
        self.hook.is_some()
    }

    /// A buffer the handler may use to build a body (kept between requests); pass it back
    /// with [`Exchange::send_scratch`].
    pub fn scratch(&mut self) -> &mut Vec<u8> {
        self.scratch.clear();
        self.scratch
    }

    /// The head of the response being built (edit it, then send).
    pub fn head(&mut self) -> &mut ResponseHead {
        self.head
    }

    /// Starts the response over with `status` and `reason`, and returns its head.
    pub fn respond(&mut self, status: u16, reason: &'static str) -> &mut ResponseHead {
        self.head.reset(status, reason);
        self.head
    }

    /// Sends the head built so far with `body`, framed by its length (none for a bodiless
    /// status). For a `HEAD` request the body bytes are left out.
    pub fn send(&mut self, body: ResponseBody<'_>) {
        let status = self.head.status();
        let len = body.len();
        let framing = framing_of(status, len as usize);
        self.commit(framing);
        if self.head_only || bodiless(status) {
            return;
        }
        self.ctx.bytes_out += len;
        match body {
            ResponseBody::Empty => {}
            ResponseBody::Bytes(b) => self.out.extend_from_slice(b),
            ResponseBody::Shared(b, range) => {
                let part = b.get(range.clone()).unwrap_or_default();
                if part.len() <= COPY_LIMIT {
                    self.out.extend_from_slice(part);
                } else {
                    *self.tail = Tail::Shared(b.clone(), range);
                }
            }
            ResponseBody::File(f) if f.is_empty() => {}
            ResponseBody::File(f) => *self.tail = Tail::File(f),
        }
    }

    /// Sends a response fixed at load time: its encoded bytes as they are, or, when a head
    /// hook is installed or a filter queued response fields, its head through them.
    pub fn send_prebuilt(&mut self, p: &Prebuilt) {
        if self.hook.is_some() || self.edits.has_response_fields() {
            self.head.copy_from(&p.head);
            let len = p.body.len();
            return self.send(ResponseBody::Shared(&p.body, 0..len));
        }
        self.write_prebuilt(p);
    }

    /// Sends a response fixed at load time whose head already went through the rule's
    /// `post` phase (computed at load, for a phase that depends on nothing but the TLS
    /// flag): its encoded bytes as they are, the head hook skipped. With response fields
    /// queued by a filter it is the caller's job to send the original through the hook.
    pub fn send_prebuilt_posted(&mut self, p: &Prebuilt) {
        debug_assert!(!self.edits.has_response_fields());
        self.ctx.status = p.status();
        self.write_prebuilt(p);
    }

    /// A prebuilt response's encoded head and its body, as they are.
    fn write_prebuilt(&mut self, p: &Prebuilt) {
        if let Wire::H2(_) = self.io {
            return self.h2_prebuilt(p);
        }
        let at = self.out.len();
        self.out.extend_from_slice(&p.wire);
        self.head_committed(p.status(), at);
        if !self.head_only && !p.body.is_empty() {
            self.ctx.bytes_out += p.body.len() as u64;
            if p.body.len() <= COPY_LIMIT {
                self.out.extend_from_slice(&p.body);
            } else {
                *self.tail = Tail::Shared(p.body.clone(), 0..p.body.len());
            }
        }
    }

    /// Starts a streamed response with the head built so far and `framing`; the body then
    /// goes out with [`Exchange::write_body`] and [`Exchange::push_body`] (already chunked
    /// for [`BodyFraming::Chunked`]); for a `HEAD` request it is dropped.
    pub fn start_stream(&mut self, framing: BodyFraming) {
        self.commit(framing);
    }

    /// Appends `data` to the body of a response started with [`Exchange::start_stream`],
    /// in the output buffer (sent with the next write or flush; dropped for `HEAD`).
    pub fn push_body(&mut self, data: &[u8]) {
        if !self.head_only {
            self.ctx.bytes_out += data.len() as u64;
            self.out.extend_from_slice(data);
        }
    }

    /// Sends `status` with a `content-type` (if any) and `body`.
    pub fn send_bytes(
        &mut self,
        status: u16,
        reason: &'static str,
        content_type: Option<&str>,
        body: &[u8],
    ) {
        let head = self.respond(status, reason);
        if let Some(ct) = content_type {
            head.fields.append(b"content-type", ct.as_bytes());
        }
        self.send(ResponseBody::Bytes(body));
    }

    /// Sends the scratch buffer (see [`Exchange::scratch`]) as the body.
    pub fn send_scratch(&mut self, status: u16, reason: &'static str, content_type: Option<&str>) {
        self.head.reset(status, reason);
        if let Some(ct) = content_type {
            self.head.fields.append(b"content-type", ct.as_bytes());
        }
        let scratch = std::mem::take(self.scratch);
        self.send(ResponseBody::Bytes(&scratch));
        *self.scratch = scratch;
    }

    /// Sends the JSON error body of SPEC §6 for `kind`. `route` names the rule, when one
    /// matched.
    pub fn error(&mut self, kind: ErrorKind, route: Option<&str>) {
        self.error_with(kind, route, &[]);
    }

    /// Like [`Exchange::error`], with extra fields (`allow` for a 405, say).
    pub fn error_with(&mut self, kind: ErrorKind, route: Option<&str>, extra: &[(&[u8], &[u8])]) {
        if kind.closes() {
            self.close = true;
        }
        self.error = Some(kind);
        if self.grpc {
            return self.grpc_error(kind);
        }
        if self.pages.is_some() && self.send_page(kind.status(), kind.reason(), extra) {
            return;
        }
        let body = &mut *self.scratch;
        body.clear();
        body.extend_from_slice(b"{\"error\":{\"code\":\"");
        body.extend_from_slice(kind.code().as_bytes());
        body.extend_from_slice(b"\",\"message\":\"");
        body.extend_from_slice(kind.message().as_bytes());
        body.extend_from_slice(b"\",\"status\":");
        push_decimal(body, kind.status() as usize);
        body.extend_from_slice(b"},\"trace\":{\"trace_id\":\"");
        body.extend_from_slice(self.request_id);
        body.extend_from_slice(b"\",\"route\":");
        match route {
            Some(r) => anygate_obs::escape::json_str(body, r.as_bytes()),
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(b"}}");
        self.head.reset(kind.status(), kind.reason());
        self.head
            .fields
            .append(b"content-type", b"application/json; charset=utf-8");
        for (name, value) in extra {
            self.head.fields.append(name, value);
        }
        let scratch = std::mem::take(self.scratch);
        self.send(ResponseBody::Bytes(&scratch));
        *self.scratch = scratch;
    }

    /// Replaces whatever the handler wrote after `out_before` (it panicked, or wrote no
    /// response) with a clean 500.
    #[cold]
    pub(crate) fn internal_error(&mut self, out_before: usize) {
        self.out.truncate(out_before);
        *self.tail = Tail::None;
        self.status = 0;
        self.ctx.bytes_out = 0;
        self.hook = None;
        self.error(ErrorKind::Internal, None);
    }

    /// Runs the hook on the head and encodes it with `framing`, then the connection's
    /// fields.
    pub(crate) fn commit(&mut self, framing: BodyFraming) {
        // What the action built is trusted, and what `pre` queued was checked when it was
        // queued (`add_response_field`); only what the hook adds is checked here.
        self.head.fields.extend_from(self.edits.response_fields());
        if let Some(hook) = &self.hook {
            self.ctx.status = self.head.status();
            let start = self
                .ctx
                .marks
                .is_some()
                .then(anygate_runtime::time::precise_now);
            let mark = self.head.fields.mark();
            hook.on_head(&self.ctx, &mut self.head.fields);
            self.head.fields.retain_added(mark, |n, v| {
                is_token(n) && is_field_value(v) && !driver_owned(n)
            });
            if let (Some(start), Some(m)) = (start, &mut self.ctx.marks) {
                m.post = Some((start, anygate_runtime::time::precise_now()));
            }
        }
        if let Wire::H2(stream) = &mut self.io {
            stream.set_framing(framing);
            return self.h2_committed();
        }
        let at = self.out.len();
        encode::response_head(self.out, self.head, framing);
        self.head_committed(self.head.status(), at);
    }

    /// The head's own bytes are in `out[at..]`: adds the fields every response carries and
    /// the empty line, and records the response.
    fn head_committed(&mut self, status: u16, at: usize) {
        debug_assert!(self.status == 0, "two responses to one request");
        self.status = status;
        if self.drain.is_draining() || self.expecting {
            self.close = true;
        }
        let persistence = if self.close {
            Persistence::Close
        } else if self.http10_keep_alive {
            Persistence::KeepAlive10
        } else {
            Persistence::KeepAlive
        };
        encode::connection_fields(self.out, self.date, self.request_id, persistence);
        self.ctx.bytes_out += (self.out.len() - at) as u64;
        // Timed only for a request something observes (the pipeline set `start`).
        if self.ctx.start.is_some() {
            self.ctx.first_byte = Some(anygate_runtime::time::precise_now());
        }
    }
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, n: usize) {
    encode::push_u64(out, n as u64);
}
