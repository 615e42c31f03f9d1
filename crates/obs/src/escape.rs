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

/// Whether `b` goes into a JSON string as it is (printable ASCII but `"` and `\`): what
/// [`all_plain`] checks a word at a time.
#[inline]
fn json_plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// Whether every byte of `bytes` is [`json_plain`], eight at a time: a word has a byte
/// below 0x20, at or above 0x7f, `"` or `\\` exactly when one of the classic
/// "has a zero / a smaller byte" bit tricks says so (exact about whether there is one,
/// not always about where, which is all this needs). The last, partial word is read
/// overlapping the one before it; only a value shorter than a word is checked byte by
/// byte.
#[inline]
fn all_plain(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        if !plain_word(w) {
            return false;
        }
    }
    let rest = words.remainder();
    if rest.is_empty() {
        return true;
    }
    match bytes.len().checked_sub(8) {
        Some(from) => plain_word(&bytes[from..]),
        None => rest.iter().all(|&b| json_plain(b)),
    }
}

/// [`all_plain`] for eight bytes.
#[inline]
fn plain_word(w: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut b = [0u8; 8];
    b.copy_from_slice(&w[..8]);
    let v = u64::from_ne_bytes(b);
    let below_space = v.wrapping_sub(ONES * 0x20) & !v & HIGH;
    let odd = below_space
        | (v & HIGH)
        | has_zero(v ^ (ONES * 0x7f))
        | has_zero(v ^ (ONES * u64::from(b'"')))
        | has_zero(v ^ (ONES * u64::from(b'\\')));
    odd == 0
}

/// Appends `bytes` escaped for the inside of a JSON string, without the quotes.
pub fn json_body(out: &mut Vec<u8>, bytes: &[u8]) {
    // Most values (paths, hosts, agents) are printable ASCII: one copy.
    if all_plain(bytes) {
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
    if all_plain(bytes) {
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
pub(crate) const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends a decimal number.
#[inline]
pub(crate) fn num(out: &mut Vec<u8>, n: u64) {
    // Statuses, attempts, ports and small sizes: no scratch, no variable-length copy.
    match n {
        0..=9 => out.push(b'0' + n as u8),
        10..=999 => {
            if n >= 100 {
                out.push(b'0' + (n / 100) as u8);
            }
            let pair = (n % 100) as usize * 2;
            out.extend_from_slice(&PAIRS[pair..pair + 2]);
        }
        _ => num_long(out, n),
    }
}

fn num_long(out: &mut Vec<u8>, mut n: u64) {
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

/// Appends lowercase hex (ids: eight bytes at a time, [`hex_u64`]).
pub fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        out.extend_from_slice(&hex_u64(u64::from_be_bytes(word)));
    }
    for &b in chunks.remainder() {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// The 16 lowercase hex digits of `x`, most significant first, computed a word at a time
/// (about 20 instructions, against a loop of 16 table lookups).
#[inline]
pub fn hex_u64(x: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&hex_word(spread_nibbles(x >> 32)).to_be_bytes());
    out[8..].copy_from_slice(&hex_word(spread_nibbles(x & 0xffff_ffff)).to_be_bytes());
    out
}

/// The eight nibbles of a 32-bit value, one per byte: nibble `j` (0 the least
/// significant) in byte `j`.
#[inline]
fn spread_nibbles(v: u64) -> u64 {
    let v = (v | (v << 16)) & 0x0000_ffff_0000_ffff;
    let v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff;
    (v | (v << 4)) & 0x0f0f_0f0f_0f0f_0f0f
}

/// Each byte (0 to 15) as its lowercase hex digit: `'0' + n`, plus `'a' - '0' - 10` where
/// `n >= 10` (`n + 6` carries into bit 4 exactly then; no byte overflows into the next).
#[inline]
fn hex_word(n: u64) -> u64 {
    let letters = ((n + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    n + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10)
}

/// The value of each byte as a lowercase hex digit, `0xff` for anything else.
static UNHEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Decodes lowercase hex `text` (twice `out`'s length) into `out`; `None` if a byte is not
/// a lowercase hex digit.
#[inline]
pub fn unhex(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    let mut bad = 0u8;
    for (pair, slot) in text.chunks_exact(2).zip(out.iter_mut()) {
        let (h, l) = (UNHEX[usize::from(pair[0])], UNHEX[usize::from(pair[1])]);
        bad |= h | l;
        *slot = h << 4 | l;
    }
    (bad & 0xf0 == 0).then_some(())
}

/// Appends an IP address: IPv4 without the formatting machinery, IPv6 through it.
pub(crate) fn ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            // Into a stack buffer, then one copy (four `num` calls and three pushes cost
            // a log line about 130 instructions more).
            let mut buf = [0u8; 15];
            let mut n = 0;
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            out.extend_from_slice(&buf[..n]);
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

    proptest::proptest! {
        #[test]
        fn ip_writes_what_display_does(a: u8, b: u8, c: u8, d: u8, v6: [u16; 8]) {
            for addr in [
                std::net::IpAddr::from([a, b, c, d]),
                std::net::IpAddr::from(v6),
            ] {
                let mut out = Vec::new();
                ip(&mut out, addr);
                proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
            }
        }
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
    fn word_hex_matches_the_table_and_unhex_inverts_it() {
        let table = |bytes: &[u8]| -> Vec<u8> {
            bytes
                .iter()
                .flat_map(|&b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
                .collect()
        };
        let mut x = 0x0123_4567_89ab_cdefu64;
        for _ in 0..10_000 {
            let bytes = x.to_be_bytes();
            assert_eq!(hex_u64(x).to_vec(), table(&bytes), "{x:#x}");
            let mut back = [0u8; 8];
            assert_eq!(unhex(&hex_u64(x), &mut back), Some(()));
            assert_eq!(back, bytes);
            let mut out = Vec::new();
            hex(&mut out, &bytes[..5]);
            assert_eq!(out, table(&bytes[..5]));
            x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
        }
        for x in [0, u64::MAX, 0xa0a0_a0a0_a0a0_a0a0, 0x9999_9999_9999_9999] {
            assert_eq!(hex_u64(x).to_vec(), table(&x.to_be_bytes()));
        }
        let mut out = [0u8; 2];
        for bad in [&b"0g12"[..], b"0A12", b"01 2", b"012"] {
            assert_eq!(unhex(bad, &mut out), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_word_check_agrees_with_the_byte_check_at_every_length(
            v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            plain in proptest::collection::vec(0x20u8..0x7f, 0..40),
        ) {
            proptest::prop_assert_eq!(all_plain(&v), v.iter().all(|&c| json_plain(c)));
            proptest::prop_assert_eq!(all_plain(&plain), plain.iter().all(|&c| json_plain(c)));
        }
    }

    #[test]
    fn the_word_check_agrees_with_the_byte_check() {
        // Every byte value at every position of a 16-byte window of plain text.
        let base = *b"GET /api/v1/user";
        for at in 0..base.len() {
            for b in 0..=255u8 {
                let mut v = base;
                v[at] = b;
                assert_eq!(
                    all_plain(&v),
                    v.iter().all(|&c| json_plain(c)),
                    "{b:#x} at {at}"
                );
                assert_eq!(
                    all_plain(&v[..at + 1]),
                    v[..at + 1].iter().all(|&c| json_plain(c))
                );
            }
        }
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
