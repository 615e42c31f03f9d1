//! Writing JSON strings without allocating (error bodies, the echo action).

/// Appends `s` as a JSON string, quotes included. Invalid UTF-8 becomes U+FFFD; control
/// characters are escaped.
pub fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    push_contents(out, s);
    out.push(b'"');
}

/// Appends the escaped contents of a JSON string, without the quotes.
pub fn push_contents(out: &mut Vec<u8>, s: &[u8]) {
    for chunk in s.utf8_chunks() {
        push_escaped(out, chunk.valid());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

fn push_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        } else {
            out.extend_from_slice(esc);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(input: &[u8]) -> String {
        let mut out = Vec::new();
        push_string(&mut out, input);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes() {
        assert_eq!(s(b"plain"), r#""plain""#);
        assert_eq!(
            s(b"a\"b\\c\nd\te\x01\x7f"),
            r#""a\"b\\c\nd\te\u0001\u007f""#
        );
        assert_eq!(s("é😀".as_bytes()), "\"é😀\"");
        assert_eq!(s(b"a\xffb"), "\"a\u{fffd}b\"");
    }
}
