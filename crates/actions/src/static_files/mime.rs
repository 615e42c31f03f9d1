//! What a file name says about the file: its content type, whether it compresses, whether
//! it is fingerprinted (its name changes when its content does).

/// Extension (lower case) → content type. Text types say `charset=utf-8`.
const TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("cjs", "text/javascript; charset=utf-8"),
    ("json", "application/json; charset=utf-8"),
    ("map", "application/json; charset=utf-8"),
    ("webmanifest", "application/manifest+json; charset=utf-8"),
    ("txt", "text/plain; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("xml", "application/xml; charset=utf-8"),
    ("rss", "application/rss+xml; charset=utf-8"),
    ("atom", "application/atom+xml; charset=utf-8"),
    ("svg", "image/svg+xml; charset=utf-8"),
    ("wasm", "application/wasm"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("ico", "image/x-icon"),
    ("bmp", "image/bmp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("eot", "application/vnd.ms-fontobject"),
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("ogg", "audio/ogg"),
    ("mp3", "audio/mpeg"),
    ("wav", "audio/wav"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("br", "application/octet-stream"),
    ("zst", "application/zstd"),
    ("tar", "application/x-tar"),
];

/// For a name with no known extension.
pub const DEFAULT_TYPE: &str = "application/octet-stream";

/// The extension of the last segment of `name` (without the dot), if it has one. A leading
/// dot alone (`.env`) is not an extension.
pub fn extension(name: &[u8]) -> Option<&[u8]> {
    let last = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    let dot = last.iter().rposition(|&b| b == b'.')?;
    (dot > 0 && dot + 1 < last.len()).then(|| &last[dot + 1..])
}

/// The content type for a file name.
pub fn content_type(name: &[u8]) -> &'static str {
    let Some(ext) = extension(name) else {
        return DEFAULT_TYPE;
    };
    TYPES
        .iter()
        .find(|(e, _)| e.as_bytes().eq_ignore_ascii_case(ext))
        .map_or(DEFAULT_TYPE, |(_, t)| t)
}

/// Whether a content type is worth compressing (text, JSON, JS, SVG, WASM, fonts that are
/// not compressed already).
pub fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.starts_with("application/json")
        || content_type.starts_with("application/manifest+json")
        || content_type.starts_with("application/xml")
        || content_type.starts_with("application/rss+xml")
        || content_type.starts_with("application/atom+xml")
        || content_type.starts_with("image/svg+xml")
        || content_type == "application/wasm"
        || content_type == "image/x-icon"
        || content_type == "image/bmp"
        || content_type == "font/ttf"
        || content_type == "font/otf"
        || content_type == "application/vnd.ms-fontobject"
}

/// Whether a content type is HTML.
pub fn is_html(content_type: &str) -> bool {
    content_type.starts_with("text/html")
}

/// Whether the file name carries a content hash, as bundlers write them: `app.3f9a1c.js`,
/// `index-BwE1rT3x.js`, `chunk.8e2f6b41d3.css`. The piece before the extension, split on
/// `.` or `-`, must be 6 or more hex digits with at least one digit, or 8 or more letters,
/// digits and `_` with at least one digit and one letter.
pub fn is_fingerprinted(name: &[u8]) -> bool {
    let last = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    let Some(dot) = last.iter().rposition(|&b| b == b'.') else {
        return false;
    };
    let stem = &last[..dot];
    let piece = stem
        .rsplit(|&b| b == b'.' || b == b'-')
        .next()
        .unwrap_or_default();
    if piece.len() == stem.len() {
        return false; // no separator: `app.js`
    }
    let digit = piece.iter().any(u8::is_ascii_digit);
    let hex = piece.len() >= 6 && piece.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let mixed = piece.len() >= 8
        && piece
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_')
        && piece.iter().any(u8::is_ascii_alphabetic);
    digit && (hex || mixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_extension() {
        assert_eq!(content_type(b"a/index.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type(b"app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type(b"x.woff2"), "font/woff2");
        assert_eq!(content_type(b".env"), DEFAULT_TYPE);
        assert_eq!(content_type(b"README"), DEFAULT_TYPE);
        assert_eq!(content_type(b"dir.v1/README"), DEFAULT_TYPE);
        assert!(compressible(content_type(b"a.svg")));
        assert!(!compressible(content_type(b"a.png")));
    }

    #[test]
    fn fingerprints() {
        for yes in [
            &b"app.3f9a1c.js"[..],
            b"assets/index-BwE1rT3x.js",
            b"chunk.8e2f6b41d3.css",
            b"main.a1b2c3d4e5f6.woff2",
        ] {
            assert!(is_fingerprinted(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b"app.js"[..],
            b"bootstrap.bundle.js",
            b"main.es2015.js",
            b"jquery-3.6.0.js",
            b"polyfills-legacy.js",
            b"index.html",
            b"abc123",
        ] {
            assert!(!is_fingerprinted(no), "{}", String::from_utf8_lossy(no));
        }
    }
}
