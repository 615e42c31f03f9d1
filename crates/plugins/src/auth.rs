//! `auth`: API keys, bearer tokens and JWTs.
//!
//! ```yaml
//! - kind: auth
//!   args:
//!     realm: api
//!     api_key: { header: X-API-Key, query: api_key, keys: [k-123], keys_file: keys.txt }
//!     bearer:  { tokens: [t-456], tokens_file: tokens.txt }
//!     jwt:     { jwks_file: jwks.json, audience: api, claims: { sub: X-User-Id }, roles: [admin] }
//!     basic:   { users_file: htpasswd }
//! ```
//!
//! A bearer token is looked up in the static list first, then verified as a JWT (see
//! [`crate::jwt`]).
//!
//! A request passes with any one valid credential of the kinds configured: the API key in
//! the field `api_key.header` (default `X-API-Key`) or, when `api_key.query` names one, in
//! that query parameter; a bearer token in `Authorization: Bearer …` (RFC 6750). Without
//! one the answer is **401** `AG-SEC-6005` with a `WWW-Authenticate` challenge per kind
//! (`Bearer realm="api"`, with `error="invalid_token"` when a token was given and is
//! wrong; `ApiKey realm="api"` for keys). A key given in the query is dropped from the
//! target the action forwards or shows, so it never reaches an upstream's logs.
//!
//! Files hold one credential per line; blank lines and lines starting with `#` are
//! skipped; they are read when the configuration loads (and again on every reload).
//! Credentials are kept in a hash set keyed by a per-process random SipHash key.
//!
//! Basic passwords (bcrypt, argon2) are verified off the workers (see [`crate::basic`]).
//! With `forward`, a request no other kind lets through is decided by an external service
//! (see [`crate::forward`]).

use std::collections::HashSet;
use std::path::Path;

use anygate_config::PluginSpec;
use anygate_config::args::Args;
use anygate_http::{ErrorKind, Exchange, Request};

use crate::basic::{Basic, Outcome, credentials as basic_credentials};
use crate::forward::Forward;
use crate::jwt::{Jwt, Verdict, claim_value};
use crate::{Built, Flow};

#[derive(Debug)]
struct ApiKey {
    header: Box<[u8]>,
    query: Option<Box<[u8]>>,
    keys: HashSet<Box<[u8]>>,
}

#[derive(Debug)]
struct Bearer {
    tokens: HashSet<Box<[u8]>>,
}

/// A compiled `auth` filter.
#[derive(Debug)]
pub struct Auth {
    api_key: Option<ApiKey>,
    bearer: Option<Bearer>,
    jwt: Option<Jwt>,
    basic: Option<Basic>,
    forward: Option<Forward>,
    /// `Basic realm="…", charset="UTF-8"`.
    challenge_basic: Box<str>,
    /// `Bearer realm="…"`, `Bearer realm="…", error="invalid_token"`, `ApiKey realm="…"`,
    /// `Bearer realm="…", error="insufficient_scope"`.
    challenge_bearer: Box<str>,
    challenge_invalid: Box<str>,
    challenge_key: Box<str>,
    challenge_scope: Box<str>,
}

