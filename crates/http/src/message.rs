//! The exchange model, independent of the wire version: a response head (status and an
//! ordered field list that filters may edit until it is encoded), how its body is framed,
//! and the protocol version. Sans-I/O; nothing here knows HTTP/1.1 syntax: the h1 codec
//! ([`crate::h1::encode`]) turns a head into bytes, and an HTTP/2 driver would map the same
//! head onto its frames.
//!
//! # Invariants
//! - [`Fields`] keep their order; names are compared case-insensitively.
//! - Clearing a head keeps its buffers: a head reused for every response of a connection
//!   allocates nothing once warm.
//! - [`Fields`] keeps each field as the line HTTP/1.1 sends (`name: value` and CRLF), so
//!   that the h1 encoder copies runs of contiguous fields at once, usually the whole list
//!   in one copy: an encoding cache, as [`Prebuilt`] is for whole responses. Names and
//!   values are read back as pairs; an HTTP/2 driver reads them the same way.
//! - Field names and values are not checked here (the codec writes them as they are):
//!   whoever fills a head passes validated bytes (parsed by httparse, or checked when the
//!   configuration was loaded); [`is_field_value`] and [`is_token`] are the checks.

use std::sync::Arc;

/// The protocol version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
    /// HTTP/2.
    Http2,
}

impl Version {
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http10 => "HTTP/1.0",
            Self::Http11 => "HTTP/1.1",
            Self::Http2 => "HTTP/2",
        }
    }
}

/// One field: offsets into [`Fields`]' byte store, where it is `name: value` and CRLF.
#[derive(Clone, Copy, Debug)]
struct Span {
    /// Where the name (and the line) starts.
    name: u32,
    /// Where the name ends.
    name_end: u32,
    /// Where the value starts.
    value: u32,
    /// Where the value ends.
    end: u32,
    /// Where the line ends (after its CRLF).
    line_end: u32,
}

impl Span {
    fn line_end(self) -> u32 {
        self.line_end
    }
}

/// An ordered list of header fields, stored in one byte buffer.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    bytes: Vec<u8>,
    spans: Vec<Span>,
}

impl Fields {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes every field (the buffers are kept).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there is no field.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Appends `name: value`.
    #[inline(always)]
    pub fn append(&mut self, name: &[u8], value: &[u8]) {
        debug_assert!(
            is_token(name) && is_field_value(value),
            "{name:?}: {value:?}"
        );
        let at = self.bytes.len();
        self.bytes.reserve(name.len() + value.len() + 4);
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(b": ");
        self.bytes.extend_from_slice(value);
        self.bytes.extend_from_slice(b"\r\n");
        let value_at = at + name.len() + 2;
        self.spans.push(Span {
            name: at as u32,
            name_end: (at + name.len()) as u32,
            value: value_at as u32,
            end: (value_at + value.len()) as u32,
            line_end: self.bytes.len() as u32,
        });
    }

    /// Replaces the list by the field lines `block` (a received head's fields, each line
    /// ending in CRLF, copied at once); `fields` gives each field's name and value as
    /// offsets into `block`, in order. Lines are kept as they came (for relaying); a span
    /// out of the block's bounds, or out of order, ends the list there.
    pub fn set_lines(&mut self, block: &[u8], fields: impl Iterator<Item = FieldOffsets>) {
        self.clear();
        self.bytes.extend_from_slice(block);
        let mut fields = fields.peekable();
        while let Some(f) = fields.next() {
            let line_end = fields.peek().map_or(block.len(), |next| next.name);
            if !(f.name <= f.name_end
                && f.name_end <= f.value
                && f.value <= f.end
                && f.end <= line_end)
                || line_end > block.len()
            {
                break;
            }
            self.spans.push(Span {
                name: f.name as u32,
                name_end: f.name_end as u32,
                value: f.value as u32,
                end: f.end as u32,
                line_end: line_end as u32,
            });
        }
    }

    /// Appends `name: n` (decimal).
    pub fn append_u64(&mut self, name: &[u8], n: u64) {
        let mut digits = [0u8; 20];
        let d = decimal(n, &mut digits);
        self.append(name, d);
    }

    /// Replaces every field named `name` by one `name: value` (at the end).
    pub fn set(&mut self, name: &[u8], value: &[u8]) {
        self.remove(name);
        self.append(name, value);
    }

