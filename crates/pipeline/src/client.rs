//! The client's address, by `server.trusted_proxies`.
//!
//! A peer outside the list is the client, whatever its forwarding fields say. A trusted peer
//! is a proxy in front of us: the client is the right-most hop of its `X-Forwarded-For`
//! chain that is not itself trusted (Traefik's `forwardedHeaders.trustedIPs`, nginx's
//! `set_real_ip_from` with `real_ip_recursive on`). A hop that is not an address
//! (`unknown`, garbage) ends the walk: the client is then the last trusted hop before it,
//! since nothing to its left can be believed.

use std::net::{IpAddr, SocketAddr};

use anygate_config::cidr::Cidr;
use anygate_http::Request;
use anygate_http::server::Ctx;

/// Records the client's address, whether the peer is a trusted proxy and whether the
/// connection is TLS in `ctx`. Kept out
/// of line: in the request's async function its locals would enlarge every state.
#[inline(never)]
pub(crate) fn note(req: &Request<'_>, trusted: &[Cidr], ctx: &mut Ctx) {
    (ctx.client, ctx.peer_trusted) = address(req, trusted);
    ctx.tls = req.tls().is_some();
}

/// The client's address and whether the peer is a trusted proxy. `None` for a request
/// without a peer address (a test transport).
fn address(req: &Request<'_>, trusted: &[Cidr]) -> (Option<IpAddr>, bool) {
    let Some(peer) = req.peer().map(|p| p.ip().to_canonical()) else {
        return (None, false);
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if trusted.is_empty() || !is_trusted(peer) {
        return (Some(peer), false);
    }
    let mut client = peer;
    let chain = req
        .headers()
        .rev()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"x-forwarded-for"))
        .flat_map(|(_, v)| v.rsplit(|&b| b == b','));
    for hop in chain {
        match hop_address(hop.trim_ascii()) {
            Some(ip) if is_trusted(ip) => client = ip,
            Some(ip) => return (Some(ip), true),
            None => break,
        }
    }
    (Some(client), true)
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:80`.
fn hop_address(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?;
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| text.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::hop_address;

    #[test]
    fn hops_in_every_form() {
        for (hop, ip) in [
            ("1.2.3.4", Some("1.2.3.4")),
            ("1.2.3.4:8080", Some("1.2.3.4")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("::ffff:10.0.0.1", Some("10.0.0.1")),
            ("unknown", None),
            ("", None),
            ("1.2.3", None),
            ("_hidden", None),
        ] {
            assert_eq!(
                hop_address(hop.as_bytes()),
                ip.map(|i| i.parse().unwrap()),
                "{hop}"
            );
        }
    }
}
