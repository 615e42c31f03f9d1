//! What TLS asks of each request before it is routed:
//!
//! - `tls.redirect_http`: a request on a plain listener gets `308` to the same URL over
//!   `https://` (on the first TLS listener's port), except ACME HTTP-01 challenge paths
//!   (`/.well-known/acme-challenge/`), which must stay reachable over plain HTTP.
//! - ACME HTTP-01 (`acme` configured): `GET /.well-known/acme-challenge/TOKEN` on a plain
//!   listener is answered from the pending challenges before any route, filter or
//!   redirect (`200` with the key authorization, or `404`), as Caddy and Traefik do.
//! - Hosts with their own client authentication (`tls.hosts.NAME.client_auth`, `off`
//!   included): the
//!   policy was picked from the ClientHello's server name, so a request whose `Host`
//!   differs from it could reach a host whose policy the handshake never applied (or
//!   leave one). Such a request gets `421 Misdirected Request` (RFC 9110 §15.5.20), as
//!   nginx and Caddy answer, and the connection closes.

use std::sync::Arc;

use anygate_config::Tls;
use anygate_http::server::ResponseBody;
use anygate_http::{ErrorKind, Exchange, Request};
use anygate_tls::Managed;

/// ACME HTTP-01 challenges are answered over plain HTTP, never redirected.
const ACME_CHALLENGE: &[u8] = b"/.well-known/acme-challenge/";

#[derive(Debug)]
pub(crate) struct Gate {
    /// The HTTPS port to redirect plain requests to, when `redirect_http` is on.
    redirect_port: Option<u16>,
    /// Hosts (exact, or `*.suffix`) with a client authentication of their own.
    policy_hosts: Box<[String]>,
    /// ACME's pending HTTP-01 challenges, when `acme` is configured.
    acme: Option<Arc<Managed>>,
}

/// `authority` without its port (`[::1]` keeps its brackets).
fn host_name(authority: &[u8]) -> &[u8] {
    if authority.first() == Some(&b'[') {
        let end = memchr_byte(b']', authority).map_or(authority.len(), |i| i + 1);
        return &authority[..end];
    }
    match memchr_byte(b':', authority) {
        Some(i) => &authority[..i],
        None => authority,
    }
}

