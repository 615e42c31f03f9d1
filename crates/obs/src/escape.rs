//! Writing untrusted bytes as JSON strings (log lines, error bodies, the echo action) and
//! as the human log format's quoted fields, without allocating. Invalid UTF-8 becomes
//! U+FFFD; control characters are escaped, so a client can neither break a line nor forge
//! one.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as a JSON string, quotes included.
pub fn json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    json_body(out, bytes);
    out.push(b'"');
}

/// Whether `b` goes into a JSON string as it is (printable ASCII but `"` and `\`).
#[inline]
fn json_plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// Appends `bytes` escaped for the inside of a JSON string, without the quotes.
pub fn json_body(out: &mut Vec<u8>, bytes: &[u8]) {
    // Most values (paths, hosts, agents) are printable ASCII: one copy.
    if bytes.iter().all(|&b| json_plain(b)) {
        out.extend_from_slice(bytes);
        return;
    }
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
    if bytes.iter().all(|&b| json_plain(b)) {
        out.extend_from_slice(bytes);
        return;
    }
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

/// "00" to "99", for writing two digits per division.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends a decimal number.
pub(crate) fn num(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
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

/// Appends lowercase hex (ids: at most 16 bytes at a time through a stack buffer).
pub(crate) fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.chunks(16) {
        let mut buf = [0u8; 32];
        for (pair, &b) in buf.chunks_exact_mut(2).zip(chunk) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 15)];
        }
        out.extend_from_slice(&buf[..chunk.len() * 2]);
    }
}

/// Appends an IP address: IPv4 without the formatting machinery, IPv6 through it.
pub(crate) fn ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                num(out, u64::from(o));
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
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
