//! The one-line DSL: `"<HEAD>": "<ACTION>"` (SPEC §5), parsed byte by byte into a typed IR.
//!
//! Errors carry the byte range they are about, inside the key or the value, so that the
//! config loader can turn them into `file:line:column` and underline the offending text.

use std::fmt;

pub use crate::host::{HostPattern, parse_host};
use crate::method::is_token;
use crate::status;

/// Most `:param` segments in one path (params are stored inline, without allocation).
pub const MAX_PARAMS: usize = 16;
/// Most segments in one path pattern (bounds the trie's depth).
pub const MAX_SEGMENTS: usize = 64;

/// Which side of a rule an error is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The HEAD (the YAML key).
    Head,
    /// The ACTION (the YAML value).
    Action,
}

/// A parse error with the byte range it points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DslError {
    /// Key or value.
    pub part: Part,
    /// Byte offset of the offending text.
    pub offset: usize,
    /// Its length in bytes (at least 1 when the text is not empty).
    pub len: usize,
    /// What is wrong, for a person.
    pub message: String,
}

impl DslError {
    /// An error of `len` bytes at `offset` in the `part`.
    pub fn new(part: Part, offset: usize, len: usize, message: impl Into<String>) -> Self {
        Self {
            part,
            offset,
            len,
            message: message.into(),
        }
    }
}

impl fmt::Display for DslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DslError {}

/// The methods of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Methods {
    /// No method named, or `*` among them: every method.
    Any,
    /// These methods (deduplicated, in the order written).
    Named(Vec<String>),
}

/// One segment of a path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly these bytes.
    Literal(String),
    /// `:name`: matches one non-empty segment.
    Param(String),
}

/// How a pattern ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// The path must end here.
    Exact,
    /// A trailing `/`: this path and everything below.
    Prefix,
    /// A final `*`: the rest of the path, captured as `splat`.
    Splat,
}

/// A parsed PATH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    /// The segments before the tail.
    pub segments: Vec<Segment>,
    /// Exact, prefix or splat.
    pub tail: Tail,
}

impl PathPattern {
    /// The pattern as written in canonical form (`/a/:b/*`, `/v1/`).
    pub fn display(&self) -> String {
        let mut s = String::new();
        for seg in &self.segments {
            s.push('/');
            match seg {
                Segment::Literal(l) => s.push_str(l),
                Segment::Param(p) => {
                    s.push(':');
                    s.push_str(p);
                }
            }
        }
        match self.tail {
            Tail::Exact if self.segments.is_empty() => s.push('/'),
            Tail::Exact => {}
            Tail::Prefix => s.push('/'),
            Tail::Splat => s.push_str("/*"),
        }
        s
    }

    /// The shape of the pattern: literals and param positions, and whether it ends exactly
    /// or takes the rest of the path. Param names do not count, and a prefix (`/v1/`) has the
    /// same shape as a splat (`/v1/*`): two patterns of one shape match the same requests.
    pub fn shape_key(&self) -> String {
        let mut s = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => {
                    s.push('/');
                    s.push_str(l);
                }
                Segment::Param(_) => s.push_str("/\u{0}:"),
            }
        }
        s.push_str(if self.tail == Tail::Exact {
            "\u{0}$"
        } else {
            "\u{0}*"
        });
        s
    }

    /// The names of the params, in order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(p) => Some(p.as_str()),
            Segment::Literal(_) => None,
        })
    }
}

/// A parsed HEAD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The methods.
    pub methods: Methods,
    /// The hosts the rule is for (none: every host). A HEAD names at most one; a group's
    /// `host:` list gives more.
    pub hosts: Vec<HostPattern>,
    /// The path pattern.
    pub path: PathPattern,
}

impl Head {
    /// `HOST/path` (`/path` without hosts; hosts joined by `,`), as labels show it.
    pub fn target_display(&self) -> String {
        let hosts: Vec<String> = self.hosts.iter().map(ToString::to_string).collect();
        format!("{}{}", hosts.join(","), self.path.display())
    }
}

