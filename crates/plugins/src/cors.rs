//! `cors`: cross-origin resource sharing (the Fetch standard's CORS protocol).
//!
//! ```yaml
//! - kind: cors
//!   args:
//!     origins: ["https://app.example.com", "https://*.example.com"]   # or "*"
//!     methods: [GET, POST, PUT]        # default GET, HEAD, POST
//!     headers: [Content-Type, Authorization]   # default: whatever the preflight asks
//!     expose: [X-Request-Id]
//!     credentials: true
//!     max_age: 10m
//! ```
//!
//! - A **preflight** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is
//!   answered **204** by the first `cors` filter of the chain, before any other filter
//!   (a preflight never carries credentials, so `auth` and `rate_limit` must not see it)
//!   and before the action; the pipeline also routes a preflight by the method it asks
//!   for, so a path with only a `GET` rule still gets its preflight answered.
//! - An **actual request** from an allowed origin gets `Access-Control-Allow-Origin` (the
//!   origin itself, or `*` for `origins: "*"` without credentials), and
//!   `Access-Control-Allow-Credentials` / `Access-Control-Expose-Headers` as configured,
//!   on whatever response it gets (errors included).
//! - An origin that is not allowed, or a preflight asking for a method or header that is
//!   not, is refused: **403** `AG-SEC-6001`. A request whose `Origin` is the gateway's own
//!   origin (same-origin `POST`s carry one) is not cross-origin and passes untouched.
//! - `Vary: Origin` goes on every response whose headers depend on the origin, that is,
//!   all of them unless the policy is a plain `*`.
//!
//! `*.example.com` in an origin matches any depth of subdomain (`a.example.com`,
//! `a.b.example.com`), never `example.com` itself; scheme and port must match as written.
//! `*` with `credentials: true` is refused at load (browsers reject it).

use std::time::Duration;

use anygate_config::PluginSpec;
use anygate_config::args::Args;
use anygate_http::{ErrorKind, Exchange, Request};

use crate::{Built, Flow};

/// One allowed origin.
#[derive(Debug, PartialEq, Eq)]
enum Origin {
    /// `scheme://host[:port]`, lowercase.
    Exact(Box<str>),
    /// `scheme://*.suffix[:port]`: the prefix `scheme://` and the suffix `.suffix[:port]`.
    Subdomains(Box<str>, Box<str>),
}

impl Origin {
    fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Exact(o) => o.eq_ignore_ascii_case(origin),
            Self::Subdomains(scheme, suffix) => {
                let lower = origin.to_ascii_lowercase();
                lower
                    .strip_prefix(&**scheme)
                    .and_then(|rest| rest.strip_suffix(&**suffix))
                    .is_some_and(|label| {
                        !label.is_empty()
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                            && !label.starts_with('.')
                            && !label.ends_with('.')
                    })
            }
        }
    }
}

/// A compiled `cors` filter.
#[derive(Debug)]
pub struct Cors {
    /// `None`: any origin (`*`).
    origins: Option<Vec<Origin>>,
    methods: Vec<Box<str>>,
    /// `None`: whatever the preflight asks for.
    headers: Option<Vec<Box<str>>>,
    /// The `Access-Control-Allow-Methods` value.
    methods_value: Box<str>,
    /// The `Access-Control-Allow-Headers` value, when fixed.
    headers_value: Option<Box<str>>,
    expose: Option<Box<str>>,
    credentials: bool,
    max_age: Option<Box<str>>,
}

/// Whether `origin` is allowed by the configured origin `pattern` (`https://app.example.com`,
/// `https://*.example.com`); `None` when the pattern itself is not valid.
pub fn origin_matches(pattern: &str, origin: &str) -> Option<bool> {
    parse_origin(pattern).ok().map(|p| p.matches(origin))
}

/// Whether `req` is a CORS preflight.
pub(crate) fn is_preflight(req: &Request<'_>) -> bool {
    req.method() == b"OPTIONS"
        && req.header(b"origin").is_some()
        && req.header(b"access-control-request-method").is_some()
}