    /// Removes every field named `name`; whether there was one.
    pub fn remove(&mut self, name: &[u8]) -> bool {
        let before = self.spans.len();
        self.retain(|n, _| !n.eq_ignore_ascii_case(name));
        self.spans.len() != before
    }

    /// Where the next appended field will start: pass it to [`Fields::retain_added`] to
    /// look only at the fields appended since.
    pub fn mark(&self) -> usize {
        self.bytes.len()
    }

    /// Keeps the fields appended after `mark` (see [`Fields::mark`]) for which
    /// `keep(name, value)` holds, and every field that was there before, in order. Appends
    /// always write at the end of the buffer (a removal never reuses it), so a field is new
    /// exactly when it starts at or after the mark.
    pub fn retain_added(&mut self, mark: usize, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        let bytes = &self.bytes;
        self.spans.retain(|s| {
            (s.name as usize) < mark || {
                let (n, v) = field(bytes, s);
                keep(n, v)
            }
        });
    }

    /// Keeps the fields for which `keep(name, value)` holds, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        let bytes = &self.bytes;
        self.spans.retain(|s| {
            let (n, v) = field(bytes, s);
            keep(n, v)
        });
    }

    /// The first value of `name`.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether a field is named `name`.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }

    /// The fields, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans.iter().map(|s| field(&self.bytes, s))
    }

    /// Appends every field of `other`.
    pub fn extend_from(&mut self, other: &Fields) {
        if other.is_empty() {
            return;
        }
        self.bytes.reserve(other.bytes.len());
        for (n, v) in other.iter() {
            self.append(n, v);
        }
    }

    /// The fields as HTTP/1.1 field lines, in runs of contiguous lines (one run unless
    /// fields were removed): what the h1 encoder copies.
    pub(crate) fn line_runs(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut i = 0;
        std::iter::from_fn(move || {
            let first = *self.spans.get(i)?;
            let mut end = first.line_end();
            i += 1;
            while let Some(next) = self.spans.get(i).filter(|s| s.name == end) {
                end = next.line_end();
                i += 1;
            }
            self.bytes.get(first.name as usize..end as usize)
        })
    }
}

/// Where one field of a block of field lines is (see [`Fields::set_lines`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldOffsets {
    /// The name's start (the line's start).
    pub name: usize,
    /// The name's end.
    pub name_end: usize,
    /// The value's start.
    pub value: usize,
    /// The value's end.
    pub end: usize,
}

fn field<'a>(bytes: &'a [u8], s: &Span) -> (&'a [u8], &'a [u8]) {
    let name = bytes
        .get(s.name as usize..s.name_end as usize)
        .unwrap_or_default();
    let value = bytes
        .get(s.value as usize..s.end as usize)
        .unwrap_or_default();
    (name, value)
}

/// `n` in decimal, written at the end of `digits` (no allocation, no `core::fmt`).
pub fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

/// The fields that describe one connection, not the message (RFC 9110 §7.6.1, and RFC
/// 2616's `Proxy-Authenticate`/`Proxy-Authorization`): a proxy never forwards them.
pub const HOP_BY_HOP: [&[u8]; 9] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-authenticate",
    b"proxy-authorization",
];

/// Fields that describe an HTTP/1.1 connection, which HTTP/2 forbids (RFC 9113 §8.2.2):
/// `connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`, and
/// `te` (a request may only say `te: trailers`, which the caller adds back when it applies).
pub fn is_connection_specific(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 6] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
    ];
    NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// Whether `name` is one of [`HOP_BY_HOP`] (case-insensitive).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2): a valid field name.
pub fn is_token(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| TOKEN[usize::from(b)])
}

/// The bytes of a token (RFC 9110 §5.6.2: `tchar`), one lookup each.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        #[expect(clippy::cast_possible_truncation, reason = "i < 256")]
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

/// Whether `value` may be sent as a field value: no CR, LF or NUL (obs-text is allowed, as
/// relayed values may carry it).
pub fn is_field_value(value: &[u8]) -> bool {
    // memchr3 wins on long values; for the usual short one its setup costs more than a
    // plain scan (which the compiler vectorises).
    if value.len() > 64 {
        return memchr::memchr3(b'\r', b'\n', 0, value).is_none();
    }
    value.iter().all(|&b| b != b'\r' && b != b'\n' && b != 0)
}

