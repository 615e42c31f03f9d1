//! Hosts in rules (`"api.example.com/v1/": ...`, `"*.example.com/": ...`) and the host
//! table that picks, for a request's authority, the tries to search.
//!
//! # Grammar
//!
//! HOST is everything before the first `/` of the last word of a HEAD:
//! - `example.com`, `10.0.0.1`, `[::1]`: an exact host;
//! - `*.example.com`: exactly one more label (`a.example.com`; not `example.com`, not
//!   `a.b.example.com`);
//! - `**.example.com` (an extension): one or more labels;
//! - any of them with `:PORT`: only requests whose authority carries that port (or whose
//!   scheme's default port it is).
//!
//! Names are compared in lower case, a trailing dot is ignored, and internationalised names
//! are written in punycode (`xn--bcher-kva.example`), as they arrive on the wire.
//!
//! # Priority
//!
//! The host tiers are tried in this order, and the first tier with a rule for the request
//! answers: the exact host with the request's port, the exact host for any port; then
//! wildcards from the longest suffix to the shortest, at one suffix `*.` before `**.`, each
//! with the port before without; then the rules for every host. [`rank`] is that order as a
//! key, for the reference matcher of [`crate::explain`].

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;

use crate::dsl::{DslError, Part};
use crate::tree::FxHasher;

/// The longest host name (RFC 1035: 253 characters without the trailing dot).
pub const MAX_HOST: usize = 253;

/// How a host pattern matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostKind {
    /// This name only.
    Exact,
    /// `*.suffix`: one label before the suffix.
    OneLabel,
    /// `**.suffix`: one or more labels before the suffix.
    AnyDepth,
}

/// A host of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPattern {
    /// Exact or wildcard.
    pub kind: HostKind,
    /// The name in lower case; for a wildcard, the suffix after `*.` or `**.`.
    pub name: String,
    /// The port, when the rule names one.
    pub port: Option<u16>,
}

