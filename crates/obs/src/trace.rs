//! W3C Trace Context: the `traceparent` field (`00-<trace id>-<parent id>-<flags>`), and
//! fresh trace and span ids.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

thread_local! {
    /// splitmix64 state, per thread, from the process's random hasher keys.
    static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0x7ace_u64));
}

/// A fast per-thread pseudo-random number (splitmix64; not for secrets): span ids,
/// sampling draws, random balancing.
pub fn random_u64() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// A fresh span id (never all zero). Unique, not secret.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id = random_u64().to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

/// A uniform draw in `[0, 1)`, for sampling.
pub fn unit_draw() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// `text` as a trace id when it is 32 lower-case hex digits, not all zero (a request id
/// of that shape becomes the trace's id).
pub fn trace_id_from_hex(text: &[u8]) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    hex_into(text, &mut id)?;
    (id != [0; 16]).then_some(id)
}

/// Writes `traceparent`'s value for a child span: `00-<trace>-<span>-<flags>`.
pub fn write_traceparent(out: &mut Vec<u8>, trace_id: &[u8; 16], span_id: &[u8; 8], sampled: bool) {
    out.extend_from_slice(b"00-");
    crate::escape::hex(out, trace_id);
    out.push(b'-');
    crate::escape::hex(out, span_id);
    out.extend_from_slice(if sampled { b"-01" } else { b"-00" });
}

/// A parsed `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parent {
    /// The trace (16 bytes, never all zero).
    pub trace_id: [u8; 16],
    /// The caller's span (8 bytes, never all zero).
    pub span_id: [u8; 8],
    /// `sampled` and the other flags.
    pub flags: u8,
}

/// Parses a `traceparent` value; `None` when it is not valid (then a new trace starts, as
/// the specification says). Versions above `00` are read by their first four fields.
pub fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    let v = v.trim_ascii();
    if v.len() < 55 || (v.len() > 55 && (v[..2] == *b"00" || v[55] != b'-')) {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' || v[..2] == *b"ff" {
        return None;
    }
    let mut version = [0u8; 1];
    hex_into(&v[..2], &mut version)?;
    let mut trace_id = [0u8; 16];
    hex_into(&v[3..35], &mut trace_id)?;
    let mut span_id = [0u8; 8];
    hex_into(&v[36..52], &mut span_id)?;
    let mut flags = [0u8; 1];
    hex_into(&v[53..55], &mut flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        flags: flags[0],
    })
}

/// Lowercase hex only, as the specification requires.
fn hex_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    crate::escape::unhex(text, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_parents() {
        let ok = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = parse_traceparent(ok).unwrap();
        assert_eq!(p.trace_id[0], 0x4b);
        assert_eq!(p.span_id[7], 0xb7);
        assert_eq!(p.flags, 1);
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"",
        ] {
            assert_eq!(
                parse_traceparent(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A later version may append fields.
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz")
                .is_some()
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(v in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = parse_traceparent(&v);
        }
    }
}