/// The reason phrase of a head.
#[derive(Clone, Debug)]
enum Reason {
    Static(&'static str),
    /// Relayed from an upstream: in [`ResponseHead::reason_buf`].
    Relayed,
}

/// A response head: status, reason phrase (HTTP/1.1 only) and fields. The framing fields
/// (`Content-Length`, `Transfer-Encoding`) and the connection's own (`Date`,
/// `X-Request-Id`, `Connection`) are not in it: the driver writes them.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    status: u16,
    reason: Reason,
    reason_buf: Vec<u8>,
    /// The fields, in order.
    pub fields: Fields,
}

impl Default for ResponseHead {
    fn default() -> Self {
        Self::new(200, "OK")
    }
}

impl ResponseHead {
    /// A head with `status`, `reason` and no field.
    pub fn new(status: u16, reason: &'static str) -> Self {
        Self {
            status,
            reason: Reason::Static(reason),
            reason_buf: Vec::new(),
            fields: Fields::new(),
        }
    }

    /// Starts over with `status` and `reason`, keeping the buffers.
    pub fn reset(&mut self, status: u16, reason: &'static str) {
        self.status = status;
        self.reason = Reason::Static(reason);
        self.fields.clear();
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Changes the status and its reason.
    pub fn set_status(&mut self, status: u16, reason: &'static str) {
        self.status = status;
        self.reason = Reason::Static(reason);
    }

    /// Sets a reason phrase received from elsewhere (an upstream's).
    pub fn set_reason_bytes(&mut self, reason: &[u8]) {
        self.reason_buf.clear();
        self.reason_buf.extend_from_slice(reason);
        self.reason = Reason::Relayed;
    }

    /// The reason phrase.
    pub fn reason(&self) -> &[u8] {
        match &self.reason {
            Reason::Static(r) => r.as_bytes(),
            Reason::Relayed => &self.reason_buf,
        }
    }

    /// Makes this head a copy of `other` (keeping this one's buffers).
    pub fn copy_from(&mut self, other: &ResponseHead) {
        self.status = other.status;
        match &other.reason {
            Reason::Static(r) => self.reason = Reason::Static(r),
            Reason::Relayed => self.set_reason_bytes(&other.reason_buf),
        }
        self.fields.clear();
        self.fields.extend_from(&other.fields);
    }
}

/// How a response body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No framing field: no body (1xx, 204, 304, `HEAD`), or one that ends with the
    /// connection.
    Unframed,
    /// `Content-Length` (also for `HEAD` and 304, where it describes the representation).
    Length(u64),
    /// `Transfer-Encoding: chunked` (the body bytes are sent already chunked).
    Chunked,
}

/// 1xx, 204 and 304 responses have no body, and here no `Content-Length` (RFC 9110 §8.6:
/// forbidden for 1xx and 204; for 304 it would describe another representation).
pub fn bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// A response fixed when the configuration is loaded: its head, its body, and both
/// encoded for HTTP/1.1 once ([`crate::h1::encode::prebuilt`]), so that serving it copies
/// bytes and allocates nothing. A filter that edits heads gets [`Prebuilt::head`] instead.
#[derive(Clone, Debug)]
pub struct Prebuilt {
    /// The head.
    pub head: ResponseHead,
    /// The body (empty for a bodiless status).
    pub body: Arc<[u8]>,
    /// Status line, fields and framing, as HTTP/1.1 bytes (without the driver's fields).
    pub(crate) wire: Box<[u8]>,
    /// The fields and framing as HTTP/2 sends them (without the driver's fields).
    pub(crate) h2: Box<http::HeaderMap>,
}

impl Prebuilt {
    /// Encodes `head` with `body` once.
    pub fn new(head: ResponseHead, body: &[u8]) -> Self {
        let body: &[u8] = if bodiless(head.status()) { b"" } else { body };
        let mut wire = Vec::with_capacity(128);
        let framing = framing_of(head.status(), body.len());
        crate::h1::encode::response_head(&mut wire, &head, framing);
        Self {
            h2: Box::new(h2_fields(&head, framing)),
            head,
            body: body.into(),
            wire: wire.into(),
        }
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.head.status()
    }
}

/// The framing of a complete body of `len` bytes answered with `status`.
pub fn framing_of(status: u16, len: usize) -> BodyFraming {
    if bodiless(status) {
        BodyFraming::Unframed
    } else {
        BodyFraming::Length(len as u64)
    }
}

