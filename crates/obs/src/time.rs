//! Wall-clock timestamps for log lines: RFC 3339, UTC, nanoseconds
//! (`2026-12-02T19:40:00.123456789Z`).

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a thread trusts its offset between the monotonic and the wall clock.
const RECALIBRATE: Duration = Duration::from_secs(1);

/// The wall-clock time of `at`, an instant of the monotonic clock (a request's end), in
/// nanoseconds since the Unix epoch, from a per-thread pair of readings of both clocks
/// taken at most [`RECALIBRATE`] apart: one clock read saved per log line, and one
/// subtraction of instants. The two clocks can drift apart by what NTP slews in a second
/// (microseconds at most); a step of the wall clock shows within a second.
pub fn wall(at: Instant) -> u64 {
    thread_local! {
        static BASE: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
    }
    let (i, w) = match BASE.get() {
        Some((i, w)) => match at.checked_duration_since(i) {
            Some(after) if after < RECALIBRATE => return w.saturating_add(nanos(after)),
            // Before the readings (an instant taken earlier): placed against them.
            None => (i, w),
            Some(_) => recalibrate(&BASE),
        },
        None => recalibrate(&BASE),
    };
    match at.checked_duration_since(i) {
        Some(after) => w.saturating_add(nanos(after)),
        None => w.saturating_sub(nanos(i.duration_since(at))),
    }
}

/// Takes a fresh pair of readings of both clocks into `base`.
fn recalibrate(
    base: &'static std::thread::LocalKey<Cell<Option<(Instant, u64)>>>,
) -> (Instant, u64) {
    let fresh = (
        anygate_runtime::time::precise_now(),
        unix_nanos(SystemTime::now()),
    );
    base.set(Some(fresh));
    fresh
}

/// `t` in nanoseconds since the Unix epoch (0 before it; saturated in the year 2554).
pub fn unix_nanos(t: SystemTime) -> u64 {
    nanos(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Appends `t`, nanoseconds since the Unix epoch, as RFC 3339 in UTC with nine fractional
/// digits.
pub fn rfc3339(out: &mut Vec<u8>, t: u64) {
    // The date and time of day change once a second: kept per thread.
    thread_local! {
        static LAST: Cell<(u64, [u8; 30])> = const { Cell::new((u64::MAX, [0; 30])) };
    }
    let secs = t / 1_000_000_000;
    let (cached, mut buf) = LAST.get();
    if cached != secs {
        buf = date_time(secs);
        LAST.set((secs, buf));
    }
    // Nine digits: one, then four pairs.
    let mut frac = t % 1_000_000_000;
    for at in [27, 25, 23, 21] {
        let pair = (frac % 100) as usize * 2;
        frac /= 100;
        buf[at..at + 2].copy_from_slice(&crate::escape::PAIRS[pair..pair + 2]);
    }
    buf[20] = b'0' + frac as u8;
    out.extend_from_slice(&buf);
}

/// `YYYY-MM-DDTHH:MM:SS.000000000Z` of `secs` since the epoch.
fn date_time(secs: u64) -> [u8; 30] {
    let (y, m, d) = civil(secs / 86_400);
    let rem = secs % 86_400;
    let mut buf = *b"0000-00-00T00:00:00.000000000Z";
    let two = |buf: &mut [u8; 30], at: usize, n: u64| {
        buf[at] = b'0' + (n / 10 % 10) as u8;
        buf[at + 1] = b'0' + (n % 10) as u8;
    };
    let year = y.min(9999);
    two(&mut buf, 0, year / 100);
    two(&mut buf, 2, year % 100);
    two(&mut buf, 5, m);
    two(&mut buf, 8, d);
    two(&mut buf, 11, rem / 3600);
    two(&mut buf, 14, rem / 60 % 60);
    two(&mut buf, 17, rem % 60);
    buf
}

/// Year, month, day of `days` since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> String {
        let mut out = Vec::new();
        rfc3339(
            &mut out,
            unix_nanos(UNIX_EPOCH + Duration::new(secs, nanos)),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn wall_places_monotonic_instants_on_the_wall_clock() {
        let before = unix_nanos(SystemTime::now());
        let now = anygate_runtime::time::precise_now();
        let w = wall(now);
        let after = unix_nanos(SystemTime::now());
        let slack = 50_000_000;
        assert!(
            w + slack >= before && w <= after + slack,
            "{before} {w} {after}"
        );
        // Instants before and after the calibration keep their order and distance.
        let earlier = now - Duration::from_millis(3);
        assert_eq!(w - wall(earlier), 3_000_000);
        let later = now + Duration::from_millis(7);
        assert_eq!(wall(later) - w, 7_000_000);
    }

    #[test]
    fn nine_fractional_digits_at_every_position() {
        for (nanos, text) in [
            (1, "000000001"),
            (20, "000000020"),
            (300_000, "000300000"),
            (98_765_432, "098765432"),
            (999_999_999, "999999999"),
        ] {
            let got = at(1_796_240_400, nanos);
            assert_eq!(&got[20..29], text, "{got}");
        }
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            at(1_796_240_400, 123_456_789),
            "2026-12-02T19:40:00.123456789Z"
        );
        assert_eq!(
            at(4_107_542_399, 999_999_999),
            "2100-02-28T23:59:59.999999999Z"
        );
    }

    proptest::proptest! {
        #[test]
        fn days_round_trip(days in 0u64..3_000_000) {
            let (y, m, d) = civil(days);
            // days_from_civil, the inverse.
            let y2 = if m <= 2 { y - 1 } else { y };
            let era = y2 / 400;
            let yoe = y2 - era * 400;
            let mp = if m > 2 { m - 3 } else { m + 9 };
            let doy = (153 * mp + 2) / 5 + d - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            proptest::prop_assert_eq!(era * 146_097 + doe - 719_468, days);
            proptest::prop_assert!((1..=12).contains(&m) && (1..=31).contains(&d));
        }
    }
}
