//! From the rest of a request path to a path relative to the root, refusing every trick.
//!
//! The router has already normalised the path: unreserved escapes decoded, dot segments
//! removed, slashes merged; other escapes (`%2F`, `%5C`, `%00`, `%20`, ...) are still there.
//! Here every escape is decoded, segment by segment, and a segment that decodes to
//! something a file name cannot safely hold is refused: a `/` (an encoded slash would make
//! new segments after dot removal ran), a `\`, a NUL, or `.`/`..`. Names starting with a dot
//! (`.git`, `.env`, the manifest) are hidden, except `.well-known`.
//!
//! This is the first line; the second is the kernel's: files are opened with
//! `RESOLVE_BENEATH` (see `anygate_runtime::fs::open_beneath`), so a symlink cannot lead out
//! either.

use anygate_router::path::unescape_at;

/// Why a path is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A traversal attempt: 403.
    Forbidden,
    /// A hidden name: 404, as if absent.
    Hidden,
}

/// Decodes `rest` and appends it to `out`: segments joined by `/`, no leading or trailing
/// slash; nothing for the root itself.
pub fn relative(rest: &[u8], out: &mut Vec<u8>) -> Result<(), Refusal> {
    let base = out.len();
    let mut first = true;
    for segment in rest.split(|&b| b == b'/') {
        if segment.is_empty() {
            continue;
        }
        if out.len() > base {
            out.push(b'/');
        }
        let start = out.len();
        let mut i = 0;
        while i < segment.len() {
            let mut b = segment[i];
            if b == b'%' {
                b = unescape_at(segment, i).ok_or(Refusal::Forbidden)?;
                i += 2;
            }
            if matches!(b, b'/' | b'\\' | 0) {
                return Err(Refusal::Forbidden);
            }
            out.push(b);
            i += 1;
        }
        let name = &out[start..];
        if name == b"." || name == b".." {
            return Err(Refusal::Forbidden);
        }
        if name.first() == Some(&b'.') && !(first && name == b".well-known") {
            return Err(Refusal::Hidden);
        }
        first = false;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> Result<String, Refusal> {
        let mut out = Vec::new();
        relative(s.as_bytes(), &mut out).map(|()| String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn decodes_and_joins() {
        assert_eq!(rel("").unwrap(), "");
        assert_eq!(rel("/").unwrap(), "");
        assert_eq!(rel("a/b%20c.txt").unwrap(), "a/b c.txt");
        assert_eq!(rel("/a//b/").unwrap(), "a/b");
        assert_eq!(rel(".well-known/x").unwrap(), ".well-known/x");
    }

    #[test]
    fn refuses_tricks() {
        for bad in [
            "..",
            "a/..",
            "%2e%2e",
            "a/%2E%2E/b",
            "a%2Fb",
            "..%2f",
            "a%5Cb",
            "a\\b",
            "a%00b",
            "%",
            "%zz",
            "a/%2",
            ".",
        ] {
            assert_eq!(rel(bad), Err(Refusal::Forbidden), "{bad}");
        }
        for hidden in [".git/config", ".env", "a/.htpasswd", "a/.well-known/x"] {
            assert_eq!(rel(hidden), Err(Refusal::Hidden), "{hidden}");
        }
    }
}
