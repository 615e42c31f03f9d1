//! Request head parsing: `httparse` for the grammar, then the checks it leaves to us (bare
//! LF, framing conflicts, `Host`), with everything recorded as offsets into the buffer so the
//! result can be kept without borrowing it and without allocating.

use std::mem::MaybeUninit;

use crate::error::ErrorKind;
use crate::limits::{Limits, MAX_HEADERS};

/// A byte range of the head buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    fn of(buf: &[u8], part: &[u8]) -> Self {
        // `part` is a sub-slice of `buf` (httparse hands out slices of its input).
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        Self {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    /// The bytes of this span in `buf`.
    pub fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// HTTP/1.0 or HTTP/1.1 (what the parser reads), or HTTP/2 (a head the HTTP/2 driver
/// recorded in the same shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0.
    H10,
    /// HTTP/1.1.
    H11,
    /// HTTP/2.
    H2,
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length: n` (n > 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// One header field, as spans.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Field {
    /// The name, as written.
    pub name: Span,
    /// The value, without surrounding whitespace.
    pub value: Span,
}

/// A parsed request head, as offsets into the buffer it was parsed from.
#[derive(Clone, Debug)]
pub struct Head {
    /// Bytes of the head, final empty line included.
    pub len: usize,
    /// The method.
    pub method: Span,
    /// The request target as sent.
    pub target: Span,
    /// The path part of the target (for an absolute-form target, after the authority).
    pub path: Span,
    /// The query, without `?`.
    pub query: Option<Span>,
    /// The protocol version.
    pub version: Version,
    /// Header fields, in order; `count` are valid.
    pub fields: [Field; MAX_HEADERS],
    /// Number of valid `fields`.
    pub count: usize,
    /// Body framing.
    pub framing: Framing,
    /// Whether the client allows the connection to stay open.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// The `X-Request-Id` value, if present.
    pub request_id: Option<Span>,
    /// The request's authority: an absolute-form target's (RFC 9112 §3.2.2), else the
    /// `Host` field's value; validated (reg-name, IPv4 or `[IPv6]`, optional port).
    pub host: Option<Span>,
}

impl Default for Head {
    fn default() -> Self {
        Self {
            len: 0,
            method: Span::default(),
            target: Span::default(),
            path: Span::default(),
            query: None,
            version: Version::H11,
            fields: [Field::default(); MAX_HEADERS],
            count: 0,
            framing: Framing::None,
            keep_alive: true,
            expect_continue: false,
            request_id: None,
            host: None,
        }
    }
}

impl Head {
    /// The header fields.
    pub fn fields(&self) -> &[Field] {
        &self.fields[..self.count]
    }
}

/// The outcome of [`parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// A whole head of this many bytes is at the start of the buffer.
    Complete(usize),
    /// More bytes are needed.
    Partial,
    /// The head is invalid; answer with this error and close.
    Invalid(ErrorKind),
}

