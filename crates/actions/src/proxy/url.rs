//! The upstream URL of a proxied request (SPEC §5), built from the rule's pattern and
//! target: the proxy's business, not the router's.

use anygate_router::dsl::{PathPattern, ProxyTarget, Segment, Tail};

/// The upstream path and query for a proxy rule (SPEC §5):
/// - prefix and splat rules append the rest of the path to the target's path, with exactly
///   one `/` between them: `"/v1/": "http://up:9000/"` sends `/v1/a/b` to `/a/b` and `/v1`
///   to `/`;
/// - `:param` rules keep the request path under the target's path: `"/users/:id":
///   "http://up/base/"` sends `/users/7` to `/base/users/7`;
/// - exact rules call the target's path as written (`"/ping": "http://auth/ping"`), or the
///   request path when the target has no path (`http://auth`);
/// - the query string is always forwarded unchanged.
pub fn upstream_path_and_query(
    target: &ProxyTarget,
    pattern: &PathPattern,
    request_path: &[u8],
    splat: Option<&[u8]>,
    query: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(target.path.len() + request_path.len() + 16);
    push_upstream_path_and_query(&mut out, target, pattern, request_path, splat, query);
    out
}

/// [`upstream_path_and_query`], appended to `out` (the proxy reuses one buffer).
pub fn push_upstream_path_and_query(
    out: &mut Vec<u8>,
    target: &ProxyTarget,
    pattern: &PathPattern,
    request_path: &[u8],
    splat: Option<&[u8]>,
    query: Option<&[u8]>,
) {
    let base = target.path.as_bytes();
    let join = |out: &mut Vec<u8>, rest: &[u8]| {
        out.extend_from_slice(base);
        let rest = rest.strip_prefix(b"/").unwrap_or(rest);
        if rest.is_empty() {
            return;
        }
        if out.last() != Some(&b'/') {
            out.push(b'/');
        }
        out.extend_from_slice(rest);
    };
    match pattern.tail {
        Tail::Prefix | Tail::Splat => join(out, splat.unwrap_or_default()),
        Tail::Exact
            if pattern
                .segments
                .iter()
                .any(|s| matches!(s, Segment::Param(_))) =>
        {
            join(out, request_path);
        }
        Tail::Exact if target.has_path => out.extend_from_slice(base),
        Tail::Exact => out.extend_from_slice(request_path),
    }
    if let Some(q) = query {
        out.push(b'?');
        out.extend_from_slice(q);
    }
}

/// Whether a normalised path would climb once `%2F` and `%5C` (and `\`) are decoded as
/// separators: a segment like `..%2Fadmin` is `..` then `admin` to a backend that decodes
/// them, and `/public/..%2Fadmin` reaches `/admin` behind a `/public/*` rule. The router
/// keeps `%2F` encoded (it is data), so the check is the proxy's: refused unless
/// `proxy.allow_encoded_traversal`.
pub fn encoded_traversal(path: &[u8]) -> bool {
    if !path.iter().any(|&b| b == b'%' || b == b'\\') {
        return false;
    }
    path.split(|&b| b == b'/').any(|segment| {
        let mut piece_start = 0;
        let mut split = false;
        let mut i = 0;
        while i < segment.len() {
            let sep = if segment[i] == b'\\' {
                1
            } else if segment[i] == b'%'
                && segment
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.eq_ignore_ascii_case(b"2f") || h.eq_ignore_ascii_case(b"5c"))
            {
                3
            } else {
                0
            };
            if sep == 0 {
                i += 1;
                continue;
            }
            if is_dots(&segment[piece_start..i]) {
                return true;
            }
            split = true;
            i += sep;
            piece_start = i;
        }
        split && is_dots(&segment[piece_start..])
    })
}

fn is_dots(piece: &[u8]) -> bool {
    piece == b"." || piece == b".."
}
