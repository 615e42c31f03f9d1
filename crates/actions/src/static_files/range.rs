//! The `Range` header (RFC 9110 §14.2), for byte ranges of a file of known length.

/// Most ranges honoured in one request; a header asking for more is ignored (the whole file
/// is sent), as is one whose ranges add up to more than the file: both are the shapes of a
/// amplification attack, not of a real client.
pub const MAX_RANGES: usize = 16;

/// What to do with a `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// Send the whole file (no header, another unit, a malformed or abusive header).
    Whole,
    /// These `(start, end_inclusive)` ranges, in the order asked.
    Parts(Vec<(u64, u64)>),
    /// None of the ranges overlaps the file: 416.
    Unsatisfiable,
}

/// Parses `header` for a representation of `len` bytes.
pub fn parse(header: &[u8], len: u64) -> Ranges {
    let header = header.trim_ascii();
    let Some(spec) = header
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case(b"bytes="))
        .map(|_| &header[6..])
    else {
        return Ranges::Whole;
    };
    let mut parts = Vec::new();
    let mut any = false;
    let mut total: u64 = 0;
    for item in spec.split(|&b| b == b',') {
        let item = item.trim_ascii();
        if item.is_empty() {
            continue; // RFC 9110 list syntax allows empty elements
        }
        any = true;
        let Some(dash) = item.iter().position(|&b| b == b'-') else {
            return Ranges::Whole;
        };
        let (first, last) = (&item[..dash], &item[dash + 1..]);
        let range = match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b => (a < len).then(|| (a, b.min(len - 1))),
            (Some(a), None) if last.is_empty() => (a < len).then(|| (a, len - 1)),
            (None, Some(n)) if first.is_empty() => {
                (n > 0 && len > 0).then(|| (len - n.min(len), len - 1))
            }
            _ => return Ranges::Whole,
        };
        if let Some(r) = range {
            total = total.saturating_add(r.1 - r.0 + 1);
            parts.push(r);
            if parts.len() > MAX_RANGES {
                return Ranges::Whole;
            }
        }
    }
    if !any {
        return Ranges::Whole;
    }
    if parts.is_empty() {
        return Ranges::Unsatisfiable;
    }
    if parts.len() > 1 && total > len {
        return Ranges::Whole;
    }
    Ranges::Parts(parts)
}

/// A decimal of at most 19 digits (no sign, no spaces).
fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(h: &str, len: u64) -> Ranges {
        parse(h.as_bytes(), len)
    }

    #[test]
    fn single_and_multiple() {
        assert_eq!(p("bytes=0-99", 1000), Ranges::Parts(vec![(0, 99)]));
        assert_eq!(p("bytes=990-2000", 1000), Ranges::Parts(vec![(990, 999)]));
        assert_eq!(p("bytes=500-", 1000), Ranges::Parts(vec![(500, 999)]));
        assert_eq!(p("bytes=-100", 1000), Ranges::Parts(vec![(900, 999)]));
        assert_eq!(p("bytes=-2000", 1000), Ranges::Parts(vec![(0, 999)]));
        assert_eq!(p("Bytes=0-0, 5-9", 10), Ranges::Parts(vec![(0, 0), (5, 9)]));
        assert_eq!(p("bytes=0-1,2000-3000", 10), Ranges::Parts(vec![(0, 1)]));
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(p("bytes=1000-", 1000), Ranges::Unsatisfiable);
        assert_eq!(p("bytes=-0", 1000), Ranges::Unsatisfiable);
        assert_eq!(p("bytes=0-", 0), Ranges::Unsatisfiable);
        for whole in [
            "items=0-1",
            "bytes=",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=1",
            "bytes=--1",
            "bytes=+1-2",
            "bytes=0-99999999999999999999",
            "bytes=0-9,0-9,0-9",
        ] {
            assert_eq!(p(whole, 10), Ranges::Whole, "{whole}");
        }
        let many = format!(
            "bytes={}",
            (0..17)
                .map(|i| format!("{i}-{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(p(&many, 100), Ranges::Whole);
    }
}
