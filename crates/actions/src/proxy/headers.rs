//! The heads the proxy writes: the request sent upstream and the response relayed back.
//!
//! Both drop the hop-by-hop fields (RFC 9110 §7.6.1: `Connection`, `Keep-Alive`,
//! `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, and RFC 2616's
//! `Proxy-Authenticate`/`Proxy-Authorization`) and every field named in `Connection`; the
//! framing fields are written again for the hop they describe.
//!
//! Upstream, the gateway adds what a backend needs to know about the client:
//! `X-Forwarded-For` (the peer's address), `X-Forwarded-Proto`, `X-Forwarded-Host`,
//! `Forwarded` (RFC 7239), `X-Request-Id`, optionally `Via`, and `Host` as `proxy.host`
//! says. Incoming forwarding fields (and `X-Real-IP`) are believed only from a peer in
//! `server.trusted_proxies`: its chains are kept and extended, its `X-Forwarded-Proto` and
//! `X-Forwarded-Host` passed on. From anyone else they are dropped, so a client cannot pick
//! the address a backend sees. The scheme is `https` on a TLS connection. With
//! `proxy.client_cert_header`, the verified client certificate's subject goes up in that
//! field, and the client's own field of that name is always dropped.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};

use anygate_http::h1::encode::{field, push_u64};
use anygate_http::message::{ResponseHead, Version, is_hop_by_hop};
use anygate_http::{Exchange, Request};

use super::ProxyOptions;

/// `proxy.host`: the `Host` sent upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMode {
    /// The proxy URI's authority (`host[:port]`, or the pool's name).
    Upstream,
    /// The client's `Host`.
    Client,
    /// A fixed value.
    Fixed(Box<str>),
}

/// Fields the gateway writes itself in the request sent upstream.
const REWRITTEN_UP: [&[u8]; 8] = [
    b"host",
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"forwarded",
    b"x-request-id",
];

/// Fields in which a proxy in front tells what the client was (address, scheme, port,
/// prefix), besides the ones the gateway writes itself: believed only from a trusted proxy
/// and otherwise dropped, since frameworks (Werkzeug's ProxyFix, Spring's forwarded-header
/// filter, CDN integrations) read them.
const CLIENT_CLAIMS: [&[u8]; 11] = [
    b"x-real-ip",
    b"x-forwarded-port",
    b"x-forwarded-prefix",
    b"x-forwarded-server",
    b"x-forwarded-ssl",
    b"x-forwarded-scheme",
    b"x-client-ip",
    b"x-cluster-client-ip",
    b"true-client-ip",
    b"cf-connecting-ip",
    b"fastly-client-ip",
];

fn is_one_of(name: &[u8], list: &[&[u8]]) -> bool {
    list.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// Whether `name` is one of the tokens of the `Connection` values in `values`.
fn named_in_connection<'a>(name: &[u8], mut values: impl Iterator<Item = &'a [u8]>) -> bool {
    values.any(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
    })
}

/// The `Upgrade` value of a request that asks for one (`Connection: upgrade` and
/// `Upgrade`, HTTP/1.1 only).
pub(super) fn upgrade_requested<'a>(req: &Request<'a>) -> Option<&'a [u8]> {
    if req.version() != Version::Http11 {
        return None;
    }
    let upgrade = req.header(b"upgrade")?;
    // `h2c` would turn the upstream connection into HTTP/2 behind the gateway's back (the
    // h2c smuggling class): such a request goes as a plain request.
    if upgrade
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"h2c"))
    {
        return None;
    }
    let connection = req
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
        .map(|(_, v)| v);
    named_in_connection(b"upgrade", connection).then_some(upgrade)
}

/// Appends the fields of the upstream request head to `out` (which holds the request line)
/// and the empty line.
/// Writes `span_id` (hex) into a head's `traceparent` at `at` (from [`request_head`]).
pub(super) fn set_span(head: &mut [u8], at: usize, span_id: &[u8; 8]) {
    let mut hex = Vec::with_capacity(16);
    for b in span_id {
        hex.push(b"0123456789abcdef"[usize::from(b >> 4)]);
        hex.push(b"0123456789abcdef"[usize::from(b & 15)]);
    }
    if let Some(slot) = head.get_mut(at..at + 16) {
        slot.copy_from_slice(&hex);
    }
}