fn memchr_byte(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

impl Gate {
    pub(crate) fn new(tls: &Tls) -> Self {
        Self {
            redirect_port: tls
                .redirect_http
                .then(|| tls.listen.first().map(|l| l.addr.port()))
                .flatten(),
            // Every host with an entry: one exempted (`mode: off`) under a listener that
            // requires certificates is a policy too (regression: such a host was left
            // out, so its connection could name any other host).
            policy_hosts: tls.hosts.iter().map(|h| h.name.clone()).collect(),
            acme: None,
        }
    }

    /// Answers ACME HTTP-01 challenges from `managed`.
    pub(crate) fn with_acme(&mut self, managed: Arc<Managed>) {
        self.acme = Some(managed);
    }

    /// Whether `host` (lower case, no port) has a policy of its own.
    fn has_policy(&self, host: &[u8]) -> bool {
        self.policy_hosts
            .iter()
            .any(|p| match p.strip_prefix("*.") {
                Some(suffix) => host
                    .iter()
                    .position(|&b| b == b'.')
                    .is_some_and(|i| i > 0 && host[i + 1..] == *suffix.as_bytes()),
                None => host == p.as_bytes(),
            })
    }

    /// Answers the request when TLS demands it; `true` if it did. `before` runs first
    /// then (it installs the chain that logs the answer).
    pub(crate) fn answer(
        &self,
        req: &Request<'_>,
        ex: &mut Exchange<'_>,
        before: impl FnOnce(&mut Exchange<'_>),
    ) -> bool {
        match req.tls() {
            None if self.acme.is_some() && req.path().starts_with(ACME_CHALLENGE) => {
                before(ex);
                self.challenge(req, ex);
                true
            }
            None => match self.redirect_port {
                Some(port) if !req.path().starts_with(ACME_CHALLENGE) => {
                    before(ex);
                    redirect(req, ex, port);
                    true
                }
                _ => false,
            },
            Some(tls) if !self.policy_hosts.is_empty() => {
                // `example.com.` is `example.com` (a trailing dot must not dodge the check).
                let host = req.host().map(|a| {
                    let h = host_name(a);
                    h.strip_suffix(b".").unwrap_or(h).to_ascii_lowercase()
                });
                let sni = tls.server_name.as_deref().map(str::as_bytes);
                let misdirected = match (host.as_deref(), sni) {
                    (Some(h), Some(s)) => h != s && (self.has_policy(h) || self.has_policy(s)),
                    (Some(h), None) => self.has_policy(h),
                    (None, Some(s)) => self.has_policy(s),
                    (None, None) => false,
                };
                if misdirected {
                    before(ex);
                    ex.error(ErrorKind::Misdirected, None);
                }
                misdirected
            }
            Some(_) => false,
        }
    }
}

impl Gate {
    /// The key authorization of a pending HTTP-01 challenge, as RFC 8555 §8.3 has it
    /// (`text/plain`-ish `application/octet-stream`, the bytes alone), or 404.
    fn challenge(&self, req: &Request<'_>, ex: &mut Exchange<'_>) {
        let token = &req.path()[ACME_CHALLENGE.len()..];
        let answer = self.acme.as_ref().and_then(|m| m.http01(token));
        match answer {
            Some(key_authorization) if matches!(req.method(), b"GET" | b"HEAD") => {
                let head = ex.respond(200, "OK");
                head.fields
                    .append(b"content-type", b"application/octet-stream");
                head.fields.append(b"cache-control", b"no-store");
                ex.send(ResponseBody::Bytes(key_authorization.as_bytes()));
            }
            Some(_) => ex.error(ErrorKind::MethodNotAllowed, None),
            None => ex.error(ErrorKind::NotFound, None),
        }
    }
}

/// `308` to `https://HOST[:PORT]PATH[?QUERY]`.
fn redirect(req: &Request<'_>, ex: &mut Exchange<'_>, port: u16) {
    let Some(authority) = req.host() else {
        return ex.error(ErrorKind::BadHost, None);
    };
    let mut location = Vec::with_capacity(64);
    location.extend_from_slice(b"https://");
    location.extend_from_slice(host_name(authority));
    if port != 443 {
        location.push(b':');
        location.extend_from_slice(port.to_string().as_bytes());
    }
    location.extend_from_slice(req.path());
    permanent_redirect(req, ex, location);
}

/// `308` to `location` with the request's query appended (the redirects of TLS and of
/// `server.trailing_slash`).
pub(crate) fn permanent_redirect(req: &Request<'_>, ex: &mut Exchange<'_>, mut location: Vec<u8>) {
    if let Some(q) = req.query() {
        location.push(b'?');
        location.extend_from_slice(q);
    }
    let head = ex.respond(308, "Permanent Redirect");
    head.fields.append(b"location", &location);
    ex.send(ResponseBody::Empty);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name(b"example.com:8443"), b"example.com");
        assert_eq!(host_name(b"example.com"), b"example.com");
        assert_eq!(host_name(b"[::1]:443"), b"[::1]");
        assert_eq!(host_name(b"10.0.0.1:80"), b"10.0.0.1");
    }

    #[test]
    fn wildcard_policies_match_one_label() {
        let g = Gate {
            redirect_port: None,
            policy_hosts: vec!["*.example.com".to_owned(), "api.test".to_owned()].into(),
            acme: None,
        };
        assert!(g.has_policy(b"a.example.com"));
        assert!(!g.has_policy(b"example.com"));
        assert!(!g.has_policy(b"a.b.example.com"));
        assert!(g.has_policy(b"api.test"));
        assert!(!g.has_policy(b"x.api.test"));
    }
}