/// Parses the request head at the start of `buf` into `head`.
///
/// Beyond `httparse`'s grammar this rejects, as request smuggling defences (RFC 9112 §6.3):
/// a bare LF, `Content-Length` together with `Transfer-Encoding`, differing or malformed
/// `Content-Length`s, any `Transfer-Encoding` other than a single `chunked`, and
/// `Transfer-Encoding` in HTTP/1.0. An HTTP/1.1 request needs exactly one `Host`.
pub fn parse(buf: &[u8], limits: &Limits, head: &mut Head) -> Parse {
    // Spans are `u32`: whatever the configuration, a head is never larger than 1 GiB.
    let max_head = limits.max_head.min(1 << 30);
    // Empty lines before the request line are skipped (RFC 9112 §2.2), but only a few:
    // an endless run of them would otherwise keep a head "maybe complete" on every read,
    // and be parsed again each time.
    if matches!(buf.first(), Some(b'\r' | b'\n'))
        && buf
            .iter()
            .take(MAX_LEADING_EMPTY + 1)
            .all(|&b| b == b'\r' || b == b'\n')
        && buf.len() > MAX_LEADING_EMPTY
    {
        return Parse::Invalid(ErrorKind::BadRequest);
    }
    // Uninitialised storage: initialising 128 headers would cost a 4 KiB memset per request.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let max = limits.max_headers.clamp(1, MAX_HEADERS);
    let mut req = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut headers[..max],
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() < max_head {
                return Parse::Partial;
            }
            // Out of room: the request line alone is too long, or the whole head is.
            return Parse::Invalid(if memchr::memchr(b'\n', buf).is_none() {
                ErrorKind::UriTooLong
            } else {
                ErrorKind::HeadersTooLarge
            });
        }
        Err(httparse::Error::TooManyHeaders) => return Parse::Invalid(ErrorKind::HeadersTooLarge),
        Err(httparse::Error::Version) => return Parse::Invalid(version_error(buf)),
        Err(_) => return Parse::Invalid(ErrorKind::BadRequest),
    };
    if len > max_head {
        return Parse::Invalid(ErrorKind::HeadersTooLarge);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parse::Invalid(ErrorKind::BadRequest);
    };
    let line_starts = req
        .headers
        .iter()
        .map(|h| Span::of(buf, h.name.as_bytes()).start);
    if !crlf_lines(
        &buf[..len],
        Span::of(buf, method.as_bytes()).start,
        line_starts,
    ) {
        return Parse::Invalid(ErrorKind::BadRequest);
    }
    if target.len() > limits.max_uri {
        return Parse::Invalid(ErrorKind::UriTooLong);
    }
    // Field by field: the header table is overwritten only as far as it is used.
    head.len = len;
    head.method = Span::of(buf, method.as_bytes());
    head.target = Span::of(buf, target.as_bytes());
    head.version = if version == 0 {
        Version::H10
    } else {
        Version::H11
    };
    head.keep_alive = version != 0;
    head.count = 0;
    head.framing = Framing::None;
    head.expect_continue = false;
    head.request_id = None;
    head.host = None;
    let (authority, path, query) = split_target(target.as_bytes());
    head.path = Span::of(buf, path);
    head.query = query.map(|q| Span::of(buf, q));
    if let Err(kind) = fields(buf, req.headers, head, limits.allow_underscores) {
        return Parse::Invalid(kind);
    }
    if let Some(authority) = authority {
        // The target's authority is the request's; a `Host` saying otherwise is refused
        // rather than ignored (a proxy in front may have routed on it).
        let agrees = head
            .host
            .is_none_or(|h| h.get(buf).eq_ignore_ascii_case(authority));
        // An http(s) URI needs a host (RFC 9110 §4.2.1): `http:///x` is refused.
        if authority.is_empty() || authority.starts_with(b":") || !is_host(authority) || !agrees {
            return Parse::Invalid(ErrorKind::BadHost);
        }
        head.host = Some(Span::of(buf, authority));
    }
    Parse::Complete(len)
}

/// Bytes of empty lines accepted before a request line (two CRLFs).
const MAX_LEADING_EMPTY: usize = 4;

/// Whether `v` is a valid `Host` (RFC 9112 §3.2, RFC 3986 §3.2.2): a reg-name (letters,
/// digits, `-._~!$&'()*+,;=` and `%XX`; IPv4 is one), or an IPv6 literal in brackets,
/// then optionally `:` and a port of at most 5 digits up to 65535. Empty is valid (a
/// target without an authority). No userinfo, no spaces, no `/`, `?`, `#`. One pass over
/// a table: every request's `Host` goes through it.
#[inline]
pub fn is_host(v: &[u8]) -> bool {
    if v.first() == Some(&b'[') {
        return is_ipv6_host(v);
    }
    let mut i = 0;
    while let Some(&b) = v.get(i) {
        if REG_NAME[usize::from(b)] {
            i += 1;
        } else if b == b'%' {
            if !v
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else if b == b':' {
            return is_port(&v[i + 1..]);
        } else {
            return false;
        }
    }
    true
}

/// `[IPv6]` and an optional `:port`.
fn is_ipv6_host(v: &[u8]) -> bool {
    let Some(end) = v.iter().position(|&b| b == b']') else {
        return false;
    };
    let literal = std::str::from_utf8(&v[1..end]).ok();
    if literal
        .and_then(|l| l.parse::<std::net::Ipv6Addr>().ok())
        .is_none()
    {
        return false;
    }
    match &v[end + 1..] {
        [] => true,
        [b':', port @ ..] => is_port(port),
        _ => false,
    }
}

/// At most 5 digits, up to 65535 (empty allowed: RFC 3986 `port = *DIGIT`).
fn is_port(p: &[u8]) -> bool {
    p.len() <= 5
        && p.iter().all(u8::is_ascii_digit)
        && p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535
}

/// The bytes of a reg-name other than `%` (RFC 3986: unreserved and sub-delims).
const REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~!$&'()*+,;=";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// Whether a field name contains `_`, eight bytes at a time (every field of every request
/// is checked).
#[inline]
fn has_underscore(name: &[u8]) -> bool {
    const LOW: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const UNDERSCORES: u64 = u64::from_ne_bytes([b'_'; 8]);
    let mut chunks = name.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // A zero byte in `x` sets its high bit here (the classic "has zero byte" test).
        let x = u64::from_ne_bytes(word) ^ UNDERSCORES;
        if x.wrapping_sub(LOW) & !x & HIGH != 0 {
            return true;
        }
    }
    // Short: a loop costs less than `contains`'s call into memchr.
    #[expect(
        clippy::manual_contains,
        reason = "contains calls memchr: slower on 0-7 bytes"
    )]
    let found = chunks.remainder().iter().any(|&b| b == b'_');
    found
}