impl HostPattern {
    /// Whether the pattern matches a request host (lower case, no trailing dot) and port.
    pub fn matches(&self, host: &[u8], port: Option<u16>) -> bool {
        if self.port.is_some() && self.port != port {
            return false;
        }
        let name = self.name.as_bytes();
        match self.kind {
            HostKind::Exact => host == name,
            HostKind::OneLabel | HostKind::AnyDepth => {
                let Some(head_len) = host.len().checked_sub(name.len() + 1) else {
                    return false;
                };
                if !host.ends_with(name) || host[head_len] != b'.' || head_len == 0 {
                    return false;
                }
                // What the wildcard stands for is one label, or (`**`) labels, none empty:
                // `a..example.com` is no name the wildcard covers (the host table stops at
                // an empty label too).
                let head = &host[..head_len];
                match self.kind {
                    HostKind::OneLabel => !head.contains(&b'.'),
                    _ => head.split(|&b| b == b'.').all(|l| !l.is_empty()),
                }
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            HostKind::Exact => {}
            HostKind::OneLabel => f.write_str("*.")?,
            HostKind::AnyDepth => f.write_str("**.")?,
        }
        f.write_str(&self.name)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Parses HOST (`base` is its offset in the HEAD, for error positions).
pub fn parse_host(text: &str, base: usize) -> Result<HostPattern, DslError> {
    let err = |off: usize, len: usize, msg: &str| {
        Err(DslError::new(Part::Head, base + off, len.max(1), msg))
    };
    if let Some(bad) = text.find(|c: char| !c.is_ascii()) {
        return err(
            bad,
            text[bad..].chars().next().map_or(1, char::len_utf8),
            "write an internationalised host name in punycode (`xn--...`), as it arrives \
             in a request",
        );
    }
    if text == "*" || text == "**" {
        return err(
            0,
            text.len(),
            "a wildcard needs a suffix (`*.example.com`); for every host, leave the host out",
        );
    }
    let (kind, rest, at) = if let Some(r) = text.strip_prefix("**.") {
        (HostKind::AnyDepth, r, 3)
    } else if let Some(r) = text.strip_prefix("*.") {
        (HostKind::OneLabel, r, 2)
    } else {
        (HostKind::Exact, text, 0)
    };
    // `[v6]` or `[v6]:port`; otherwise `name` or `name:port`.
    let (name, port_text, port_at) = if rest.starts_with('[') {
        let Some(close) = rest.find(']') else {
            return err(at, rest.len(), "an IPv6 host is written `[address]`");
        };
        if kind != HostKind::Exact {
            return err(0, text.len(), "a wildcard host cannot be an IP address");
        }
        let addr = &rest[1..close];
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return err(at, close + 1, "not a valid IPv6 address");
        }
        match &rest[close + 1..] {
            "" => (&rest[..=close], None, 0),
            p if p.starts_with(':') => (&rest[..=close], Some(&p[1..]), at + close + 2),
            _ => return err(at + close + 1, 1, "expected `:PORT` after `]`"),
        }
    } else {
        match rest.rfind(':') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..]), at + i + 1),
            None => (rest, None, 0),
        }
    };
    let port = match port_text {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return err(port_at, p.len(), "a port is a number from 1 to 65535"),
        },
    };
    if name.starts_with('[') {
        return Ok(HostPattern {
            kind,
            name: name.to_ascii_lowercase(),
            port,
        });
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return err(
            0,
            text.len(),
            if text.starts_with('*') {
                "a wildcard needs a suffix (`*.example.com`); for every host, leave the host out"
            } else {
                "empty host name"
            },
        );
    }
    if name.len() > MAX_HOST {
        return err(at, name.len(), "a host name has at most 253 characters");
    }
    let mut off = at;
    for label in name.split('.') {
        if label.is_empty() {
            return err(off, 1, "empty label (`..`) in the host name");
        }
        if label.contains('*') {
            return err(
                off,
                label.len(),
                "`*` is only allowed as the whole first label (`*.example.com`, `**.example.com`)",
            );
        }
        if label.len() > 63 {
            return err(off, label.len(), "a label has at most 63 characters");
        }
        if let Some(bad) =
            label.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return err(
                off + bad,
                1,
                "a host name is letters, digits, `-` and `_` between dots",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return err(off, label.len(), "a label cannot start or end with `-`");
        }
        off += label.len() + 1;
    }
    Ok(HostPattern {
        kind,
        name: name.to_ascii_lowercase(),
        port,
    })
}

/// A request's authority split for matching: the name in lower case without a trailing
/// dot, in inline storage, and the port it names.
#[derive(Debug)]
pub struct RequestHost {
    buf: [u8; MAX_HOST + 2],
    len: usize,
    /// The port in the authority, if any.
    pub port: Option<u16>,
}

impl RequestHost {
    /// Splits `authority` (`Host` or an absolute-form target's, already validated by the
    /// HTTP parser). `None` when it is too long to be a host name (only rules for every
    /// host can answer it).
    pub fn parse(authority: &[u8]) -> Option<Self> {
        let (name, port) = if authority.first() == Some(&b'[') {
            let end = authority.iter().position(|&b| b == b']')? + 1;
            (&authority[..end], &authority[end..])
        } else {
            match authority.iter().rposition(|&b| b == b':') {
                Some(i) => (&authority[..i], &authority[i..]),
                None => (authority, &[][..]),
            }
        };
        let port = match port {
            [] => None,
            [b':', digits @ ..] => parse_port(digits),
            _ => return None,
        };
        let name = name.strip_suffix(b".").unwrap_or(name);
        let mut buf = [0u8; MAX_HOST + 2];
        buf.get_mut(..name.len())?.copy_from_slice(name);
        buf[..name.len()].make_ascii_lowercase();
        Some(Self {
            buf,
            len: name.len(),
            port,
        })
    }

    /// The name, lower case.
    pub fn name(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The key to look up: the authority's port, else the scheme's `default_port`.
    pub fn key(&self, default_port: u16) -> crate::tree::HostKey<'_> {
        crate::tree::HostKey {
            name: self.name(),
            port: Some(self.port.unwrap_or(default_port)),
        }
    }
}

fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    let mut n: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(d - b'0');
    }
    u16::try_from(n).ok().filter(|&p| p > 0)
}