impl Cors {
    pub(crate) fn build(spec: &PluginSpec) -> Built<Self> {
        let mut args = Args::new(spec.args.as_ref(), spec.span, "`cors` args");
        let origin_list = args.strings("origins");
        let credentials = args.bool("credentials").unwrap_or(false);
        let mut origins = Some(Vec::new());
        if origin_list.is_empty() && !args.failed() {
            let span = args.span();
            args.error_help(
                span,
                "`cors` needs `origins`",
                "list them (`origins: [\"https://app.example.com\"]`) or allow any with `\"*\"`",
            );
        }
        for (text, node) in &origin_list {
            if *text == "*" {
                if credentials {
                    args.error_help(
                        node.span,
                        "`origins: \"*\"` cannot be used with `credentials: true`",
                        "browsers refuse credentials for a wildcard origin; list the origins",
                    );
                }
                origins = None;
                continue;
            }
            match parse_origin(text) {
                Ok(o) => {
                    if let Some(list) = origins.as_mut() {
                        list.push(o);
                    }
                }
                Err(e) => args.error(node.span, e),
            }
        }
        let methods: Vec<Box<str>> = {
            let list = args.strings("methods");
            if list.is_empty() {
                ["GET", "HEAD", "POST"].map(Box::from).into()
            } else {
                list.iter()
                    .filter_map(|(m, node)| {
                        if anygate_http::message::is_token(m.as_bytes()) {
                            Some(m.to_ascii_uppercase().into())
                        } else {
                            args.error(node.span, format!("`{m}` is not a method name"));
                            None
                        }
                    })
                    .collect()
            }
        };
        let headers = names(&mut args, "headers");
        let expose = names(&mut args, "expose");
        let max_age = args.duration("max_age");
        args.finish(&[
            "origins",
            "methods",
            "headers",
            "expose",
            "credentials",
            "max_age",
        ])?;
        let join = |v: &[Box<str>]| v.join(", ").into_boxed_str();
        Ok(Self {
            methods_value: join(&methods),
            headers_value: headers.as_deref().map(join),
            expose: expose.as_deref().filter(|e| !e.is_empty()).map(join),
            origins,
            methods,
            headers,
            credentials,
            max_age: max_age.map(|d: Duration| d.as_secs().to_string().into_boxed_str()),
        })
    }

    /// Whether the response depends on the request's origin.
    fn varies(&self) -> bool {
        self.origins.is_some() || self.credentials
    }

    fn allows(&self, origin: &str) -> bool {
        match &self.origins {
            None => origin != "null",
            Some(list) => list.iter().any(|o| o.matches(origin)),
        }
    }

    /// The `Access-Control-Allow-Origin` value for an allowed `origin`.
    fn allow_origin<'a>(&self, origin: &'a [u8]) -> &'a [u8] {
        if self.origins.is_none() && !self.credentials {
            b"*"
        } else {
            origin
        }
    }

    /// Answers a preflight.
    pub(crate) fn preflight(&self, req: &Request<'_>, ex: &mut Exchange<'_>) {
        let origin = req.header(b"origin").unwrap_or_default();
        let method = req
            .header(b"access-control-request-method")
            .unwrap_or_default();
        let asked = req
            .header(b"access-control-request-headers")
            .unwrap_or_default();
        let origin_ok = std::str::from_utf8(origin).is_ok_and(|o| self.allows(o));
        // The CORS-safelisted methods need no listing (a browser allows them anyway).
        let method = method.trim_ascii();
        let method_ok = matches!(method, b"GET" | b"HEAD" | b"POST")
            || self.methods.iter().any(|m| m.as_bytes() == method);
        let headers_ok = match &self.headers {
            None => true,
            Some(list) => asked
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .filter(|h| !h.is_empty())
                .all(|h| list.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(h))),
        };
        if !(origin_ok && method_ok && headers_ok) {
            ex.add_response_field(b"vary", b"Origin");
            ex.error(ErrorKind::CorsDenied, None);
            return;
        }
        let allow_origin = self.allow_origin(origin);
        let head = ex.respond(204, "No Content");
        let f = &mut head.fields;
        f.append(b"access-control-allow-origin", allow_origin);
        f.append(
            b"access-control-allow-methods",
            self.methods_value.as_bytes(),
        );
        match &self.headers_value {
            Some(v) if !v.is_empty() => f.append(b"access-control-allow-headers", v.as_bytes()),
            Some(_) => {}
            None if !asked.is_empty() && anygate_http::message::is_field_value(asked) => {
                f.append(b"access-control-allow-headers", asked);
            }
            None => {}
        }
        if self.credentials {
            f.append(b"access-control-allow-credentials", b"true");
        }
        if let Some(age) = &self.max_age {
            f.append(b"access-control-max-age", age.as_bytes());
        }
        f.append(
            b"vary",
            b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        );
        ex.send(anygate_http::server::ResponseBody::Empty);
    }

    /// An actual (non-preflight) request.
    pub(crate) fn pre(&self, req: &Request<'_>, ex: &mut Exchange<'_>) -> Flow {
        if self.varies() {
            ex.add_response_field(b"vary", b"Origin");
        }
        let Some(origin) = req.header(b"origin") else {
            return Flow::Continue;
        };
        let allowed = std::str::from_utf8(origin).is_ok_and(|o| self.allows(o));
        if !allowed {
            if same_origin(req, origin) {
                return Flow::Continue;
            }
            ex.error(ErrorKind::CorsDenied, None);
            return Flow::Answered;
        }
        let value = self.allow_origin(origin);
        ex.add_response_field(b"access-control-allow-origin", value);
        if self.credentials {
            ex.add_response_field(b"access-control-allow-credentials", b"true");
        }
        if let Some(e) = &self.expose {
            ex.add_response_field(b"access-control-expose-headers", e.as_bytes());
        }
        Flow::Continue
    }

    pub(crate) fn summary(&self) -> String {
        let origins = match &self.origins {
            None => "*".to_owned(),
            Some(l) => format!("{} origin(s)", l.len()),
        };
        format!(
            "{origins}, methods {}{}",
            self.methods_value,
            if self.credentials {
                ", credentials"
            } else {
                ""
            }
        )
    }
}