/// The upstream request's fields; for a traced request, returns where its `traceparent`'s
/// span id goes.
pub(super) fn request_head(
    out: &mut Vec<u8>,
    req: &Request<'_>,
    options: &ProxyOptions,
    authority: &str,
    body: &Exchange<'_>,
    upgrade: Option<&[u8]>,
) -> Option<usize> {
    out.extend_from_slice(b"host: ");
    let client_host = req.host();
    match (&options.host, client_host) {
        (HostMode::Client, Some(h)) => out.extend_from_slice(h),
        (HostMode::Fixed(v), _) => out.extend_from_slice(v.as_bytes()),
        _ => out.extend_from_slice(authority.as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    let connection = || {
        req.headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .map(|(_, v)| v)
    };
    // A trusted proxy's forwarding fields are believed and extended; anyone else's are
    // replaced by what this connection shows (`server.trusted_proxies`).
    let trusted = body.ctx().peer_trusted;
    // A traced request sends its own `traceparent` (below). `tracestate` belongs to the
    // caller's trace: it passes when the request joined that trace, and is dropped when
    // the trace started here (its `traceparent` was missing or invalid, W3C §3.3.1).
    let trace = body.ctx().trace;
    let fresh_trace = trace.is_some_and(|t| t.parent.is_none());
    // The client's fields as the filters left them (`headers`, `auth`).
    for (name, value) in body.edits().fields(req) {
        if is_hop_by_hop(name)
            || is_one_of(name, &REWRITTEN_UP)
            || (!trusted && is_one_of(name, &CLIENT_CLAIMS))
            || named_in_connection(name, connection())
            || (trace.is_some() && name.eq_ignore_ascii_case(b"traceparent"))
            || (fresh_trace && name.eq_ignore_ascii_case(b"tracestate"))
            || options
                .client_cert_header
                .as_deref()
                .is_some_and(|h| name.eq_ignore_ascii_case(h.as_bytes()))
        {
            continue;
        }
        field(out, name, value);
    }
    // A trusted peer's chains are kept, joined in one field each, and extended.
    let ip = req.peer().map(|p| p.ip().to_canonical());
    let chain = trusted && push_chain(out, req, b"x-forwarded-for: ");
    if let Some(ip) = ip {
        out.extend_from_slice(if chain { b", " } else { b"x-forwarded-for: " });
        push_ip(out, ip);
    }
    if chain || ip.is_some() {
        out.extend_from_slice(b"\r\n");
    }
    let from_proxy = |name: &[u8]| if trusted { req.header(name) } else { None };
    let tls = req.tls();
    let scheme: &[u8] = if tls.is_some() { b"https" } else { b"http" };
    out.extend_from_slice(b"x-forwarded-proto: ");
    out.extend_from_slice(from_proxy(b"x-forwarded-proto").unwrap_or(scheme));
    out.extend_from_slice(b"\r\n");
    if let (Some(name), Some(subject)) = (
        options.client_cert_header.as_deref(),
        tls.and_then(|t| t.client_subject.as_deref()),
    ) {
        // Escaped when read from the certificate: no control byte can end the field.
        field(out, name.as_bytes(), subject.as_bytes());
    }
    if let Some(h) = from_proxy(b"x-forwarded-host").or(client_host) {
        out.extend_from_slice(b"x-forwarded-host: ");
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    let chain = trusted && push_chain(out, req, b"forwarded: ");
    out.extend_from_slice(if chain { b", " } else { b"forwarded: " });
    push_forwarded_element(out, ip, client_host, scheme);
    out.extend_from_slice(b"\r\nx-request-id: ");
    out.extend_from_slice(req.request_id());
    out.extend_from_slice(b"\r\n");
    // The attempt's span id is written in place by each attempt (`set_span`).
    let span_at = trace.map(|t| {
        out.extend_from_slice(b"traceparent: ");
        let at = out.len() + 3 + 32 + 1;
        anygate_obs::trace::write_traceparent(out, &t.trace_id, &[0; 8], t.sampled);
        out.extend_from_slice(b"\r\n");
        at
    });
    if options.via {
        // After an incoming `Via` field: a later field continues the list.
        out.extend_from_slice(b"via: 1.1 anygate\r\n");
    }
    if !body.body_present() && req.header(b"content-length").is_some() {
        // `Content-Length: 0`: some upstreams want a length on POST and PUT.
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    if body.body_present() {
        match body.body_length() {
            Some(n) => {
                out.extend_from_slice(b"content-length: ");
                push_u64(out, n);
                out.extend_from_slice(b"\r\n");
            }
            None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        if body.expects_continue() {
            out.extend_from_slice(b"expect: 100-continue\r\n");
        }
    }
    if let Some(u) = upgrade {
        out.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
        out.extend_from_slice(u);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    span_at
}

/// Writes `label` (`name: `) and the values of every request field of that name, joined
/// with `, ` (one field, without its CRLF); `false`, and nothing written, when there is none.
fn push_chain(out: &mut Vec<u8>, req: &Request<'_>, label: &[u8]) -> bool {
    let name = &label[..label.len() - 2];
    let mut any = false;
    for (n, value) in req.headers() {
        if n.eq_ignore_ascii_case(name) {
            out.extend_from_slice(if any { b", " } else { label });
            out.extend_from_slice(value);
            any = true;
        }
    }
    any
}

/// `ip` as `Display` writes it; IPv4, the usual case, without `core::fmt` (which costs
/// about a thousand instructions per address, a tenth of a proxied request).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => push_ipv4(out, v4),
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Dotted decimal, as `Ipv4Addr`'s `Display` writes it.
fn push_ipv4(out: &mut Vec<u8>, ip: Ipv4Addr) {
    for (i, &o) in ip.octets().iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if o >= 100 {
            out.push(b'0' + o / 100);
        }
        if o >= 10 {
            out.push(b'0' + o / 10 % 10);
        }
        out.push(b'0' + o % 10);
    }
}

/// `for=...;host="...";proto=http` (RFC 7239 §4; IPv6 and host quoted).
fn push_forwarded_element(
    out: &mut Vec<u8>,
    ip: Option<IpAddr>,
    host: Option<&[u8]>,
    scheme: &[u8],
) {
    match ip {
        Some(IpAddr::V4(v4)) => {
            out.extend_from_slice(b"for=");
            push_ipv4(out, v4);
        }
        Some(IpAddr::V6(v6)) => {
            let _ = write!(out, "for=\"[{v6}]\"");
        }
        None => out.extend_from_slice(b"for=unknown"),
    }
    if let Some(h) = host.filter(|h| !h.iter().any(|&b| b == b'"' || b == b'\\')) {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(h);
        out.push(b'"');
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(scheme);
}

/// Turns the upstream's response head into the one relayed to the client, in place:
/// hop-by-hop fields, fields named in `Connection`, and the ones the driver writes itself
/// (`Date`, `X-Request-Id`, the framing) are removed; a `101` keeps its upgrade; `Via` is
/// added if asked for. `scratch` holds the `Connection` and `Upgrade` values meanwhile.
pub(super) fn relay_head(head: &mut ResponseHead, via: bool, scratch: &mut Vec<u8>) {
    scratch.clear();
    for v in head.fields.get_all(b"connection") {
        scratch.extend_from_slice(v);
        scratch.push(b',');
    }
    let connection_end = scratch.len();
    let switching = head.status() == 101;
    // The last `Upgrade` value, as the protocol switched to.
    if switching && let Some(u) = head.fields.get_all(b"upgrade").last() {
        scratch.extend_from_slice(u);
    }
    let (connection, upgrade) = scratch.split_at(connection_end);
    // The length is written by the driver from the parsed value, never copied: a field
    // named in `Connection`, or a duplicate, must not change the framing the client sees.
    head.fields.retain(|name, _| {
        !(is_hop_by_hop(name)
            || named_in_connection(name, std::iter::once(connection))
            || name.eq_ignore_ascii_case(b"date")
            || name.eq_ignore_ascii_case(b"x-request-id")
            || name.eq_ignore_ascii_case(b"content-length"))
    });
    if switching {
        head.fields.append(b"connection", b"upgrade");
        if !upgrade.is_empty() {
            head.fields.append(b"upgrade", upgrade);
        }
    }
    if via {
        head.fields.append(b"via", b"1.1 anygate");
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::push_ip;

    fn written(ip: IpAddr) -> String {
        let mut out = Vec::new();
        push_ip(&mut out, ip);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ip_edges_match_display() {
        for ip in [
            IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)),
            IpAddr::V4(Ipv4Addr::new(9, 10, 99, 100)),
            IpAddr::V4(Ipv4Addr::new(255, 199, 101, 1)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        ] {
            assert_eq!(written(ip), ip.to_string());
        }
    }

    proptest! {
        #[test]
        fn ipv4_matches_display(bits in any::<u32>()) {
            let ip = IpAddr::V4(Ipv4Addr::from(bits));
            prop_assert_eq!(written(ip), ip.to_string());
        }
    }
}
