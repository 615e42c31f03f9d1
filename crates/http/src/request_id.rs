//! Request ids: the client's `X-Request-Id` when it is a sane token, else a fresh one.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

/// Longest id accepted from a client (and the length of a generated one is 32).
pub const MAX_LEN: usize = 128;

/// Whether a client-sent id is safe to echo and log: 1 to 128 characters of
/// `A-Z a-z 0-9 - _ . : + / =` (UUIDs, trace ids, base64).
pub fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(&b))
}

thread_local! {
    /// Per-thread generator state: seeded once from the process's random hasher keys.
    static STATE: Cell<(u64, u64)> = Cell::new(seed());
}

fn seed() -> (u64, u64) {
    let s = RandomState::new();
    (
        s.hash_one(0x5eed_u64),
        s.hash_one(std::thread::current().id()) | 1,
    )
}

/// A fresh 128-bit id as 32 lower-case hex digits (the shape of a W3C trace id). Unique, not
/// secret: a per-thread splitmix sequence with a random seed.
pub fn generate() -> [u8; 32] {
    let (a, b) = STATE.with(|st| {
        let (s, inc) = st.get();
        let next = s.wrapping_add(inc.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        st.set((next, inc));
        (mix(next), mix(next ^ inc))
    });
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&anygate_obs::escape::hex_u64(a));
    out[16..].copy_from_slice(&anygate_obs::escape::hex_u64(b));
    out
}

/// The trace id of a valid `traceparent` value, as 32 lower-case hex digits.
pub fn from_traceparent(value: &[u8]) -> Option<[u8; 32]> {
    let parent = anygate_obs::trace::parse_traceparent(value)?;
    let id = u128::from_be_bytes(parent.trace_id);
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&anygate_obs::escape::hex_u64((id >> 64) as u64));
    out[16..].copy_from_slice(&anygate_obs::escape::hex_u64(id as u64));
    Some(out)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparents_trace_id_is_the_request_id() {
        let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            from_traceparent(tp).as_ref().map(|id| &id[..]),
            Some(&b"4bf92f3577b34da6a3ce929d0e0e4736"[..])
        );
        assert_eq!(from_traceparent(b"00-zz-00f067aa0ba902b7-01"), None);
    }

    #[test]
    fn generated_ids_are_hex_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = generate();
            assert!(id.iter().all(u8::is_ascii_hexdigit));
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn sanity() {
        assert!(is_sane(b"3f2a9c1e-7b4d-4e8f-9a1b-2c3d4e5f6a7b"));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"a b"));
        assert!(!is_sane(b"x\r\ny"));
        assert!(!is_sane(&[b'a'; 129]));
    }
}