/// Whether `origin` is the request's own (`scheme://host` of this request).
fn same_origin(req: &Request<'_>, origin: &[u8]) -> bool {
    let scheme: &[u8] = if req.tls().is_some() {
        b"https://"
    } else {
        b"http://"
    };
    let (Some(host), Some(rest)) = (req.host(), origin.strip_prefix(scheme)) else {
        return false;
    };
    rest.eq_ignore_ascii_case(host)
}

/// `names` as a list of field names (`None` when absent; `"*"` reads as absent).
fn names(args: &mut Args<'_>, key: &str) -> Option<Vec<Box<str>>> {
    let list = args.strings(key);
    if list.is_empty() || list.iter().any(|(n, _)| *n == "*") {
        return None;
    }
    let mut out = Vec::with_capacity(list.len());
    for (name, node) in list {
        if anygate_http::message::is_token(name.as_bytes()) {
            out.push(name.into());
        } else {
            args.error(node.span, format!("`{name}` is not a field name"));
        }
    }
    Some(out)
}

fn parse_origin(text: &str) -> Result<Origin, String> {
    let lower = text.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return Err(format!(
            "`{text}` is not an origin: write `scheme://host[:port]` (`https://app.example.com`)"
        ));
    };
    if scheme.is_empty() || rest.is_empty() || rest.contains('/') {
        return Err(format!(
            "`{text}` is not an origin: `scheme://host[:port]`, without a path"
        ));
    }
    if let Some(suffix) = rest.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') {
            return Err(format!("`{text}`: `*.` must be followed by a domain"));
        }
        return Ok(Origin::Subdomains(
            format!("{scheme}://").into(),
            format!(".{suffix}").into(),
        ));
    }
    if rest.contains('*') {
        return Err(format!(
            "`{text}`: a wildcard is only allowed as the first label (`https://*.example.com`)"
        ));
    }
    Ok(Origin::Exact(lower.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_subdomain() {
        let exact = parse_origin("https://App.Example.com").unwrap();
        assert!(exact.matches("https://app.example.com"));
        assert!(!exact.matches("http://app.example.com"));
        assert!(!exact.matches("https://app.example.com:8443"));
        let sub = parse_origin("https://*.example.com").unwrap();
        assert!(sub.matches("https://a.example.com"));
        assert!(sub.matches("https://a.b.example.com"));
        assert!(!sub.matches("https://example.com"));
        assert!(!sub.matches("https://evil-example.com"));
        assert!(!sub.matches("https://a.example.com.evil.net"));
        assert!(!sub.matches("http://a.example.com"));
        let port = parse_origin("http://*.local:3000").unwrap();
        assert!(port.matches("http://x.local:3000") && !port.matches("http://x.local"));
        assert!(parse_origin("example.com").is_err());
        assert!(parse_origin("https://a.*.com").is_err());
        assert!(parse_origin("https://a.com/path").is_err());
    }
}
