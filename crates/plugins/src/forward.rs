//! Forward authentication for the `auth` filter: ask an external service whether a request
//! may pass (Traefik's `forwardAuth`, nginx's `auth_request`).
//!
//! ```yaml
//! forward:
//!   url: http://127.0.0.1:9000/verify   # plain HTTP; the host is resolved at load
//!   timeout: 2s                          # the whole subrequest (connect, write, read)
//!   request_headers: [Authorization, Cookie]   # default: every client field
//!   copy_headers: [X-User, X-Roles]      # from a 2xx answer onto the request sent on
//! ```
//!
//! The subrequest is `GET` of the URL with the client's fields (less the hop-by-hop and
//! framing ones, and less `Host`) and `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`, `-For`
//! and `X-Request-Id`. A 2xx answer lets the request through, with the fields named in
//! `copy_headers` set from the answer (and always removed from what the client sent). Any
//! other answer goes back to the client as it is: status, fields (less hop-by-hop ones) and
//! body (up to 64 KiB). A service that cannot be reached or answers late fails closed:
//! **502**/**504** with the upstream error codes.
//!
//! Connections to the service are kept per worker (LIFO, at most [`IDLE_MAX`] idle, peeked
//! before reuse), like the proxy's: no lock, nothing shared.

use std::cell::RefCell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anygate_config::args::Args;
use anygate_http::client::{ResponseFraming, UpstreamConn, UpstreamError, keeps_connection};
use anygate_http::server::ResponseBody;
use anygate_http::{Exchange, Request};

use crate::Flow;

/// Idle connections kept per worker, all services together.
const IDLE_MAX: usize = 16;
/// The largest answer body relayed to the client.
const BODY_MAX: usize = 64 * 1024;

/// Fields never sent to the service nor relayed from it, besides the hop-by-hop ones: the
/// framing, and those each hop writes itself.
const OWN: [&[u8]; 5] = [
    b"content-length",
    b"expect",
    b"host",
    b"date",
    b"x-request-id",
];

fn is_hop(name: &[u8]) -> bool {
    anygate_http::message::is_hop_by_hop(name) || OWN.iter().any(|h| name.eq_ignore_ascii_case(h))
}

thread_local! {
    static IDLE: RefCell<Vec<UpstreamConn>> = const { RefCell::new(Vec::new()) };
}

/// The `forward` part of an `auth` filter.
#[derive(Debug)]
pub(crate) struct Forward {
    addr: SocketAddr,
    /// `host[:port]` for the `Host` field.
    authority: Box<str>,
    path: Box<str>,
    timeout: Duration,
    /// `None`: every client field.
    request_headers: Option<Vec<Box<[u8]>>>,
    /// Lowercase names.
    pub(crate) copy_headers: Vec<Box<[u8]>>,
}

