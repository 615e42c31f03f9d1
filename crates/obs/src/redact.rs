//! Secret masking: what a log line must never carry.
//!
//! A name is secret when, compared without case, it is one of [`EXACT`] or contains one of
//! [`CONTAINS`]: `authorization`, `cookie`, `set-cookie`, `x-api-key`, `access_token`,
//! `password`, `client_secret`, `session_id`, `X-Auth-Token`, `aws_access_key_id`,
//! `id_jwt`, … A query parameter's name is also compared percent-decoded (`%74oken` is
//! `token`). Its value is written as `***`. Masking a harmless value costs a little
//! debugging; missing a secret costs a leak, so the words are broad.
//!
//! Not masked: the path. A rule that carries a secret in its path (`/reset/:token`) logs
//! it; put such values in a query parameter or a header, or leave the rule unlogged.

/// Names that are secret as a whole.
pub const EXACT: &[&str] = &["key", "sig", "pwd", "sid", "code", "otp", "pin"];

/// Words that make any name containing them secret.
pub const CONTAINS: &[&str] = &[
    "auth",
    "cookie",
    "token",
    "passw",
    "secret",
    "session",
    "api-key",
    "api_key",
    "apikey",
    "signature",
    "credential",
    "private",
    "jwt",
    "bearer",
    "-key",
    "_key",
    ".key",
];

/// What a masked value is written as.
pub const MASK: &[u8] = b"***";

/// Whether values named `name` are secret, as written or percent-decoded (`+` as a
/// space).
pub fn is_secret_param(name: &[u8]) -> bool {
    if is_secret(name) {
        return true;
    }
    if !name.iter().any(|&b| b == b'%' || b == b'+') {
        return false;
    }
    // Names longer than this are compared as written only.
    let mut decoded = [0u8; 128];
    let mut n = 0;
    let mut i = 0;
    while i < name.len() {
        if n == decoded.len() {
            return false;
        }
        let b = match name[i] {
            b'%' if i + 2 < name.len() => match (hex_val(name[i + 1]), hex_val(name[i + 2])) {
                (Some(h), Some(l)) => {
                    i += 2;
                    h << 4 | l
                }
                _ => b'%',
            },
            b'+' => b' ',
            b => b,
        };
        decoded[n] = b;
        n += 1;
        i += 1;
    }
    is_secret(&decoded[..n])
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether values named `name` are secret.
pub fn is_secret(name: &[u8]) -> bool {
    EXACT
        .iter()
        .any(|w| name.eq_ignore_ascii_case(w.as_bytes()))
        || CONTAINS
            .iter()
            .any(|w| contains_ignore_case(name, w.as_bytes()))
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Appends `query` (without its `?`) with the value of every secret parameter replaced by
/// `***`: `user=7&access_token=abc` → `user=7&access_token=***`. A name is compared as
/// written and percent-decoded ([`is_secret_param`]). Pairs are separated by `&`, and by
/// `;` for the frameworks that also accept it: both readings are checked and either one
/// masks (`a=1;token=x` → `a=1;token=***`, and `password;x=y`, whose `&`-name contains
/// `passw`, → `password;x=***`), so a secret is never shown because of how it was split.
pub fn query(out: &mut Vec<u8>, query: &[u8]) {
    for (i, pair) in query.split(|&b| b == b'&').enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        if masked_param(out, pair) {
            continue;
        }
        for (j, part) in pair.split(|&b| b == b';').enumerate() {
            if j > 0 {
                out.push(b';');
            }
            if !masked_param(out, part) {
                out.extend_from_slice(part);
            }
        }
    }
}

/// `name=***` when `pair`'s name is secret (and `true`); nothing written otherwise.
fn masked_param(out: &mut Vec<u8>, pair: &[u8]) -> bool {
    match pair.iter().position(|&b| b == b'=') {
        Some(eq) if is_secret_param(&pair[..eq]) => {
            out.extend_from_slice(&pair[..=eq]);
            out.extend_from_slice(MASK);
            true
        }
        _ => false,
    }
}

/// Appends a header field's value for a log: `***` when `name` is secret, with cookie
/// names kept (`Cookie: a=1; b=2` → `a=***; b=***`, `Set-Cookie: id=1; Path=/` →
/// `id=***; Path=/`), the value itself otherwise.
pub fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    if name.eq_ignore_ascii_case(b"cookie") {
        for (i, c) in value.split(|&b| b == b';').enumerate() {
            if i > 0 {
                out.push(b';');
            }
            mask_pair(out, c);
        }
    } else if name.eq_ignore_ascii_case(b"set-cookie") {
        // The first pair is the cookie; the attributes after it are not secret.
        let (first, rest) = match value.iter().position(|&b| b == b';') {
            Some(i) => value.split_at(i),
            None => (value, &b""[..]),
        };
        mask_pair(out, first);
        out.extend_from_slice(rest);
    } else if is_secret(name) {
        out.extend_from_slice(MASK);
    } else if name.eq_ignore_ascii_case(b"referer") {
        // The page the client came from: its query may carry the same secrets.
        let (url, fragment) = match value.iter().position(|&b| b == b'#') {
            Some(i) => value.split_at(i),
            None => (value, &b""[..]),
        };
        match url.iter().position(|&b| b == b'?') {
            Some(q) => {
                out.extend_from_slice(&url[..=q]);
                query(out, &url[q + 1..]);
            }
            None => out.extend_from_slice(url),
        }
        out.extend_from_slice(fragment);
    } else {
        out.extend_from_slice(value);
    }
}