/// `HTTP/2.0` and friends get 505; anything else that is not a version, 400.
fn version_error(buf: &[u8]) -> ErrorKind {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let has_version = line
        .windows(5)
        .any(|w| w == b"HTTP/" || w.eq_ignore_ascii_case(b"http/"));
    if has_version {
        ErrorKind::VersionNotSupported
    } else {
        ErrorKind::BadRequest
    }
}

/// Whether every line of a head httparse accepted ends in CRLF (httparse tolerates a bare
/// LF; a proxy behind us may not). `method_at` is where the request line starts and
/// `line_starts` where each field line does.
///
/// Within a parsed head an LF only ends a line: httparse refuses control bytes inside the
/// request line and field values, and folded lines in requests. So the LFs are those of the
/// empty lines it skips before the request line, the one before each field line, and the
/// last two; checking the two bytes before each line start costs a few instructions per
/// field instead of a scan of the head ([`bare_lf_scan`] is that scan, the reference).
pub(crate) fn crlf_lines(
    head: &[u8],
    method_at: u32,
    line_starts: impl Iterator<Item = u32>,
) -> bool {
    let leading = head.get(..method_at as usize).unwrap_or_default();
    leading.chunks(2).all(|pair| pair == b"\r\n")
        && head.ends_with(b"\r\n\r\n")
        && line_starts.into_iter().all(|at| {
            let at = at as usize;
            at >= 2 && head.get(at - 2..at) == Some(b"\r\n")
        })
}

/// Whether some LF of `head` does not follow a CR, by a scan of every LF.
#[cfg(test)]
pub(crate) fn bare_lf_scan(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

/// Splits an origin-form or absolute-form target into its authority (absolute-form only),
/// path and query.
// Called once per head, on every request: inlined (as a separate call it cost ~40
// instructions per request).
#[inline(always)]
fn split_target(target: &[u8]) -> (Option<&[u8]>, &[u8], Option<&[u8]>) {
    let mut rest = target;
    let mut authority = None;
    for scheme in [&b"http://"[..], b"https://"] {
        if rest.len() > scheme.len() && rest[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let after = &rest[scheme.len()..];
            let cut = after
                .iter()
                .position(|&b| b == b'/' || b == b'?' || b == b'#')
                .unwrap_or(after.len());
            authority = Some(&after[..cut]);
            rest = &after[cut..];
            break;
        }
    }
    // One scan for the path's end; a fragment (never sent by clients, but tolerated) ends
    // the query too.
    match memchr::memchr2(b'?', b'#', rest).map(|i| (i, rest[i])) {
        Some((i, b'?')) => {
            let query = &rest[i + 1..];
            let query = memchr::memchr(b'#', query).map_or(query, |j| &query[..j]);
            (authority, &rest[..i], Some(query))
        }
        Some((i, _)) => (authority, &rest[..i], None),
        None => (authority, rest, None),
    }
}

// Called once per head, on every request: inlined (as a separate call it cost ~40
// instructions per request).
#[inline(always)]
fn fields(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    head: &mut Head,
    allow_underscores: bool,
) -> Result<(), ErrorKind> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut hosts = 0;
    for h in headers {
        let name = h.name.as_bytes();
        if !allow_underscores && has_underscore(name) {
            // Dropped, as nginx does by default: see `Limits::allow_underscores`.
            continue;
        }
        let value = trim(h.value);
        head.fields[head.count] = Field {
            name: Span::of(buf, name),
            value: Span::of(buf, value),
        };
        head.count += 1;
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(value).ok_or(ErrorKind::BadFraming)?;
            if length.is_some_and(|l| l != n) {
                return Err(ErrorKind::BadFraming);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // One field, exactly `chunked`: codings we would have to undo, lists and repeats
            // are where parsers disagree.
            if te_seen || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(ErrorKind::BadFraming);
            }
            te_seen = true;
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    head.keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && head.version == Version::H10
                {
                    head.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if !is_host(value) {
                return Err(ErrorKind::BadHost);
            }
            head.host = Some(Span::of(buf, value));
        } else if name.eq_ignore_ascii_case(b"expect") {
            head.expect_continue =
                value.eq_ignore_ascii_case(b"100-continue") && head.version == Version::H11;
        } else if name.eq_ignore_ascii_case(b"x-request-id") {
            head.request_id = Some(Span::of(buf, value));
        }
    }
    if chunked && (length.is_some() || head.version == Version::H10) {
        return Err(ErrorKind::BadFraming);
    }
    if hosts > 1 || (hosts == 0 && head.version == Version::H11) {
        return Err(ErrorKind::BadHost);
    }
    head.framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) if n > 0 => Framing::Length(n),
        _ => Framing::None,
    };
    Ok(())
}

