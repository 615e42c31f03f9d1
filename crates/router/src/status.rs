//! Status codes and their DSL names.

/// The named statuses of the DSL (SPEC §5).
pub const NAMED: [(&str, u16); 25] = [
    ("OK", 200),
    ("CREATED", 201),
    ("ACCEPTED", 202),
    ("NO_CONTENT", 204),
    ("MOVED", 301),
    ("FOUND", 302),
    ("SEE_OTHER", 303),
    ("NOT_MODIFIED", 304),
    ("TEMP_REDIRECT", 307),
    ("PERM_REDIRECT", 308),
    ("BAD_REQUEST", 400),
    ("UNAUTHORIZED", 401),
    ("FORBIDDEN", 403),
    ("NOT_FOUND", 404),
    ("METHOD_NOT_ALLOWED", 405),
    ("CONFLICT", 409),
    ("GONE", 410),
    ("TOO_MANY_REQUESTS", 429),
    ("INTERNAL_ERROR", 500),
    ("NOT_IMPLEMENTED", 501),
    ("BAD_GATEWAY", 502),
    ("SERVICE_UNAVAILABLE", 503),
    ("GATEWAY_TIMEOUT", 504),
    ("IM_A_TEAPOT", 418),
    ("UNPROCESSABLE", 422),
];

/// A status from a three-digit code (100–599) or a DSL name.
pub fn parse(token: &str) -> Option<u16> {
    if token.len() == 3 && token.bytes().all(|b| b.is_ascii_digit()) {
        let code: u16 = token.parse().ok()?;
        return (100..=599).contains(&code).then_some(code);
    }
    NAMED.iter().find(|(n, _)| *n == token).map(|(_, c)| *c)
}

/// Whether the status is a redirect whose body is the `Location`.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Whether a response with this status has no body (RFC 9110).
pub fn forbids_body(status: u16) -> bool {
    matches!(status, 100..=199 | 204 | 304)
}

/// The closest DSL name to an unknown token, for "did you mean" hints.
pub fn suggest(token: &str) -> Option<&'static str> {
    let upper = token.to_ascii_uppercase();
    NAMED
        .iter()
        .map(|(n, _)| (edit_distance(&upper, n), *n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance between two strings, for "did you mean" hints (here and in the
/// config loader).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The reason phrase for the status line.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        418 => "I'm a teapot",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names() {
        assert_eq!(parse("OK"), Some(200));
        assert_eq!(parse("404"), Some(404));
        assert_eq!(parse("099"), None);
        assert_eq!(parse("600"), None);
        assert_eq!(parse("20"), None);
        assert_eq!(parse("ok"), None, "names are upper case");
        assert_eq!(parse("GATEWAY_TIMEOUT"), Some(504));
        assert_eq!(suggest("FOBIDDEN"), Some("FORBIDDEN"));
        assert_eq!(suggest("NOTFOUND"), Some("NOT_FOUND"));
        assert_eq!(suggest("BANANA"), None);
    }
}
