//! Writing a response into the connection's output buffer.
//!
//! A handler writes exactly one response per request through its [`Exchange`]. The head's fixed
//! part comes from the handler (often pre-serialized at load time); `Date`, `X-Request-Id`
//! and `Connection` are appended here. Responses of pipelined requests accumulate in the
//! buffer and leave in one write. Nothing here allocates once the buffers have grown to
//! their working size.

use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use crate::error::ErrorKind;
use crate::server::Exchange;

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

    /// Whether the connection will be closed after this response.
    pub fn will_close(&self) -> bool {
        self.close
    }

    /// A buffer the handler may use to build a body (kept between requests); pass it back
    /// with [`Exchange::send_scratch`].
    pub fn scratch(&mut self) -> &mut Vec<u8> {
        self.scratch.clear();
        self.scratch
    }

    /// Sends a response whose head (status line and the handler's own fields, each ending
    /// in CRLF, `content-length` included) was built in advance, and its body. For a `HEAD`
    /// request the body is left out.
    pub fn send_prebuilt(&mut self, status: u16, head: &[u8], body: &[u8]) {
        self.out.extend_from_slice(head);
        self.finish_head(status);
        if !self.head_only {
            self.out.extend_from_slice(body);
        }
    }

    /// Like [`Exchange::send_prebuilt`], for a body shared with other responses: when it is
    /// large it is not copied but written after the buffer with `writev`.
    pub fn send_prebuilt_shared(&mut self, status: u16, head: &[u8], body: &Arc<[u8]>) {
        self.send_shared_range(status, head, body, 0..body.len());
    }

    /// Like [`Exchange::send_prebuilt_shared`], for the bytes `range` of `body` (a range
    /// outside the body sends nothing of it).
    pub fn send_shared_range(
        &mut self,
        status: u16,
        head: &[u8],
        body: &Arc<[u8]>,
        range: Range<usize>,
    ) {
        let part = body.get(range.clone()).unwrap_or_default();
        if part.len() <= COPY_LIMIT || self.head_only {
            return self.send_prebuilt(status, head, part);
        }
        self.out.extend_from_slice(head);
        self.finish_head(status);
        *self.tail = Tail::Shared(body.clone(), range);
    }

    /// Sends a prebuilt head (as for [`Exchange::send_prebuilt`]) and a body read from a
    /// file (with `sendfile(2)` where the transport has it). The connection's write timeout
    /// applies between two successful writes, not to the whole body.
    pub fn send_file(&mut self, status: u16, head: &[u8], body: FileBody) {
        self.out.extend_from_slice(head);
        self.finish_head(status);
        if !self.head_only && !body.is_empty() {
            *self.tail = Tail::File(body);
        }
    }

    /// Starts a streamed response: `head` is the status line and the handler's own fields
    /// (each ending in CRLF, framing fields included); the driver adds its fields and the
    /// empty line. The body then goes out with [`Exchange::write_body`]; for a `HEAD` request
    /// it is dropped.
    pub fn start_stream(&mut self, status: u16, head: &[u8]) {
        self.out.extend_from_slice(head);
        self.finish_head(status);
    }

    /// Appends `data` to the body of a response started with [`Exchange::start_stream`],
    /// in the output buffer (sent with the next write or flush; dropped for `HEAD`).
    pub fn push_body(&mut self, data: &[u8]) {
        if !self.head_only {
            self.out.extend_from_slice(data);
        }
    }

    /// Sends `status` with a `content-type` (if any), extra header lines (each `name: value`
    /// ending in CRLF), and `body`.
    pub fn send(
        &mut self,
        status: u16,
        reason: &str,
        content_type: Option<&str>,
        extra: &[u8],
        body: &[u8],
    ) {
        self.status_line(status, reason, content_type, extra, body.len());
        self.finish_head(status);
        if !self.head_only && !bodiless(status) {
            self.out.extend_from_slice(body);
        }
    }

    /// Sends the scratch buffer (see [`Exchange::scratch`]) as the body.
    pub fn send_scratch(&mut self, status: u16, reason: &str, content_type: Option<&str>) {
        self.status_line(status, reason, content_type, b"", self.scratch.len());
        self.finish_head(status);
        if !self.head_only && !bodiless(status) {
            self.out.extend_from_slice(self.scratch);
        }
    }

    /// Sends the JSON error body of SPEC §6 for `kind`, with `extra` header lines (`allow:`
    /// for a 405). `route` names the rule, when one matched.
    pub fn error(&mut self, kind: ErrorKind, route: Option<&str>, extra: &[u8]) {
        if kind.closes() {
            self.close = true;
        }
        self.error = Some(kind);
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
            Some(r) => crate::json::push_string(body, r.as_bytes()),
            None => body.extend_from_slice(b"null"),
        }
        body.extend_from_slice(b"}}");
        self.status_line(
            kind.status(),
            kind.reason(),
            Some("application/json; charset=utf-8"),
            extra,
            self.scratch.len(),
        );
        self.finish_head(kind.status());
        if !self.head_only {
            self.out.extend_from_slice(self.scratch);
        }
    }

    fn status_line(
        &mut self,
        status: u16,
        reason: &str,
        content_type: Option<&str>,
        extra: &[u8],
        len: usize,
    ) {
        let out = &mut *self.out;
        push_status_line(out, status, reason);
        if let Some(ct) = content_type {
            out.extend_from_slice(b"content-type: ");
            out.extend_from_slice(ct.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(extra);
        if !bodiless(status) {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, len);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The fields every response carries, and the empty line.
    fn finish_head(&mut self, status: u16) {
        debug_assert!(self.status == 0, "two responses to one request");
        self.status = status;
        if self.drain.is_draining() || self.expecting {
            self.close = true;
        }
        let out = &mut *self.out;
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(self.date);
        out.extend_from_slice(b"\r\nx-request-id: ");
        out.extend_from_slice(self.request_id);
        out.extend_from_slice(b"\r\n");
        if self.close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if self.http10_keep_alive {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// 1xx, 204 and 304 responses have no body, and here no `Content-Length` (RFC 9110 §8.6:
/// forbidden for 1xx and 204; for 304 it would describe another representation).
fn bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// Appends `HTTP/1.1 STATUS REASON` and CRLF.
pub fn push_status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, usize::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}