impl Auth {
    pub(crate) fn build(spec: &PluginSpec) -> Built<Self> {
        let mut args = Args::new(spec.args.as_ref(), spec.span, "`auth` args");
        let realm = match args.string("realm") {
            Some((r, node)) => {
                if r.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
                {
                    r.to_owned()
                } else {
                    args.error(
                        node.span,
                        "`realm` must be printable ASCII without quotes or backslashes",
                    );
                    String::new()
                }
            }
            None => "anygate".to_owned(),
        };
        let api_key = args.map("api_key").map(|mut a| {
            let header = match a.string("header") {
                Some((h, _)) if anygate_http::message::is_token(h.as_bytes()) => {
                    h.to_ascii_lowercase()
                }
                Some((h, n)) => {
                    a.error(n.span, format!("`{h}` is not a field name"));
                    String::new()
                }
                None => "x-api-key".to_owned(),
            };
            let query = a.string("query").map(|(q, _)| q.as_bytes().into());
            let keys = credentials(&mut a, "keys", "keys_file", &spec.base_dir);
            args.absorb(a, &["header", "query", "keys", "keys_file"]);
            ApiKey {
                header: header.into_bytes().into(),
                query,
                keys,
            }
        });
        let bearer = args.map("bearer").map(|mut a| {
            let tokens = credentials(&mut a, "tokens", "tokens_file", &spec.base_dir);
            args.absorb(a, &["tokens", "tokens_file"]);
            Bearer { tokens }
        });
        let jwt = Jwt::build(&mut args, &spec.base_dir);
        let basic = Basic::build(&mut args, &spec.base_dir);
        let forward = Forward::build(&mut args);
        if api_key.is_none()
            && bearer.is_none()
            && jwt.is_none()
            && basic.is_none()
            && forward.is_none()
            && !args.failed()
        {
            let span = args.span();
            args.error_help(
                span,
                "`auth` needs a kind of credential",
                "give `api_key`, `bearer`, `jwt`, `basic` or `forward`",
            );
        }
        args.finish(&["realm", "api_key", "bearer", "jwt", "basic", "forward"])?;
        Ok(Self {
            api_key,
            bearer,
            jwt,
            basic,
            forward,
            challenge_basic: format!("Basic realm=\"{realm}\", charset=\"UTF-8\"").into(),
            challenge_scope: format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\"")
                .into(),
            challenge_bearer: format!("Bearer realm=\"{realm}\"").into(),
            challenge_invalid: format!("Bearer realm=\"{realm}\", error=\"invalid_token\"").into(),
            challenge_key: format!("ApiKey realm=\"{realm}\"").into(),
        })
    }

    /// Whether checking a request may wait (a Basic password verified off the worker, a
    /// forward-auth subrequest); otherwise [`Auth::pre_now`] decides at once.
    pub(crate) fn waits(&self) -> bool {
        self.basic.is_some() || self.forward.is_some()
    }

    /// Checks the request's credentials; waits (without holding the worker) when a Basic
    /// password has to be verified or the forward-auth service asked.
    pub(crate) async fn pre(&self, req: &Request<'_>, ex: &mut Exchange<'_>) -> Flow {
        if let Some(b) = &self.basic
            && let Some((user, password)) = req.header(b"authorization").and_then(basic_credentials)
        {
            match b.check(&user, &password, ex.ctx().client).await {
                Outcome::Valid => return Flow::Continue,
                Outcome::Invalid => {}
                Outcome::Limited(secs) => {
                    let mut digits = [0u8; 20];
                    let retry = anygate_http::message::decimal(secs, &mut digits);
                    ex.error_with(ErrorKind::RateLimited, None, &[(b"retry-after", retry)]);
                    return Flow::Answered;
                }
                Outcome::Busy => {
                    ex.error_with(ErrorKind::Overloaded, None, &[(b"retry-after", b"1")]);
                    return Flow::Answered;
                }
            }
        }
        let bad_token = match self.tokens_and_keys(req, ex) {
            Ok(flow) => return flow,
            Err(bad_token) => bad_token,
        };
        if let Some(f) = &self.forward {
            // No other kind let the request through: the service decides, and its answer
            // is the client's. Boxed: its connection state would otherwise enlarge every
            // chain's future.
            return Box::pin(f.check(req, ex)).await;
        }
        self.refuse(ex, bad_token)
    }

    /// [`Auth::pre`] for a filter that never waits (see [`Auth::waits`]).
    pub(crate) fn pre_now(&self, req: &Request<'_>, ex: &mut Exchange<'_>) -> Flow {
        debug_assert!(!self.waits(), "a waiting auth filter must be awaited");
        match self.tokens_and_keys(req, ex) {
            Ok(flow) => flow,
            Err(bad_token) => self.refuse(ex, bad_token),
        }
    }

    /// Bearer tokens, JWTs and API keys: the decision, or (`Err`) none of them let the
    /// request through, and whether a bearer token was given and is wrong.
    fn tokens_and_keys(&self, req: &Request<'_>, ex: &mut Exchange<'_>) -> Result<Flow, bool> {
        let mut bad_token = false;
        if let Some(j) = &self.jwt {
            // Never the client's own claims: these fields come from a verified token only.
            for (_, field) in &j.claims {
                ex.remove_request_field(field);
            }
        }
        if (self.bearer.is_some() || self.jwt.is_some())
            && let Some(token) = req.header(b"authorization").and_then(bearer_token)
        {
            if self
                .bearer
                .as_ref()
                .is_some_and(|b| b.tokens.contains(token))
            {
                return Ok(Flow::Continue);
            }
            if let Some(j) = &self.jwt
                && let Verdict::Valid(claims) = j.verify(token)
            {
                if !j.has_role(&claims) {
                    ex.error_with(
                        ErrorKind::AuthForbidden,
                        None,
                        &[(b"www-authenticate", self.challenge_scope.as_bytes())],
                    );
                    return Ok(Flow::Answered);
                }
                for (claim, field) in &j.claims {
                    if let Some(v) = claims.get(claim).and_then(claim_value) {
                        ex.set_request_field(field, v.as_bytes());
                    }
                }
                return Ok(Flow::Continue);
            }
            bad_token = true;
        }
        if let Some(k) = &self.api_key {
            if req.header(&k.header).is_some_and(|v| k.keys.contains(v)) {
                self.hide_query_key(k, ex);
                return Ok(Flow::Continue);
            }
            if let Some(q) = &k.query
                && query_value(req.query(), q).is_some_and(|v| k.keys.contains(v))
            {
                self.hide_query_key(k, ex);
                return Ok(Flow::Continue);
            }
        }
        Err(bad_token)
    }

    /// The 401, with a challenge per kind of credential the filter takes.
    fn refuse(&self, ex: &mut Exchange<'_>, bad_token: bool) -> Flow {
        let mut challenges: [&[u8]; 3] = [b"", b"", b""];
        if self.basic.is_some() {
            challenges[2] = self.challenge_basic.as_bytes();
        }
        if self.bearer.is_some() || self.jwt.is_some() {
            challenges[0] = if bad_token {
                self.challenge_invalid.as_bytes()
            } else {
                self.challenge_bearer.as_bytes()
            };
        }
        if self.api_key.is_some() {
            challenges[1] = self.challenge_key.as_bytes();
        }
        let extra: Vec<(&[u8], &[u8])> = challenges
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| (&b"www-authenticate"[..], *c))
            .collect();
        ex.error_with(ErrorKind::Unauthorized, None, &extra);
        Flow::Answered
    }

    fn hide_query_key(&self, k: &ApiKey, ex: &mut Exchange<'_>) {
        if let Some(q) = &k.query {
            ex.remove_query_param(q);
        }
    }

    pub(crate) fn summary(&self) -> String {
        let mut kinds = Vec::new();
        if let Some(k) = &self.api_key {
            kinds.push(format!(
                "api_key ({} key(s), header {}{})",
                k.keys.len(),
                String::from_utf8_lossy(&k.header),
                k.query
                    .as_ref()
                    .map(|q| format!(" or query {}", String::from_utf8_lossy(q)))
                    .unwrap_or_default()
            ));
        }
        if let Some(b) = &self.bearer {
            kinds.push(format!("bearer ({} token(s))", b.tokens.len()));
        }
        if let Some(j) = &self.jwt {
            kinds.push(j.summary());
        }
        if let Some(b) = &self.basic {
            kinds.push(b.summary());
        }
        if let Some(f) = &self.forward {
            kinds.push(f.summary());
        }
        kinds.join(", ")
    }
}

