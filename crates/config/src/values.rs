//! Parsing of single values: listen addresses, upstream targets, pool names, group prefixes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anygate_router::dsl::{self, DslError, Segment, Tail};

/// A group prefix: a path of literals and `:params`, no `*`, no methods.
pub(crate) fn parse_prefix(text: &str) -> Result<Vec<Segment>, DslError> {
    if let Some(space) = text.find([' ', '\t']) {
        return Err(DslError {
            part: dsl::Part::Head,
            offset: space,
            len: 1,
            message: "a group prefix is a path only (methods go in the routes)".into(),
        });
    }
    let head = dsl::parse_head(text)?;
    if head.path.tail == Tail::Splat {
        return Err(DslError {
            part: dsl::Part::Head,
            offset: text.len() - 1,
            len: 1,
            message: "a group prefix cannot end with `*`".into(),
        });
    }
    Ok(head.path.segments)
}

pub(crate) fn is_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `IP:PORT`, `[IPv6]:PORT`, `:PORT` (every interface), `localhost:PORT`.
pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let bad = || {
        format!("`{text}` is not a listen address (expected `IP:PORT`, `[IPv6]:PORT` or `:PORT`)")
    };
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    match host {
        "" | "*" => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        "localhost" => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        _ => Err(bad()),
    }
}

/// `host:port` of an upstream target.
pub(crate) fn parse_target(text: &str) -> Result<(String, u16), String> {
    let bad = || format!("`{text}` is not a target (expected `host:port`)");
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(bad());
        }
        let host = match addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        return Ok((host, addr.port()));
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    if !valid_host || port == 0 {
        return Err(bad());
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// A byte of a `Host` value: a host name, an IP address (IPv6 in brackets), a port.
pub(crate) fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'[' | b']')
}
