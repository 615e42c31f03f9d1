//! Writing untrusted bytes into a log line: JSON strings and the human format's quoted
//! fields. Invalid UTF-8 becomes U+FFFD; control characters are escaped, so a client can
//! neither break a line nor forge one.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as a JSON string, quotes included.
pub(crate) fn json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    json_body(out, bytes);
    out.push(b'"');
}

/// Appends `bytes` escaped for the inside of a JSON string.
pub(crate) fn json_body(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut from = 0;
        for (i, &b) in valid.iter().enumerate() {
            let escaped: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f | 0x7f => {
                    out.extend_from_slice(&valid[from..i]);
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 15)]);
                    from = i + 1;
                    continue;
                }
                _ => continue,
            };
            out.extend_from_slice(&valid[from..i]);
            out.extend_from_slice(escaped);
            from = i + 1;
        }
        out.extend_from_slice(&valid[from..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
}

/// Appends `bytes` for the human format: printable ASCII as it is, `"` and `\` escaped,
/// anything else as `\xHH` (nginx's escaping).
pub(crate) fn text(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => {
                out.extend_from_slice(b"\\x");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
        }
    }
}

/// Appends a decimal number.
pub(crate) fn num(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `nanos` as milliseconds with three decimals (`0.123`).
pub(crate) fn millis(out: &mut Vec<u8>, nanos: u64) {
    let micros = nanos / 1_000;
    num(out, micros / 1_000);
    out.push(b'.');
    let frac = micros % 1_000;
    out.push(b'0' + (frac / 100) as u8);
    out.push(b'0' + (frac / 10 % 10) as u8);
    out.push(b'0' + (frac % 10) as u8);
}

/// Appends lowercase hex.
pub(crate) fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(b: &[u8]) -> String {
        let mut out = Vec::new();
        json_str(&mut out, b);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_escapes_quotes_controls_and_invalid_utf8() {
        assert_eq!(j(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(j(b"x\ny\x01"), r#""x\ny\u0001""#);
        assert_eq!(j(b"\xff\xfeok"), r#""\ufffd\ufffdok""#);
        assert_eq!(j("é".as_bytes()), "\"é\"");
        let parsed: Vec<u8> = j(b"\x7f\tz").into_bytes();
        assert_eq!(parsed, br#""\u007f\tz""#);
    }

    #[test]
    fn text_escapes_everything_unprintable() {
        let mut out = Vec::new();
        text(&mut out, b"a \"q\"\n\xc3\xa9");
        assert_eq!(out, br#"a \"q\"\x0a\xc3\xa9"#);
    }

    #[test]
    fn numbers_and_millis() {
        let mut out = Vec::new();
        num(&mut out, 0);
        out.push(b' ');
        num(&mut out, u64::MAX);
        out.push(b' ');
        millis(&mut out, 1_234_567);
        out.push(b' ');
        millis(&mut out, 999);
        assert_eq!(out, b"0 18446744073709551615 1.234 0.000");
    }
}