/// The token of an `Authorization: Bearer TOKEN` value (scheme case-insensitive).
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The value of the first parameter `name` of `query`, as written.
pub fn query_value<'a>(query: Option<&'a [u8]>, name: &[u8]) -> Option<&'a [u8]> {
    query?.split(|&b| b == b'&').find_map(|pair| {
        let (n, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        (n == name && !v.is_empty()).then_some(v)
    })
}

/// The credentials of `list` and of the file `file_key`.
fn credentials(args: &mut Args<'_>, list: &str, file_key: &str, base: &Path) -> HashSet<Box<[u8]>> {
    let mut set: HashSet<Box<[u8]>> = HashSet::new();
    for (c, node) in args.strings(list) {
        if c.is_empty() || !anygate_http::message::is_field_value(c.as_bytes()) {
            args.error(node.span, "a credential must be a non-empty field value");
            continue;
        }
        set.insert(c.as_bytes().into());
    }
    if let Some((file, node)) = args.string(file_key) {
        let path = base.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines().map(str::trim) {
                    if !line.is_empty() && !line.starts_with('#') {
                        set.insert(line.as_bytes().into());
                    }
                }
            }
            Err(e) => args.error(node.span, format!("cannot read `{}`: {e}", path.display())),
        }
    }
    if set.is_empty() && !args.failed() {
        let span = args.span();
        args.error(
            span,
            format!("no credentials: give `{list}` or `{file_key}`"),
        );
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_query_values_are_read_exactly() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bear"), None);
        let q = Some(&b"a=1&api_key=k&api_keyx=2"[..]);
        assert_eq!(query_value(q, b"api_key"), Some(&b"k"[..]));
        assert_eq!(query_value(q, b"api"), None);
        assert_eq!(query_value(Some(b"api_key="), b"api_key"), None);
        assert_eq!(query_value(None, b"api_key"), None);
    }
}