/// A head's fields as `h2` sends them (connection-specific ones dropped), with
/// `content-length` for a body of known length; the driver's `date` and `x-request-id` are
/// added per response.
pub(crate) fn h2_fields(head: &ResponseHead, framing: BodyFraming) -> http::HeaderMap {
    let mut fields = http::HeaderMap::with_capacity(head.fields.len() + 3);
    for (name, value) in head.fields.iter() {
        if is_connection_specific(name) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(name),
            http::header::HeaderValue::from_bytes(value),
        ) {
            fields.append(n, v);
        }
    }
    if let BodyFraming::Length(n) = framing {
        fields.insert(
            http::header::CONTENT_LENGTH,
            http::header::HeaderValue::from(n),
        );
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_order_and_compare_names_without_case() {
        let mut f = Fields::new();
        f.append(b"Vary", b"a");
        f.append(b"x-one", b"1");
        f.append(b"vary", b"b");
        assert_eq!(f.get_all(b"VARY").collect::<Vec<_>>(), [&b"a"[..], b"b"]);
        f.set(b"x-one", b"2");
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            [(&b"Vary"[..], &b"a"[..]), (b"vary", b"b"), (b"x-one", b"2")]
        );
        assert!(f.remove(b"vary"));
        assert!(!f.remove(b"vary"));
        f.append_u64(b"n", 1234);
        assert_eq!(f.get(b"n"), Some(&b"1234"[..]));
        assert_eq!(f.len(), 2);
        // Removed fields split the lines into runs; the order stays.
        let runs: Vec<&[u8]> = f.line_runs().collect();
        assert_eq!(runs, [&b"x-one: 2\r\nn: 1234\r\n"[..]]);
        f.append(b"last", b"z");
        f.remove(b"n");
        let runs: Vec<&[u8]> = f.line_runs().collect();
        assert_eq!(runs, [&b"x-one: 2\r\n"[..], b"last: z\r\n"]);
        let mut g = Fields::new();
        assert_eq!(g.line_runs().count(), 0);
        g.append(b"a", b"");
        assert_eq!(g.line_runs().collect::<Vec<_>>(), [&b"a: \r\n"[..]]);
        assert_eq!(g.get(b"a"), Some(&b""[..]));
        // Received lines are kept as they came.
        let block = b"A:1\r\nb:  two \r\n";
        let offsets = [
            FieldOffsets {
                name: 0,
                name_end: 1,
                value: 2,
                end: 3,
            },
            FieldOffsets {
                name: 5,
                name_end: 6,
                value: 9,
                end: 12,
            },
        ];
        g.set_lines(block, offsets.into_iter());
        assert_eq!(
            g.iter().collect::<Vec<_>>(),
            [(&b"A"[..], &b"1"[..]), (b"b", b"two")]
        );
        assert_eq!(g.line_runs().collect::<Vec<_>>(), [&block[..]]);
        g.remove(b"a");
        g.append(b"c", b"3");
        assert_eq!(
            g.line_runs().collect::<Vec<_>>(),
            [&b"b:  two \r\nc: 3\r\n"[..]]
        );
        // Offsets that do not fit end the list.
        let bad = [FieldOffsets {
            name: 0,
            name_end: 9,
            value: 2,
            end: 3,
        }];
        g.set_lines(block, bad.into_iter());
        assert!(g.is_empty());
    }

    #[test]
    fn heads_copy_relayed_reasons() {
        let mut a = ResponseHead::new(200, "OK");
        a.set_reason_bytes(b"Fine \xff");
        a.fields.append(b"x", b"y");
        let mut b = ResponseHead::default();
        b.copy_from(&a);
        assert_eq!((b.status(), b.reason()), (200, &b"Fine \xff"[..]));
        assert_eq!(b.fields.get(b"x"), Some(&b"y"[..]));
        b.reset(404, "Not Found");
        assert!(b.fields.is_empty());
        assert_eq!(b.reason(), b"Not Found");
    }

    #[test]
    fn tokens_and_values() {
        assert!(is_token(b"x-request-id"));
        assert!(!is_token(b"bad name") && !is_token(b""));
        assert!(is_field_value(b"a, b; q=1 \xff"));
        assert!(!is_field_value(b"a\r\nx: y"));
    }
}