/// Parses a HEAD: `[METHOD ...] [HOST]PATH`.
pub fn parse_head(text: &str) -> Result<Head, DslError> {
    let err = |off, len, msg: String| Err(DslError::new(Part::Head, off, len, msg));
    let words = words(text);
    let Some(&(path_off, path)) = words.last() else {
        return err(
            0,
            text.len(),
            "empty route: expected `[METHOD ...] [HOST]/path`".into(),
        );
    };
    let mut hosts = Vec::new();
    let (path_off, path) = match path.find('/') {
        Some(0) => (path_off, path),
        Some(i) => {
            hosts.push(parse_host(&path[..i], path_off)?);
            (path_off + i, &path[i..])
        }
        None => {
            return err(
                path_off,
                path.len(),
                format!("the path must start with `/`, found `{path}`"),
            );
        }
    };
    let mut any = false;
    let mut names: Vec<String> = Vec::new();
    for &(off, w) in &words[..words.len() - 1] {
        if w == "*" {
            any = true;
        } else if w.starts_with('/') {
            return err(
                off,
                w.len(),
                "only one path per rule (the path comes last)".into(),
            );
        } else if !is_token(w) {
            return err(
                off,
                w.len(),
                format!("`{w}` is not a valid HTTP method token"),
            );
        } else if !names.iter().any(|n| n == w) {
            names.push(w.to_owned());
        }
    }
    let path = parse_path(path, path_off)?;
    Ok(Head {
        methods: if any || names.is_empty() {
            Methods::Any
        } else {
            Methods::Named(names)
        },
        hosts,
        path,
    })
}

/// Space-separated words with their byte offsets.
fn words(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c == ' ' || c == '\t', start) {
            (true, Some(s)) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out
}

fn parse_path(path: &str, base: usize) -> Result<PathPattern, DslError> {
    let err = |off: usize, len: usize, msg: &str| {
        Err(DslError::new(Part::Head, base + off, len.max(1), msg))
    };
    let body = &path[1..];
    let mut segments = Vec::new();
    let mut tail = Tail::Exact;
    if body.is_empty() {
        return Ok(PathPattern {
            segments,
            tail: Tail::Prefix,
        });
    }
    let mut off = 1;
    let parts: Vec<&str> = body.split('/').collect();
    let last = parts.len() - 1;
    let mut names: Vec<&str> = Vec::new();
    for (i, seg) in parts.iter().enumerate() {
        if seg.is_empty() {
            if i == last {
                tail = Tail::Prefix;
                break;
            }
            return err(off, 1, "empty segment (`//`) in the path");
        }
        if let Some(bad) = seg.find(['?', '#']) {
            return err(off + bad, 1, "a route path has no query or fragment");
        }
        if *seg == "*" {
            if i != last {
                return err(off, 1, "`*` must be the last segment of the path");
            }
            tail = Tail::Splat;
            break;
        }
        if seg.contains('*') {
            return err(
                off + seg.find('*').unwrap_or(0),
                1,
                "`*` must be a whole segment (`/*`)",
            );
        }
        if let Some(name) = seg.strip_prefix(':') {
            if name.is_empty() {
                return err(off, 1, "empty parameter name after `:`");
            }
            if let Some(bad) = name.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                return err(
                    off + 1 + bad,
                    1,
                    "a parameter name is letters, digits and `_` only",
                );
            }
            if name.as_bytes()[0].is_ascii_digit() {
                return err(
                    off + 1,
                    name.len(),
                    "a parameter name cannot start with a digit",
                );
            }
            if names.contains(&name) {
                return err(
                    off,
                    seg.len(),
                    "this parameter name is used twice in the path",
                );
            }
            names.push(name);
            segments.push(Segment::Param(name.to_owned()));
        } else {
            let literal = normalize_literal(seg).map_err(|at| {
                DslError::new(
                    Part::Head,
                    base + off + at,
                    1,
                    "invalid percent-encoding in the path",
                )
            })?;
            // Normalisation turns `.`, `..`, `%2e` and friends into nothing: such a segment can
            // never be seen by the router (requests are normalised the same way).
            if literal.is_empty() || literal == "." || literal == ".." {
                return err(
                    off,
                    seg.len(),
                    "`.` and `..` segments never reach the router (paths are normalised)",
                );
            }
            segments.push(Segment::Literal(literal));
        }
        off += seg.len() + 1;
    }
    if segments.len() > MAX_SEGMENTS {
        return err(0, path.len(), "too many segments in one path (at most 64)");
    }
    if names.len() > MAX_PARAMS {
        return err(
            0,
            path.len(),
            "too many parameters in one path (at most 16)",
        );
    }
    Ok(PathPattern { segments, tail })
}

/// Normalises a literal segment the way request paths are normalised, so that a rule
/// written `/caf%c3%a9` or `/%61bc` matches what the server will compare against.
fn normalize_literal(seg: &str) -> Result<String, usize> {
    let mut p = Vec::with_capacity(seg.len() + 1);
    p.push(b'/');
    p.extend_from_slice(seg.as_bytes());
    match crate::path::normalize(&p) {
        Ok(n) => Ok(String::from_utf8_lossy(&n[1..]).into_owned()),
        Err(crate::path::PathError::BadEscape(at)) => Err(at.saturating_sub(1)),
        Err(crate::path::PathError::NotAbsolute) => Err(0),
    }
}

