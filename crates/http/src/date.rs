//! The `Date` header value, formatted once per second per thread.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub const LEN: usize = 29;

thread_local! {
    /// The text, and until when (on the worker's cached clock) it holds.
    static CACHE: Cell<(Option<Instant>, [u8; LEN])> = const { Cell::new((None, [0; LEN])) };
}

/// The current time as an IMF-fixdate (RFC 9110 §5.6.7), cached per thread until the
/// second ends. The end is measured on the runtime's cached clock (refreshed every reactor
/// turn, as nginx caches its time per event-loop iteration): a request reads no clock but
/// that one, and the text is at most a reactor turn late, never early.
pub fn now() -> [u8; LEN] {
    let at = anygate_runtime::time::now();
    CACHE.with(|c| {
        let (until, text) = c.get();
        if until.is_some_and(|u| at < u) {
            return text;
        }
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let left = Duration::from_secs(1) - Duration::from_nanos(u64::from(wall.subsec_nanos()));
        let text = format(wall.as_secs());
        c.set((at.checked_add(left), text));
        text
    })
}

/// Formats seconds since the Unix epoch as an IMF-fixdate.
pub fn format(secs: u64) -> [u8; LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let mut out = [0u8; LEN];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    two(&mut out[5..7], u64::from(d));
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(m - 1) as usize]);
    out[11] = b' ';
    let y = y.clamp(0, 9999) as u64;
    two(&mut out[12..14], y / 100);
    two(&mut out[14..16], y % 100);
    out[16] = b' ';
    two(&mut out[17..19], rem / 3600);
    out[19] = b':';
    two(&mut out[20..22], rem / 60 % 60);
    out[22] = b':';
    two(&mut out[23..25], rem % 60);
    out[25..].copy_from_slice(b" GMT");
    out
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into seconds since the Unix
/// epoch. The obsolete RFC 850 and asctime forms, and anything malformed, give `None`: a
/// conditional header that cannot be read is ignored (RFC 9110 §13.1.3).
pub fn parse(text: &[u8]) -> Option<u64> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let t: &[u8; LEN] = text.try_into().ok()?;
    if &t[3..5] != b", " || t[7] != b' ' || t[11] != b' ' || t[16] != b' ' {
        return None;
    }
    if t[19] != b':' || t[22] != b':' || &t[25..] != b" GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        t[r].iter().try_fold(0u64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
        })
    };
    let day = num(5..7)?;
    let month = MONTHS.iter().position(|m| m[..] == t[8..11])? as u32 + 1;
    let year = num(12..16)?;
    let (h, mi, sec) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year as i64, month, day as u32);
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + h * 3600 + mi * 60 + sec)
}

/// (year, month, day) to days since 1970-01-01, H. Hinnant's algorithm.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn two(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10 % 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// Days since 1970-01-01 to (year, month, day), H. Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(&format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&format(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&format(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&format(1_795_392_000), b"Mon, 23 Nov 2026 00:00:00 GMT");
        assert_eq!(&format(4_102_444_799), b"Thu, 31 Dec 2099 23:59:59 GMT");
    }

    #[test]
    fn parses_what_it_formats_and_refuses_the_rest() {
        for secs in [0, 784_111_777, 951_782_400, 1_795_392_000, 4_102_444_799] {
            assert_eq!(parse(&format(secs)), Some(secs));
        }
        for bad in [
            &b"Sunday, 06-Nov-94 08:49:37 GMT"[..],
            b"Sun Nov  6 08:49:37 1994",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 36 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"Sun, 0x Nov 1994 08:49:37 GMT",
            b"",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn now_is_a_date() {
        let d = now();
        assert!(
            d.ends_with(b" GMT") && d[3] == b',',
            "{:?}",
            String::from_utf8_lossy(&d)
        );
    }

    fn wall_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// The cached text follows the wall clock into the next second (off a worker the
    /// cached clock is the real one): never a second behind, never ahead.
    #[test]
    fn now_follows_the_wall_clock_across_seconds() {
        let first = wall_secs();
        let mut seen = Vec::new();
        while wall_secs() < first + 2 {
            let before = wall_secs();
            let d = parse(&now()).expect("a date");
            let after = wall_secs();
            assert!(before <= d && d <= after, "{before} <= {d} <= {after}");
            if seen.last() != Some(&d) {
                seen.push(d);
            }
        }
        assert!(seen.len() >= 2, "the text never changed: {seen:?}");
    }
}
