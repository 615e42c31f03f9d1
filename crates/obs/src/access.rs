//! One access-log line per request (SPEC §8).
//!
//! JSON fields, always in this order (absent ones are `null`, except `tls`,
//! `spa_fallback` and `headers`, written only where they apply):
//! `ts`, `level`, `trace_id`, `span_id`, `route`, `action`, `method`, `host`, `path`,
//! `query` (secrets masked), `status`, `duration_ms`, `bytes_rx`, `bytes_tx`, `client_ip`,
//! `user_agent`, `upstream`, `attempt`, `code`, then `tls`, `spa_fallback`, `headers`.
//!
//! The human format puts the same facts on one line, the most read first:
//!
//! ```text
//! 2026-12-02T19:40:00.123456789Z 127.0.0.1 "GET /a?token=*** " 200 12B 0.250ms route="GET /a" action=fixed host="example.com" ua="curl/8.5" rx=78 …
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::escape::{hex, json_body, json_str, millis, num, text};
use crate::redact;

/// JSON or human.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// One JSON object per line (the default).
    #[default]
    Json,
    /// The human format.
    Text,
}

/// The TLS facts of a request over TLS.
#[derive(Clone, Copy, Debug)]
pub struct Tls<'a> {
    /// `TLSv1.3`.
    pub version: &'a str,
    /// The cipher suite.
    pub cipher: &'a str,
    /// SNI.
    pub sni: Option<&'a str>,
    /// A resumed session.
    pub resumed: bool,
}

/// What [`Record::headers`] hands each logged field to: `(name, value)`.
pub type FieldSink<'s> = dyn FnMut(&[u8], &[u8]) + 's;

/// Everything a line says about one request, borrowed.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    /// When the request ended, in nanoseconds since the Unix epoch
    /// ([`crate::time::wall`], [`crate::time::unix_nanos`]).
    pub ts: u64,
    /// The trace this request belongs to.
    pub trace_id: Option<[u8; 16]>,
    /// This request's span.
    pub span_id: Option<[u8; 8]>,
    /// The matched rule's label (`GET /api/*`).
    pub route: Option<&'a str>,
    /// `fixed`, `echo`, `static`, `proxy`.
    pub action: Option<&'a str>,
    /// The request method.
    pub method: &'a [u8],
    /// The `Host`.
    pub host: Option<&'a [u8]>,
    /// The path as received.
    pub path: &'a [u8],
    /// The query, without `?` (masked when written).
    pub query: Option<&'a [u8]>,
    /// The response status.
    pub status: u16,
    /// From routing to the end of the response, when timed.
    pub duration: Option<Duration>,
    /// Bytes read for the request.
    pub bytes_rx: u64,
    /// Bytes written for the response.
    pub bytes_tx: u64,
    /// The client (trusted-proxy aware).
    pub client_ip: Option<IpAddr>,
    /// `User-Agent`.
    pub user_agent: Option<&'a [u8]>,
    /// The upstream of the last attempt.
    pub upstream: Option<SocketAddr>,
    /// Attempts at the upstream.
    pub attempt: u8,
    /// The gateway's error code (`AG-…`), when it answered with an error.
    pub code: Option<&'a str>,
    /// TLS facts, over TLS.
    pub tls: Option<Tls<'a>>,
    /// The static action answered with the SPA fallback.
    pub spa_fallback: bool,
    /// Request header fields to log, with their values (masked when secret).
    pub headers: &'a dyn for<'s> Fn(&mut FieldSink<'s>),
}

impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("route", &self.route)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The most bytes of one client-supplied field (path, query, host, user agent, a logged
/// header) a line carries; a longer one is cut and ends with `…`. With a line a few KiB
/// at most, the log queue's 8 192 lines stay a few tens of MiB whatever clients send.
pub const MAX_FIELD: usize = 2048;

/// `v` cut to [`MAX_FIELD`] bytes.
fn cap(v: &[u8]) -> (&[u8], bool) {
    if v.len() > MAX_FIELD {
        (&v[..MAX_FIELD], true)
    } else {
        (v, false)
    }
}

/// `info` below 400, `warn` for 4xx, `error` for 5xx.
pub fn level(status: u16) -> &'static str {
    match status {
        500.. => "error",
        400..=499 => "warn",
        _ => "info",
    }
}

/// Appends the line for `r` in `format`, newline included.
pub fn write(out: &mut Vec<u8>, format: Format, r: &Record<'_>) {
    match format {
        Format::Json => json(out, r),
        Format::Text => human(out, r),
    }
    out.push(b'\n');
}

fn opt_str(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => capped_str(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string of at most [`MAX_FIELD`] bytes of `v` (`…` when cut).
fn capped_str(out: &mut Vec<u8>, v: &[u8]) {
    let (v, cut) = cap(v);
    out.push(b'"');
    json_body(out, v);
    if cut {
        out.extend_from_slice("…".as_bytes());
    }
    out.push(b'"');
}

fn opt_display(out: &mut Vec<u8>, v: Option<impl std::fmt::Display>) {
    use std::io::Write;
    match v {
        Some(v) => {
            out.push(b'"');
            let _ = write!(out, "{v}");
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn json(out: &mut Vec<u8>, r: &Record<'_>) {
    out.extend_from_slice(b"{\"ts\":\"");
    crate::time::rfc3339(out, r.ts);
    out.extend_from_slice(b"\",\"level\":\"");
    out.extend_from_slice(level(r.status).as_bytes());
    out.extend_from_slice(b"\",\"trace_id\":");
    id(out, r.trace_id.as_ref().map(|t| &t[..]));
    out.extend_from_slice(b",\"span_id\":");
    id(out, r.span_id.as_ref().map(|s| &s[..]));
    out.extend_from_slice(b",\"route\":");
    opt_str(out, r.route.map(str::as_bytes));
    out.extend_from_slice(b",\"action\":");
    opt_str(out, r.action.map(str::as_bytes));
    out.extend_from_slice(b",\"method\":");
    capped_str(out, r.method);
    out.extend_from_slice(b",\"host\":");
    opt_str(out, r.host);
    out.extend_from_slice(b",\"path\":");
    capped_str(out, r.path);
    out.extend_from_slice(b",\"query\":");
    match r.query {
        Some(q) => masked_query(out, cap(q).0, json_body),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"status\":");
    num(out, u64::from(r.status));
    out.extend_from_slice(b",\"duration_ms\":");
    match r.duration {
        Some(d) => millis(out, nanos(d)),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"bytes_rx\":");
    num(out, r.bytes_rx);
    out.extend_from_slice(b",\"bytes_tx\":");
    num(out, r.bytes_tx);
    out.extend_from_slice(b",\"client_ip\":");
    match r.client_ip {
        Some(ip) => {
            out.push(b'"');
            crate::escape::ip(out, ip);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"user_agent\":");
    opt_str(out, r.user_agent);
    out.extend_from_slice(b",\"upstream\":");
    match r.upstream {
        Some(SocketAddr::V4(a)) => {
            out.push(b'"');
            crate::escape::ip(out, IpAddr::V4(*a.ip()));
            out.push(b':');
            num(out, u64::from(a.port()));
            out.push(b'"');
        }
        other => opt_display(out, other),
    }
    out.extend_from_slice(b",\"attempt\":");
    num(out, u64::from(r.attempt));
    out.extend_from_slice(b",\"code\":");
    opt_str(out, r.code.map(str::as_bytes));
    if let Some(t) = &r.tls {
        out.extend_from_slice(b",\"tls\":{\"version\":");
        json_str(out, t.version.as_bytes());
        out.extend_from_slice(b",\"cipher\":");
        json_str(out, t.cipher.as_bytes());
        out.extend_from_slice(b",\"sni\":");
        opt_str(out, t.sni.map(str::as_bytes));
        out.extend_from_slice(if t.resumed {
            b",\"resumed\":true}"
        } else {
            b",\"resumed\":false}"
        });
    }
    if r.spa_fallback {
        out.extend_from_slice(b",\"spa_fallback\":true");
    }
    let mut first = true;
    (r.headers)(&mut |name, value| {
        out.extend_from_slice(if first { b",\"headers\":{" } else { b"," });
        first = false;
        json_str(out, name);
        out.push(b':');
        let mut masked = Vec::new();
        redact::header(&mut masked, name, cap(value).0);
        json_str(out, &masked);
    });
    if !first {
        out.push(b'}');
    }
    out.push(b'}');
}

/// The query with secrets masked, written through `escape`, in quotes.
fn masked_query(out: &mut Vec<u8>, q: &[u8], escape: fn(&mut Vec<u8>, &[u8])) {
    out.push(b'"');
    let start = out.len();
    redact::query(out, q);
    // Masked first, then escaped in place when it needs it (rarely: a query is ASCII,
    // percent-encoded; a quote or a backslash in it is escaped).
    if out[start..]
        .iter()
        .any(|&b| !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\')
    {
        let masked = out.split_off(start);
        escape(out, &masked);
    }
    out.push(b'"');
}

fn id(out: &mut Vec<u8>, id: Option<&[u8]>) {
    match id {
        Some(id) => {
            out.push(b'"');
            hex(out, id);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn human(out: &mut Vec<u8>, r: &Record<'_>) {
    use std::io::Write;
    crate::time::rfc3339(out, r.ts);
    out.push(b' ');
    match r.client_ip {
        Some(ip) => crate::escape::ip(out, ip),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" \"");
    text(out, cap(r.method).0);
    out.push(b' ');
    text(out, cap(r.path).0);
    if let Some(q) = r.query {
        out.push(b'?');
        let start = out.len();
        redact::query(out, cap(q).0);
        let masked = out.split_off(start);
        text(out, &masked);
    }
    out.extend_from_slice(b"\" ");
    num(out, u64::from(r.status));
    out.push(b' ');
    num(out, r.bytes_tx);
    out.extend_from_slice(b"B ");
    match r.duration {
        Some(d) => {
            millis(out, nanos(d));
            out.extend_from_slice(b"ms");
        }
        None => out.push(b'-'),
    }
    let quoted = |out: &mut Vec<u8>, key: &[u8], v: &[u8]| {
        out.push(b' ');
        out.extend_from_slice(key);
        out.extend_from_slice(b"=\"");
        text(out, cap(v).0);
        out.push(b'"');
    };
    if let Some(route) = r.route {
        quoted(out, b"route", route.as_bytes());
    }
    if let Some(action) = r.action {
        let _ = write!(out, " action={action}");
    }
    if let Some(host) = r.host {
        quoted(out, b"host", host);
    }
    if let Some(ua) = r.user_agent {
        quoted(out, b"ua", ua);
    }
    out.extend_from_slice(b" rx=");
    num(out, r.bytes_rx);
    if let Some(up) = r.upstream {
        let _ = write!(out, " upstream={up} attempt={}", r.attempt);
    }
    if let Some(code) = r.code {
        let _ = write!(out, " code={code}");
    }
    if let Some(t) = &r.tls {
        let _ = write!(out, " tls={}", t.version);
        if t.resumed {
            out.extend_from_slice(b" resumed");
        }
    }
    if r.spa_fallback {
        out.extend_from_slice(b" spa_fallback");
    }
    if let Some(t) = r.trace_id {
        out.extend_from_slice(b" trace=");
        hex(out, &t);
    }
    (r.headers)(&mut |name, value| {
        let mut masked = Vec::new();
        redact::header(&mut masked, name, cap(value).0);
        quoted(out, name, &masked);
    });
}