/// What a rule does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reverse proxy.
    Proxy(ProxyTarget),
    /// Static files from a directory (its existence is checked by the config loader).
    Static(String),
    /// A fixed response.
    Fixed(Fixed),
    /// Echo the request as JSON, with this status.
    Echo(u16),
}

impl Action {
    /// The action's kind, as logs and metrics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Proxy(_) => "proxy",
            Action::Static(_) => "static",
            Action::Fixed(_) => "fixed",
            Action::Echo(_) => "echo",
        }
    }
}

/// The content type of a fixed body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    /// No body.
    None,
    /// `application/json; charset=utf-8`.
    Json,
    /// `text/plain; charset=utf-8`.
    Text,
}

impl BodyType {
    /// The `Content-Type` header value.
    pub fn content_type(self) -> Option<&'static str> {
        match self {
            BodyType::None => None,
            BodyType::Json => Some("application/json; charset=utf-8"),
            BodyType::Text => Some("text/plain; charset=utf-8"),
        }
    }
}

/// A fixed response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fixed {
    /// The status code.
    pub status: u16,
    /// The body (empty for redirects, whose text is the `Location`).
    pub body: String,
    /// How the body is typed: `None` without a body, `Text` as parsed here; the loader
    /// (`anygate-config`) makes it `Json` when the body is a valid JSON document and rejects
    /// a body that starts like JSON (`{`, `[`) but does not parse.
    pub body_type: BodyType,
    /// For 301/302/303/307/308: the `Location`.
    pub location: Option<String>,
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
    /// HTTP/2 with prior knowledge over plain TCP (`h2c://`).
    H2c,
}

/// A proxy target URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyTarget {
    /// The scheme.
    pub scheme: Scheme,
    /// `user:password` if given (never logged).
    pub userinfo: Option<String>,
    /// Host name (a pool name or a DNS name), IPv4, or `[IPv6]`.
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
    /// The path, `/` when none was given.
    pub path: String,
    /// Whether the URI named a path (`http://up/` or `http://up/x`) or not (`http://up`).
    pub has_path: bool,
}

impl ProxyTarget {
    /// `scheme://host[:port]` without userinfo, as shown in logs and `explain`.
    pub fn origin(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::H2c => "h2c",
        };
        match self.port {
            Some(p) => format!("{scheme}://{}:{p}", self.host),
            None => format!("{scheme}://{}", self.host),
        }
    }
}

/// Parses an ACTION.
pub fn parse_action(text: &str) -> Result<Action, DslError> {
    let err = |off: usize, len: usize, msg: String| {
        Err(DslError::new(Part::Action, off, len.max(1), msg))
    };
    if text.trim().is_empty() {
        return err(
            0,
            text.len(),
            "empty action: expected a URL, a directory, `*` or `STATUS [BODY]`".into(),
        );
    }
    if text.starts_with(' ') || text.starts_with('\t') {
        return err(0, 1, "the action starts with a space".into());
    }
    if let Some(rest) = text.strip_prefix("http://") {
        return parse_target(Scheme::Http, rest, 7).map(Action::Proxy);
    }
    if let Some(rest) = text.strip_prefix("https://") {
        return parse_target(Scheme::Https, rest, 8).map(Action::Proxy);
    }
    if let Some(rest) = text.strip_prefix("h2c://") {
        return parse_target(Scheme::H2c, rest, 6).map(Action::Proxy);
    }
    if text.starts_with('/') || text.starts_with('.') {
        if text.contains('\0') {
            return err(0, text.len(), "a directory path cannot contain NUL".into());
        }
        return Ok(Action::Static(text.to_owned()));
    }
    if text == "*" {
        return Ok(Action::Echo(200));
    }
    let (token, body) = match text.find(' ') {
        Some(i) => (&text[..i], Some((i + 1, &text[i + 1..]))),
        None => (text, None),
    };
    let Some(code) = status::parse(token) else {
        let hint = match status::suggest(token) {
            Some(s) => format!(" (did you mean `{s}`?)"),
            None if token.contains("://") => {
                " (only http://, https:// and h2c:// can be proxied)".into()
            }
            None if token.contains(':') => " (a proxy target needs `http://`)".into(),
            None => String::new(),
        };
        return err(
            0,
            token.len(),
            format!(
                "unknown status `{token}`{hint}: expected a code 100-599, a status name such as OK or NOT_FOUND, a URL, a directory, or `*`"
            ),
        );
    };
    if code < 200 {
        // An interim status is not an answer: the client would wait for the final one (or,
        // for 101, switch protocols).
        return err(
            0,
            token.len(),
            format!("status {code} is informational (1xx): a rule must answer with 200-599"),
        );
    }
    let Some((body_off, body)) = body else {
        if status::is_redirect(code) {
            return err(
                0,
                token.len(),
                format!(
                    "status {code} is a redirect: write its Location after it (`{token} /new/place`)"
                ),
            );
        }
        return Ok(Action::Fixed(Fixed {
            status: code,
            body: String::new(),
            body_type: BodyType::None,
            location: None,
        }));
    };
    if body == "*" {
        if status::forbids_body(code) {
            return err(
                body_off,
                1,
                format!("status {code} cannot have a body, so it cannot echo"),
            );
        }
        return Ok(Action::Echo(code));
    }
    if status::is_redirect(code) {
        if body.is_empty() || body.contains([' ', '\r', '\n']) {
            return err(
                body_off,
                body.len(),
                "a redirect's text is its Location: one URL or path, no spaces".into(),
            );
        }
        return Ok(Action::Fixed(Fixed {
            status: code,
            body: String::new(),
            body_type: BodyType::None,
            location: Some(body.to_owned()),
        }));
    }
    if status::forbids_body(code) && !body.is_empty() {
        return err(
            body_off,
            body.len(),
            format!("status {code} cannot have a body"),
        );
    }
    // Whether the body is a JSON document is the loader's question (`anygate-config`,
    // which parses JSON with positions): here a body is text.
    Ok(Action::Fixed(Fixed {
        status: code,
        body: body.to_owned(),
        body_type: BodyType::Text,
        location: None,
    }))
}