/// A pattern's priority for a request it matches (smaller first): the order the host
/// table tries its tiers in. Rules for every host rank last.
pub fn rank(pattern: Option<&HostPattern>) -> (u8, usize, u8, u8) {
    match pattern {
        None => (2, 0, 0, 0),
        Some(p) => {
            let port = u8::from(p.port.is_none());
            match p.kind {
                HostKind::Exact => (0, 0, 0, port),
                // Longer suffix first: `usize::MAX - len` sorts the longest first.
                k => (
                    1,
                    usize::MAX - p.name.len(),
                    u8::from(k == HostKind::AnyDepth),
                    port,
                ),
            }
        }
    }
}

type Fx = BuildHasherDefault<FxHasher>;

/// The tries of one name: per port, and for any port.
#[derive(Debug, Default)]
struct Ports {
    ports: Vec<(u16, u32)>,
    any: Option<u32>,
}

impl Ports {
    /// The trie index for `port`, made with `new` when there is none yet.
    fn get_or_insert(&mut self, port: Option<u16>, new: &mut impl FnMut() -> u32) -> u32 {
        match port {
            None => *self.any.get_or_insert_with(new),
            Some(p) => match self.ports.iter().find(|(q, _)| *q == p) {
                Some(&(_, t)) => t,
                None => {
                    let t = new();
                    self.ports.push((p, t));
                    t
                }
            },
        }
    }

    /// Visits the port's trie, then the any-port one; stops when `f` returns true.
    fn visit(&self, port: Option<u16>, f: &mut impl FnMut(u32) -> bool) -> bool {
        if let Some(p) = port
            && let Some(&(_, t)) = self.ports.iter().find(|(q, _)| *q == p)
            && f(t)
        {
            return true;
        }
        self.any.is_some_and(f)
    }
}

/// The wildcard tries of one suffix.
#[derive(Debug, Default)]
struct Wild {
    one: Ports,
    deep: Ports,
}

/// The host table: names and wildcard suffixes to the index of their trie. Lookups cost
/// one hash probe for the exact name and one per label for wildcards, whatever the number
/// of hosts.
#[derive(Debug, Default)]
pub(crate) struct Hosts {
    exact: HashMap<Box<[u8]>, Ports, Fx>,
    wild: HashMap<Box<[u8]>, Wild, Fx>,
}

impl Hosts {
    /// Whether no rule names a host.
    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wild.is_empty()
    }

    /// The trie index for `pattern`, made with `new` when it is the first rule of it.
    pub(crate) fn tier(&mut self, pattern: &HostPattern, new: &mut impl FnMut() -> u32) -> u32 {
        let key: Box<[u8]> = pattern.name.as_bytes().into();
        match pattern.kind {
            HostKind::Exact => self
                .exact
                .entry(key)
                .or_default()
                .get_or_insert(pattern.port, new),
            HostKind::OneLabel => self
                .wild
                .entry(key)
                .or_default()
                .one
                .get_or_insert(pattern.port, new),
            HostKind::AnyDepth => self
                .wild
                .entry(key)
                .or_default()
                .deep
                .get_or_insert(pattern.port, new),
        }
    }

    /// Visits the tries for `host` (lower case) and `port` in priority order (see the
    /// module docs), without the default one; stops when `f` returns true.
    pub(crate) fn visit(
        &self,
        host: &[u8],
        port: Option<u16>,
        mut f: impl FnMut(u32) -> bool,
    ) -> bool {
        if let Some(p) = self.exact.get(host)
            && p.visit(port, &mut f)
        {
            return true;
        }
        if self.wild.is_empty() {
            return false;
        }
        let mut first = true;
        let mut rest = host;
        while let Some(dot) = rest.iter().position(|&b| b == b'.') {
            if dot == 0 {
                return false;
            }
            rest = &rest[dot + 1..];
            if let Some(w) = self.wild.get(rest) {
                if first && w.one.visit(port, &mut f) {
                    return true;
                }
                if w.deep.visit(port, &mut f) {
                    return true;
                }
            }
            first = false;
        }
        false
    }
}