impl Forward {
    pub(crate) fn build(args: &mut Args<'_>) -> Option<Self> {
        let mut a = args.map("forward")?;
        let target = a
            .string("url")
            .and_then(|(url, node)| match parse_url(url) {
                Ok(t) => Some(t),
                Err(e) => {
                    a.error(node.span, e);
                    None
                }
            });
        let timeout = a.duration("timeout").unwrap_or(Duration::from_secs(2));
        let names = |a: &mut Args<'_>, key: &str| -> Vec<Box<[u8]>> {
            let mut out = Vec::new();
            for (n, node) in a.strings(key) {
                if anygate_http::message::is_token(n.as_bytes()) {
                    out.push(n.to_ascii_lowercase().into_bytes().into());
                } else {
                    a.error(node.span, format!("`{n}` is not a field name"));
                }
            }
            out
        };
        let request_headers = a
            .has("request_headers")
            .then(|| names(&mut a, "request_headers"));
        let copy_headers = names(&mut a, "copy_headers");
        if target.is_none() && !a.failed() {
            let span = a.span();
            a.error(span, "`forward` needs `url`");
        }
        let failed = a.failed();
        args.absorb(a, &["url", "timeout", "request_headers", "copy_headers"]);
        let (addr, authority, path) = target?;
        if failed {
            return None;
        }
        Some(Self {
            addr,
            authority,
            path,
            timeout,
            request_headers,
            copy_headers,
        })
    }

    /// Asks the service about `req`: `Continue` with `copy_headers` set on a 2xx, else the
    /// service's answer (or a 502/504) written into `ex`.
    pub(crate) async fn check(&self, req: &Request<'_>, ex: &mut Exchange<'_>) -> Flow {
        let mut head = Vec::with_capacity(512);
        self.subrequest(&mut head, req, ex);
        let deadline = anygate_runtime::time::now() + self.timeout;
        let pooled = IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            while let Some(i) = idle.iter().rposition(|c| c.addr == self.addr) {
                let mut c = idle.swap_remove(i);
                if c.is_reusable() {
                    return Some(c);
                }
            }
            None
        });
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => match UpstreamConn::connect(self.addr, deadline).await {
                Ok(c) => c,
                Err(e) => return fail(ex, e),
            },
        };
        let mut answer = exchange(&mut conn, &head, deadline).await;
        if reused && matches!(answer, Err(UpstreamError::ClosedBeforeResponse)) {
            // The pooled connection died as it was picked: once more on a fresh one.
            conn = match UpstreamConn::connect(self.addr, deadline).await {
                Ok(c) => c,
                Err(e) => return fail(ex, e),
            };
            answer = exchange(&mut conn, &head, deadline).await;
        }
        let (status, body, framing) = match answer {
            Ok(a) => a,
            Err(e) => return fail(ex, e),
        };
        let keep = keeps_connection(&conn.info, &framing);
        if (200..300).contains(&status) {
            for name in &self.copy_headers {
                ex.remove_request_field(name);
                for (n, v) in conn.head.fields.iter() {
                    if n.eq_ignore_ascii_case(name) {
                        ex.add_request_field(name, v);
                    }
                }
            }
            checkin(conn, keep);
            return Flow::Continue;
        }
        // Denied: the service's answer is the client's.
        let h = ex.head();
        h.copy_from(&conn.head);
        h.fields.retain(|n, _| !is_hop(n));
        checkin(conn, keep);
        ex.send(ResponseBody::Bytes(&body));
        Flow::Answered
    }

    fn subrequest(&self, out: &mut Vec<u8>, req: &Request<'_>, ex: &Exchange<'_>) {
        let line = |out: &mut Vec<u8>, n: &[u8], v: &[u8]| {
            out.extend_from_slice(n);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        };
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        line(out, b"host", self.authority.as_bytes());
        for (n, v) in req.headers() {
            if is_hop(n) || n.len() > 11 && n[..11].eq_ignore_ascii_case(b"x-forwarded") {
                continue;
            }
            if let Some(only) = &self.request_headers
                && !only.iter().any(|o| n.eq_ignore_ascii_case(o))
            {
                continue;
            }
            line(out, n, v);
        }
        line(out, b"x-forwarded-method", req.method());
        let proto: &[u8] = if req.tls().is_some() {
            b"https"
        } else {
            b"http"
        };
        line(out, b"x-forwarded-proto", proto);
        if let Some(h) = req.host() {
            line(out, b"x-forwarded-host", h);
        }
        line(out, b"x-forwarded-uri", req.target());
        if let Some(ip) = ex.ctx().client {
            line(out, b"x-forwarded-for", ip.to_string().as_bytes());
        }
        line(out, b"x-request-id", req.request_id());
        out.extend_from_slice(b"\r\n");
    }

    pub(crate) fn summary(&self) -> String {
        format!("forward to {}{}", self.authority, self.path)
    }
}

/// Sends `head`, reads the answer's head and (bounded) body.
async fn exchange(
    conn: &mut UpstreamConn,
    head: &[u8],
    deadline: std::time::Instant,
) -> Result<(u16, Vec<u8>, ResponseFraming), UpstreamError> {
    conn.reset();
    conn.write(head, b"", deadline).await?;
    let mut framing = conn.read_head(false, deadline).await?;
    let status = conn.head.status();
    let mut body = Vec::new();
    while let Some(piece) = conn.body_piece(&mut framing, deadline).await? {
        let (data, _) = conn.piece(piece.data);
        if body.len() + data.len() > BODY_MAX {
            return Err(UpstreamError::Invalid);
        }
        body.extend_from_slice(data);
    }
    Ok((status, body, framing))
}

fn checkin(conn: UpstreamConn, keep: bool) {
    if !keep {
        return;
    }
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        if idle.len() >= IDLE_MAX {
            idle.remove(0);
        }
        idle.push(conn);
    });
}

fn fail(ex: &mut Exchange<'_>, e: UpstreamError) -> Flow {
    ex.error(e.kind(), None);
    Flow::Answered
}

/// `http://host[:port][/path]` → the address (resolved now), `host[:port]`, the path.
fn parse_url(url: &str) -> Result<(SocketAddr, Box<str>, Box<str>), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!(
            "`{url}`: forward-auth URLs are `http://host[:port]/path` (https is not supported yet)"
        )
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("`{url}` is not a valid URL"));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("`{authority}` does not resolve"))?;
    Ok((addr, authority.into(), path.into()))
}