/// `1*DIGIT`, at most 19 digits (fits `u64`); no sign, no list, no whitespace inside.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Span, bare_lf_scan, crlf_lines, split_target};

    /// The split as two scans: the fragment cut first, then the query.
    fn split_reference(target: &[u8]) -> (&[u8], Option<&[u8]>) {
        let rest = target
            .iter()
            .position(|&b| b == b'#')
            .map_or(target, |i| &target[..i]);
        match rest.iter().position(|&b| b == b'?') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        }
    }

    /// Both checks on `raw`, when httparse accepts it: (by line starts, by scan).
    fn verdicts(raw: &[u8]) -> Option<(bool, bool)> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = req.parse(raw) else {
            return None;
        };
        let method = req.method?;
        let starts = req
            .headers
            .iter()
            .map(|h| Span::of(raw, h.name.as_bytes()).start);
        let by_starts = crlf_lines(&raw[..len], Span::of(raw, method.as_bytes()).start, starts);
        Some((by_starts, !bare_lf_scan(&raw[..len])))
    }

    #[test]
    fn line_endings_known_heads() {
        for (raw, ok) in [
            (&b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"[..], true),
            (b"\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\n\r\n", true),
            (b"\nGET / HTTP/1.1\r\nHost: t\r\n\r\n", false),
            (b"\r\n\nGET / HTTP/1.1\r\nHost: t\r\n\r\n", false),
            (b"GET / HTTP/1.1\nHost: t\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nHost: t\n\r\n", false),
            (b"GET / HTTP/1.1\r\nHost: t\r\n\n", false),
            (b"GET / HTTP/1.0\n\n", false),
            (b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\nC: 3\r\n\r\n", false),
        ] {
            let got = verdicts(raw);
            assert_eq!(got, Some((ok, ok)), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    fn line_end() -> impl Strategy<Value = &'static str> {
        prop_oneof![4 => Just("\r\n"), 1 => Just("\n")]
    }

    proptest! {
        #[test]
        fn underscore_test_matches_a_scan(name in "[a-z_-]{0,40}") {
            prop_assert_eq!(super::has_underscore(name.as_bytes()), name.contains('_'));
        }

        #[test]
        fn target_split_matches_two_scans(target in "/[a/?#]{0,12}") {
            let (authority, path, query) = split_target(target.as_bytes());
            prop_assert_eq!(authority, None);
            prop_assert_eq!((path, query), split_reference(target.as_bytes()));
        }

        /// The check by line starts agrees with a scan of every LF on every head httparse
        /// accepts, with CRLF and bare LF mixed anywhere a line may end.
        #[test]
        fn line_start_check_matches_the_scan(
            leading in prop::collection::vec(line_end(), 0..3),
            request_end in line_end(),
            fields in prop::collection::vec(
                ("[A-Za-z-]{1,8}", "[ \t]{0,2}", "[ -~]{0,12}", line_end()),
                0..6,
            ),
            last in line_end(),
            tail in "[a-z\r\n]{0,4}",
        ) {
            let mut raw = leading.concat();
            raw.push_str("GET /x?y HTTP/1.1");
            raw.push_str(request_end);
            for (name, ws, value, end) in &fields {
                raw.push_str(&format!("{name}:{ws}{value}{end}"));
            }
            raw.push_str(last);
            raw.push_str(&tail);
            if let Some((by_starts, by_scan)) = verdicts(raw.as_bytes()) {
                prop_assert_eq!(by_starts, by_scan, "{:?}", raw);
            }
        }

        #[test]
        fn line_start_check_matches_the_scan_on_any_bytes(
            raw in prop::collection::vec(
                prop_oneof![
                    Just(b'\r'), Just(b'\n'), Just(b' '), Just(b':'), Just(b'a'), Just(b'/'),
                    Just(b'\t'), any::<u8>()
                ],
                0..80,
            ).prop_map(|tail| [&b"GET / HTTP/1.1\r\nHost: h\r\n"[..], &tail].concat())
        ) {
            if let Some((by_starts, by_scan)) = verdicts(&raw) {
                prop_assert_eq!(by_starts, by_scan, "{:?}", String::from_utf8_lossy(&raw));
            }
        }
    }
}
