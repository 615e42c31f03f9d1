//! Method sets as bitmasks.
//!
//! The nine standard methods have fixed bits; any other token a config names (`PROPFIND`,
//! `RPC`, ...) gets the next free bit, up to 64 distinct methods per router. A request
//! method is turned into its bit once per request, with a match on the standard names and a
//! short scan of the custom ones.

/// The standard methods, in bit order (also the order of the `Allow` header).
pub const STANDARD: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The bit of `HEAD`, which a `GET` rule also answers.
pub(crate) const HEAD_BIT: u64 = 1 << 1;
pub(crate) const GET_BIT: u64 = 1;

/// The methods a router knows: the standard ones plus those its rules named.
#[derive(Clone, Debug, Default)]
pub struct MethodTable {
    custom: Vec<Box<[u8]>>,
}

impl MethodTable {
    fn standard_bit(m: &[u8]) -> Option<u32> {
        Some(match m {
            b"GET" => 0,
            b"HEAD" => 1,
            b"POST" => 2,
            b"PUT" => 3,
            b"DELETE" => 4,
            b"CONNECT" => 5,
            b"OPTIONS" => 6,
            b"TRACE" => 7,
            b"PATCH" => 8,
            _ => return None,
        })
    }

    /// The bit of a request method, or 0 when no rule names it.
    pub fn bit(&self, m: &[u8]) -> u64 {
        if let Some(b) = Self::standard_bit(m) {
            return 1 << b;
        }
        self.custom
            .iter()
            .position(|c| &**c == m)
            .map_or(0, |i| 1 << (STANDARD.len() + i))
    }

    /// The bit for `m`, adding it if new. `None` when 64 methods are already in use.
    pub(crate) fn intern(&mut self, m: &str) -> Option<u64> {
        let bit = self.bit(m.as_bytes());
        if bit != 0 {
            return Some(bit);
        }
        let index = STANDARD.len() + self.custom.len();
        if index >= 64 {
            return None;
        }
        self.custom.push(m.as_bytes().into());
        Some(1 << index)
    }

    /// The names in `mask`, in bit order.
    pub fn names(&self, mask: u64) -> Vec<String> {
        (0..64)
            .filter(|i| mask & (1u64 << i) != 0)
            .filter_map(|i| {
                let i = i as usize;
                STANDARD.get(i).map(|s| (*s).to_owned()).or_else(|| {
                    self.custom
                        .get(i - STANDARD.len())
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                })
            })
            .collect()
    }
}

/// Whether `s` is an HTTP token (RFC 9110 `tchar`), which a method must be.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_custom_bits() {
        let mut t = MethodTable::default();
        assert_eq!(t.bit(b"GET"), 1);
        assert_eq!(t.bit(b"PROPFIND"), 0);
        let p = t.intern("PROPFIND").unwrap();
        assert_eq!(t.bit(b"PROPFIND"), p);
        assert_eq!(t.intern("PROPFIND"), Some(p));
        assert_eq!(t.bit(b"get"), 0, "methods are case-sensitive");
        assert_eq!(t.names(p | 1 | 4), ["GET", "POST", "PROPFIND"]);
        for i in 0..55 {
            assert!(t.intern(&format!("M{i}")).is_some() || i == 54);
        }
        assert_eq!(t.intern("ONE_TOO_MANY"), None);
    }
}
