//! Address ranges (`10.0.0.0/8`, `2001:db8::/32`, or one address), as `server.trusted_proxies`
//! lists them.

use std::fmt;
use std::net::IpAddr;

/// An address range: `addr/prefix`, the host bits of `addr` zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `v6/n` or a bare address (the range of that one address). An
    /// address with host bits set (`10.0.0.1/8`) is refused: it is usually a typo.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or range (`10.0.0.0/8`)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("`{text}`: the prefix length must be 0 to {max}")),
            },
        };
        // An IPv4-mapped range (`::ffff:10.0.0.0/104`) is the IPv4 range it maps: peers are
        // compared in their IPv4 form, and the mapped form would never match.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
                if prefix < 96 {
                    return Err(format!(
                        "`{text}` mixes IPv6 and IPv4-mapped addresses: list the IPv4 range"
                    ));
                }
                (
                    IpAddr::V4(
                        v6.to_ipv4_mapped()
                            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                    ),
                    prefix - 96,
                )
            }
            _ => (addr, prefix),
        };
        let cidr = Self { addr, prefix };
        if cidr.network() != bits(addr) {
            return Err(format!(
                "`{text}` has bits set past its /{prefix} (the range starts at {})",
                Self::from_bits(cidr.network(), addr.is_ipv4())
            ));
        }
        Ok(cidr)
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        bits(ip) & self.mask() == self.network()
    }

    /// Whether the range is IPv4, and its first and last address as numbers (an IPv4
    /// address in the low 32 bits).
    pub fn bounds(&self) -> (bool, u128, u128) {
        let first = self.network();
        (
            self.addr.is_ipv4(),
            first,
            first | !self.mask() & self.all(),
        )
    }

    fn all(&self) -> u128 {
        if self.addr.is_ipv4() {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        }
    }

    fn mask(&self) -> u128 {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        let host = width - u32::from(self.prefix);
        let all = if width == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        if host >= 128 {
            0
        } else {
            all & !((1u128 << host) - 1)
        }
    }

    fn network(&self) -> u128 {
        bits(self.addr) & self.mask()
    }

    fn from_bits(b: u128, v4: bool) -> IpAddr {
        if v4 {
            IpAddr::from(u32::try_from(b).unwrap_or(0).to_be_bytes())
        } else {
            IpAddr::from(b.to_be_bytes())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_contain_their_addresses() {
        let r = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(r.contains(ip("10.1.2.3")));
        assert!(r.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!r.contains(ip("11.0.0.0")));
        assert!(!r.contains(ip("::1")));
        let one = Cidr::parse("192.168.1.5").unwrap();
        assert!(one.contains(ip("192.168.1.5")) && !one.contains(ip("192.168.1.6")));
        assert_eq!(r.bounds(), (true, 0x0a00_0000, 0x0aff_ffff));
        assert_eq!(one.bounds().1, one.bounds().2);
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert_eq!(all.bounds(), (true, 0, u128::from(u32::MAX)));
        assert_eq!(Cidr::parse("::/0").unwrap().bounds(), (false, 0, u128::MAX));
        assert!(all.contains(ip("1.2.3.4")) && !all.contains(ip("::2")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::9")) && !v6.contains(ip("2001:db9::")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.contains(ip("10.9.9.9")) && mapped.contains(ip("::ffff:10.9.9.9")));
        assert!(
            Cidr::parse("::ffff:10.0.0.5")
                .unwrap()
                .contains(ip("10.0.0.5"))
        );
    }

    #[test]
    fn bad_ranges_say_why() {
        for (text, says) in [
            (
                "10.0.0.1/8",
                "bits set past its /8 (the range starts at 10.0.0.0)",
            ),
            ("10.0.0.0/33", "0 to 32"),
            ("::/129", "0 to 128"),
            ("10.0.0.0/+8", "0 to 32"),
            ("10.0.0.0/", "0 to 32"),
            ("example.com", "not an IP address"),
            ("", "not an IP address"),
            ("::ffff:0.0.0.0/95", "list the IPv4 range"),
        ] {
            let e = Cidr::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