/// `name=value` → `name=***` (a bare value → `***`).
fn mask_pair(out: &mut Vec<u8>, pair: &[u8]) {
    match pair.iter().position(|&b| b == b'=') {
        Some(eq) => {
            out.extend_from_slice(&pair[..=eq]);
            out.extend_from_slice(MASK);
        }
        None if pair.trim_ascii().is_empty() => out.extend_from_slice(pair),
        None => out.extend_from_slice(MASK),
    }
}

/// `url` without the userinfo of its authority: `http://user:pass@host:8080/x` →
/// `http://host:8080/x`. Anything else is returned as it is.
pub fn strip_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return url.into();
    };
    let start = scheme_end + 3;
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..start], &url[start + at + 1..]).into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> String {
        let mut out = Vec::new();
        query(&mut out, s.as_bytes());
        String::from_utf8(out).unwrap()
    }

    fn h(name: &str, value: &str) -> String {
        let mut out = Vec::new();
        header(&mut out, name.as_bytes(), value.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fixture_access_token_in_a_query_is_masked() {
        assert_eq!(q("access_token=abc"), "access_token=***");
        assert_eq!(
            q("user=7&access_token=abc&page=2"),
            "user=7&access_token=***&page=2"
        );
        assert_eq!(
            q("PASSWORD=x&api_key=y&sig=z&q=k"),
            "PASSWORD=***&api_key=***&sig=***&q=k"
        );
        assert_eq!(q("flag&token="), "flag&token=***");
        assert_eq!(q(""), "");
    }

    #[test]
    fn regression_review_redaction_gaps() {
        // `;` separates pairs too; names are compared percent-decoded.
        assert_eq!(q("a=1;token=x;b=2"), "a=1;token=***;b=2");
        assert_eq!(q("%74oken=x&%41PI%5FKEY=y"), "%74oken=***&%41PI%5FKEY=***");
        assert_eq!(q("pass%77ord=x&my+token=y"), "pass%77ord=***&my+token=***");
        assert_eq!(q("100%=x&%zz=y&%=z"), "100%=x&%zz=y&%=z");
        // Keys and JWTs by any name.
        for n in [
            "aws_access_key_id",
            "x-goog-key",
            "id_jwt",
            "JWT",
            "X-Bearer",
            "tls.key",
        ] {
            assert!(is_secret(n.as_bytes()), "{n}");
        }
        // The referer's query is masked like the request's.
        assert_eq!(
            h("Referer", "https://a.example/cb?code=abc&state=1#frag"),
            "https://a.example/cb?code=***&state=1#frag"
        );
        assert_eq!(h("referer", "https://a.example/p"), "https://a.example/p");
    }

    /// Found by the `log_line` fuzz target: `passw…;…=v` was split at `;` only, so the
    /// value of a parameter whose `&`-delimited name contains `passw` was logged as sent.
    #[test]
    fn regression_fuzz_a_secret_name_with_a_semicolon_is_masked_under_either_reading() {
        assert_eq!(q("password;x=hunter2"), "password;x=***");
        assert_eq!(q("a=1&my_token;v=2&b=3"), "a=1&my_token;v=***&b=3");
        // The `;` reading alone still masks its own secrets.
        assert_eq!(q("x=1;session=s;y=2&z=3"), "x=1;session=***;y=2&z=3");
        // Nothing secret under either reading: as sent.
        assert_eq!(q("a;b=1&c;d"), "a;b=1&c;d");
    }

    #[test]
    fn fixture_authorization_and_cookie_values_are_masked() {
        assert_eq!(h("Authorization", "Bearer abc.def"), "***");
        assert_eq!(h("x-api-key", "k1"), "***");
        assert_eq!(h("X-Auth-Token", "t"), "***");
        assert_eq!(
            h("Cookie", "session=abc; theme=dark"),
            "session=***; theme=***"
        );
        assert_eq!(
            h("Set-Cookie", "id=42; Path=/; HttpOnly"),
            "id=***; Path=/; HttpOnly"
        );
        assert_eq!(h("User-Agent", "curl/8"), "curl/8");
    }

    #[test]
    fn fixture_userinfo_is_stripped_from_upstream_urls() {
        assert_eq!(strip_userinfo("http://user:pass@host"), "http://host");
        assert_eq!(
            strip_userinfo("https://u@api.internal:8443/v1?x=@"),
            "https://api.internal:8443/v1?x=@"
        );
        assert_eq!(strip_userinfo("http://host/a@b"), "http://host/a@b");
        assert_eq!(strip_userinfo("10.0.0.1:80"), "10.0.0.1:80");
    }

    #[test]
    fn secret_names() {
        for n in [
            "cookie",
            "Set-Cookie",
            "x-api-key",
            "TOKEN",
            "client_secret",
            "JSESSIONID",
            "key",
        ] {
            assert!(is_secret(n.as_bytes()), "{n}");
        }
        for n in ["page", "user", "monkey", "q", "accept"] {
            assert!(!is_secret(n.as_bytes()), "{n}");
        }
    }
}
