//! Wall-clock timestamps for log lines: RFC 3339, UTC, nanoseconds
//! (`2026-12-02T19:40:00.123456789Z`).

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a thread trusts its offset between the monotonic and the wall clock.
const RECALIBRATE: Duration = Duration::from_secs(1);

/// The wall-clock time of `at`, an instant of the monotonic clock (a request's end), from a
/// per-thread pair of readings of both clocks taken at most [`RECALIBRATE`] apart: one
/// clock read saved per log line. The two clocks can drift apart by what NTP slews in a
/// second (microseconds at most); a step of the wall clock shows within a second.
pub fn wall(at: Instant) -> SystemTime {
    thread_local! {
        static BASE: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
    }
    let base = match BASE.get() {
        Some((i, w)) if at.saturating_duration_since(i) < RECALIBRATE => (i, w),
        _ => {
            let fresh = (anygate_runtime::time::precise_now(), SystemTime::now());
            BASE.set(Some(fresh));
            fresh
        }
    };
    match at.checked_duration_since(base.0) {
        Some(after) => base.1 + after,
        None => base.1 - base.0.duration_since(at),
    }
}

/// Appends `t` as RFC 3339 in UTC with nine fractional digits. Times before 1970 are
/// written as the epoch.
pub fn rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    // The date and time of day change once a second: kept per thread.
    thread_local! {
        static LAST: Cell<(u64, [u8; 30])> = const { Cell::new((u64::MAX, [0; 30])) };
    }
    let secs = since.as_secs();
    let (cached, mut buf) = LAST.get();
    if cached != secs {
        buf = date_time(secs);
        LAST.set((secs, buf));
    }
    let mut nanos = since.subsec_nanos();
    for slot in buf[20..29].iter_mut().rev() {
        *slot = b'0' + (nanos % 10) as u8;
        nanos /= 10;
    }
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
        rfc3339(&mut out, UNIX_EPOCH + Duration::new(secs, nanos));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn wall_places_monotonic_instants_on_the_wall_clock() {
        let before = SystemTime::now();
        let now = anygate_runtime::time::precise_now();
        let w = wall(now);
        let after = SystemTime::now();
        assert!(w + Duration::from_millis(50) >= before && w <= after + Duration::from_millis(50));
        // Instants before and after the calibration keep their order and distance.
        let earlier = now - Duration::from_millis(3);
        assert_eq!(
            w.duration_since(wall(earlier)).unwrap(),
            Duration::from_millis(3)
        );
        let later = now + Duration::from_millis(7);
        assert_eq!(
            wall(later).duration_since(w).unwrap(),
            Duration::from_millis(7)
        );
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
