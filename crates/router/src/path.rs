//! Request-path normalisation, run on every request before routing (SPEC §5).
//!
//! 1. The path must start with `/`.
//! 2. Percent-encoded *unreserved* characters (`A-Z a-z 0-9 - . _ ~`) are decoded; every
//!    other escape is kept, with its hex digits upper-cased, so `%2F` stays an escaped slash
//!    and `%2f` becomes `%2F`. An invalid escape (`%`, `%4`, `%zz`) is an error (400).
//! 3. Runs of `/` are merged into one (as nginx does by default): `//admin` must not dodge a
//!    `/admin/` rule.
//! 4. Dot segments are removed (RFC 3986 §5.2.4), never above the root.
//!
//! Matching is then byte-exact. Because decoding happens before dot removal, `/%2e%2e/` is
//! removed like `/../`, and `/%61dmin` becomes `/admin`: the bypass class where the router
//! and the backend disagree on what a path means is closed.
//!
//! The function allocates only when the path changes; an already-normal path is returned
//! borrowed.

use std::borrow::Cow;

/// Why a path was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/`.
    NotAbsolute,
    /// A `%` not followed by two hex digits, at this byte offset.
    BadEscape(usize),
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathError::NotAbsolute => f.write_str("the path does not start with `/`"),
            PathError::BadEscape(at) => write!(f, "invalid percent-encoding at byte {at}"),
        }
    }
}

impl std::error::Error for PathError {}

/// An unreserved character of RFC 3986 (`A-Z a-z 0-9 - . _ ~`): never needs escaping.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte a percent-escape stands for: `s[at]` is the `%`, two hex digits follow. `None`
/// for an invalid or cut escape.
pub fn unescape_at(s: &[u8], at: usize) -> Option<u8> {
    let hi = s.get(at + 1).copied().and_then(hex)?;
    let lo = s.get(at + 2).copied().and_then(hex)?;
    Some(hi << 4 | lo)
}

/// Normalises a request path (without its query). See the module docs.
pub fn normalize(path: &[u8]) -> Result<Cow<'_, [u8]>, PathError> {
    if path.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(path)?;
    Ok(Cow::Owned(remove_dots(&decoded)))
}

/// Fast check: no escapes, no `//`, no `.` or `..` segment. One pass over the bytes:
/// request paths are short, and a scalar loop over them costs less than the setup of a
/// vectorised search per segment.
fn is_normal(path: &[u8]) -> bool {
    // `path[0]` is a '/'.
    let mut seg_start = 1;
    for (i, &b) in path.iter().enumerate().skip(1) {
        if b == b'%' {
            return false;
        }
        if b == b'/' {
            let seg = &path[seg_start..i];
            if seg.is_empty() || seg == b"." || seg == b".." {
                return false;
            }
            seg_start = i + 1;
        }
    }
    // The last segment may be empty (a trailing slash).
    let last = &path[seg_start.min(path.len())..];
    last != b"." && last != b".."
}

fn decode(path: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(v) = unescape_at(path, i) else {
            return Err(PathError::BadEscape(i));
        };
        if is_unreserved(v) {
            out.push(v);
        } else {
            out.push(b'%');
            out.push(path[i + 1].to_ascii_uppercase());
            out.push(path[i + 2].to_ascii_uppercase());
        }
        i += 3;
    }
    Ok(out)
}

/// Merges slashes and removes `.`/`..` segments; `path` starts with `/`.
fn remove_dots(path: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    let segments: Vec<&[u8]> = path[1..].split(|&b| b == b'/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            b"." => {
                if i == last {
                    out.push(b'/');
                }
            }
            b".." => {
                // Drop the last output segment (never above the root).
                let cut = memchr::memrchr(b'/', &out).unwrap_or(0);
                out.truncate(cut);
                if i == last {
                    out.push(b'/');
                }
            }
            b"" => {
                // Merged slash, except a trailing one, which is kept.
                if i == last && out.last() != Some(&b'/') {
                    out.push(b'/');
                }
            }
            s => {
                out.push(b'/');
                out.extend_from_slice(s);
            }
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        String::from_utf8(normalize(p.as_bytes()).unwrap().into_owned()).unwrap()
    }

    #[test]
    fn rfc3986_and_spec_examples() {
        assert_eq!(n("/"), "/");
        assert_eq!(n("/a/b/c"), "/a/b/c");
        assert_eq!(n("/a/./b"), "/a/b");
        assert_eq!(n("/a/../b"), "/b");
        assert_eq!(n("/../../x"), "/x", "never above the root");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/b/."), "/a/b/");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/%61dmin"), "/admin");
        assert_eq!(n("/%2e%2e/etc/passwd"), "/etc/passwd");
        assert_eq!(n("/a%2fb"), "/a%2Fb", "%2F stays encoded, hex upper-cased");
        assert_eq!(n("/a%2Fb/../c"), "/c");
        assert_eq!(n("//admin//x/"), "/admin/x/");
        assert_eq!(
            n("/caf%C3%A9"),
            "/caf%C3%A9",
            "non-unreserved bytes stay encoded"
        );
        assert_eq!(n("/%7euser"), "/~user");
        assert_eq!(n("/a%00b"), "/a%00b");
    }

    #[test]
    fn already_normal_paths_are_borrowed() {
        assert!(matches!(
            normalize(b"/api/v1/users/7"),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(normalize(b"/api/"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize(b"/a..b/.c/"), Ok(Cow::Borrowed(_))));
    }

    /// The fast check as it was: one search for `%`, then one per segment.
    fn is_normal_by_search(path: &[u8]) -> bool {
        if path.contains(&b'%') {
            return false;
        }
        let mut i = 0;
        while i < path.len() {
            let end = path[i + 1..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |j| i + 1 + j);
            let seg = &path[i + 1..end];
            if (seg.is_empty() && end < path.len()) || seg == b"." || seg == b".." {
                return false;
            }
            i = end;
        }
        true
    }

    proptest::proptest! {
        #[test]
        fn fast_check_matches_the_search(path in "/[a./%]{0,12}") {
            proptest::prop_assert_eq!(
                is_normal(path.as_bytes()),
                is_normal_by_search(path.as_bytes())
            );
        }
    }

    #[test]
    fn invalid_input_is_an_error() {
        assert_eq!(normalize(b"a/b"), Err(PathError::NotAbsolute));
        assert_eq!(normalize(b""), Err(PathError::NotAbsolute));
        assert_eq!(normalize(b"/a%"), Err(PathError::BadEscape(2)));
        assert_eq!(normalize(b"/a%4"), Err(PathError::BadEscape(2)));
        assert_eq!(normalize(b"/%zz"), Err(PathError::BadEscape(1)));
    }
}