fn parse_target(scheme: Scheme, rest: &str, base: usize) -> Result<ProxyTarget, DslError> {
    let err = |off: usize, len: usize, msg: &str| {
        Err(DslError::new(Part::Action, base + off, len.max(1), msg))
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    if let Some(q) = tail.find(['?', '#']) {
        return err(
            auth_end + q,
            tail.len() - q,
            "a proxy target has no query or fragment (the client's query is forwarded)",
        );
    }
    if let Some(bad) = tail.find(|c: char| c.is_whitespace() || c.is_control()) {
        return err(
            auth_end + bad,
            1,
            "spaces and control characters are not allowed in a URL",
        );
    }
    let (userinfo, hostport, hp_off) = match authority.rfind('@') {
        Some(at) => (
            Some(authority[..at].to_owned()),
            &authority[at + 1..],
            at + 1,
        ),
        None => (None, authority, 0),
    };
    if hostport.is_empty() {
        return err(0, authority.len(), "the proxy target has no host");
    }
    let (host, port_text) = if let Some(v6) = hostport.strip_prefix('[') {
        let Some(close) = v6.find(']') else {
            return err(hp_off, hostport.len(), "unclosed `[` in an IPv6 address");
        };
        if v6[..close].parse::<std::net::Ipv6Addr>().is_err() {
            return err(hp_off, close + 2, "invalid IPv6 address");
        }
        let after = &v6[close + 1..];
        match after.strip_prefix(':') {
            Some(p) => (&hostport[..close + 2], Some((hp_off + close + 3, p))),
            None if after.is_empty() => (&hostport[..close + 2], None),
            None => {
                return err(
                    hp_off + close + 2,
                    after.len(),
                    "unexpected text after the IPv6 address",
                );
            }
        }
    } else {
        match hostport.rfind(':') {
            Some(c) => (&hostport[..c], Some((hp_off + c + 1, &hostport[c + 1..]))),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return err(
            hp_off,
            hostport.len().max(1),
            "the proxy target has no host",
        );
    }
    if !host.starts_with('[')
        && let Some(bad) =
            host.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'))
    {
        return err(hp_off + bad, 1, "invalid character in the host name");
    }
    let port = match port_text {
        None => None,
        Some((off, p)) => match p.parse::<u16>() {
            Ok(n) if n > 0 && !p.starts_with('+') => Some(n),
            _ => return err(off, p.len(), "the port must be a number from 1 to 65535"),
        },
    };
    let has_path = !tail.is_empty();
    Ok(ProxyTarget {
        scheme,
        userinfo,
        host: host.to_ascii_lowercase(),
        port,
        path: if has_path {
            tail.to_owned()
        } else {
            "/".to_owned()
        },
        has_path,
    })
}

#[cfg(test)]
mod tests;
