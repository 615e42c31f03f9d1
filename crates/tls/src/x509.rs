//! The few facts AnyGate reads out of an X.509 certificate itself: its DNS names (which
//! names a certificate serves), its validity (the expiry warning), and its subject (the
//! verified client's identity, for filters, logs and an upstream header).
//!
//! A small DER walker over RFC 5280's structure, not a general parser: rustls and webpki
//! verify certificates; this only reads fields of certificates that are either the
//! operator's own or already verified. It still takes hostile input (a client's
//! certificate is read after verification, but a fuzzer gives it anything): every length
//! is checked, nothing panics, nothing recurses without bound (the fuzz target
//! `x509_facts` and the property tests hold it to that).

use std::fmt::Write as _;

/// What [`facts`] reads from a certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertFacts {
    /// The subject as an RFC 4514 string (`CN=client,O=Example`), control characters and
    /// specials escaped, so it is safe in a header.
    pub subject: String,
    /// The DNS names of the subject alternative name extension, lower-cased.
    pub dns_names: Vec<String>,
    /// `notBefore` and `notAfter`, in seconds since the Unix epoch.
    pub not_before: i64,
    /// See `not_before`.
    pub not_after: i64,
}

/// Why a certificate could not be read.
pub type Malformed = &'static str;

struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The next TLV: `(tag, value)`.
    fn next(&mut self) -> Result<(u8, &'a [u8]), Malformed> {
        let [tag, first, rest @ ..] = self.0 else {
            return Err("truncated DER");
        };
        if tag & 0x1f == 0x1f {
            return Err("multi-byte DER tag");
        }
        let (len, rest) = if *first < 0x80 {
            (usize::from(*first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err("bad DER length");
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return Err("truncated DER");
        }
        let (value, after) = rest.split_at(len);
        self.0 = after;
        Ok((*tag, value))
    }

    fn expect(&mut self, tag: u8) -> Result<&'a [u8], Malformed> {
        match self.next()? {
            (t, v) if t == tag => Ok(v),
            _ => Err("unexpected DER tag"),
        }
    }

    fn peek_tag(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// Reads the subject, DNS names and validity of a DER certificate.
pub fn facts(der: &[u8]) -> Result<CertFacts, Malformed> {
    let cert = Der(der).expect(SEQUENCE)?;
    let mut tbs = Der(Der(cert).expect(SEQUENCE)?);
    if tbs.peek_tag() == Some(0xa0) {
        tbs.next()?; // version
    }
    tbs.expect(0x02)?; // serialNumber
    tbs.expect(SEQUENCE)?; // signature
    tbs.expect(SEQUENCE)?; // issuer
    let mut validity = Der(tbs.expect(SEQUENCE)?);
    let not_before = time(validity.next()?)?;
    let not_after = time(validity.next()?)?;
    let subject = name(tbs.expect(SEQUENCE)?)?;
    tbs.expect(SEQUENCE)?; // subjectPublicKeyInfo
    let mut dns_names = Vec::new();
    while !tbs.is_empty() {
        let (tag, value) = tbs.next()?;
        if tag != 0xa3 {
            continue; // issuerUniqueID, subjectUniqueID
        }
        let mut exts = Der(Der(value).expect(SEQUENCE)?);
        while !exts.is_empty() {
            let mut ext = Der(exts.expect(SEQUENCE)?);
            if ext.expect(OID)? != SAN {
                continue;
            }
            if ext.peek_tag() == Some(0x01) {
                ext.next()?; // critical
            }
            let mut names = Der(Der(ext.expect(OCTET_STRING)?).expect(SEQUENCE)?);
            while !names.is_empty() {
                if let (0x82, dns) = names.next()? {
                    dns_names.push(String::from_utf8_lossy(dns).to_ascii_lowercase());
                }
            }
        }
    }
    Ok(CertFacts {
        subject,
        dns_names,
        not_before,
        not_after,
    })
}

/// An RFC 4514 string of a `Name`: RDNs most specific first, joined by `,`.
fn name(value: &[u8]) -> Result<String, Malformed> {
    let mut rdns = Vec::new();
    let mut seq = Der(value);
    while !seq.is_empty() {
        let mut set = Der(seq.expect(SET)?);
        let mut parts = Vec::new();
        while !set.is_empty() {
            let mut atv = Der(set.expect(SEQUENCE)?);
            let oid = atv.expect(OID)?;
            let (tag, v) = atv.next()?;
            let mut part = attribute_name(oid);
            part.push('=');
            escape_value(&mut part, &string_value(tag, v));
            parts.push(part);
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn attribute_name(oid: &[u8]) -> String {
    let known = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        _ => return dotted(oid),
    };
    known.to_owned()
}

/// An OID in dotted form (`1.2.3`).
fn dotted(oid: &[u8]) -> String {
    let mut out = String::new();
    let mut value: u64 = 0;
    let mut first = true;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 != 0 {
            if value > u64::MAX >> 8 {
                return "?".to_owned();
            }
            continue;
        }
        if first {
            let (a, b) = if value < 80 {
                (value / 40, value % 40)
            } else {
                (2, value - 80)
            };
            let _ = write!(out, "{a}.{b}");
            first = false;
        } else {
            let _ = write!(out, ".{value}");
        }
        value = 0;
    }
    out
}

fn string_value(tag: u8, v: &[u8]) -> String {
    match tag {
        // BMPString: UCS-2, big-endian.
        0x1e => char::decode_utf16(v.chunks(2).map(|c| {
            let hi = u16::from(c[0]);
            let lo = c.get(1).copied().map_or(0, u16::from);
            (hi << 8) | lo
        }))
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect(),
        // UniversalString: UCS-4, big-endian.
        0x1c => v
            .chunks(4)
            .map(|c| {
                let n = c.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
                char::from_u32(n).unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        _ => String::from_utf8_lossy(v).into_owned(),
    }
}

/// RFC 4514 §2.4 escaping, plus every control character as `\XX` (the string may go into
/// a header).
fn escape_value(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

/// A UTCTime or GeneralizedTime (`Z` form) as Unix seconds.
fn time((tag, v): (u8, &[u8])) -> Result<i64, Malformed> {
    let digits = |s: &[u8]| -> Result<i64, Malformed> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return Err("bad certificate time");
        }
        Ok(s.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let (year, rest) = match (tag, v.len()) {
        (0x17, 13) => {
            let yy = digits(&v[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &v[2..])
        }
        (0x18, 15) => (digits(&v[..4])?, &v[4..]),
        _ => return Err("bad certificate time"),
    };
    if rest[10] != b'Z' {
        return Err("bad certificate time");
    }
    let (month, day) = (digits(&rest[0..2])?, digits(&rest[2..4])?);
    let (h, m, s) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return Err("bad certificate time");
    }
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(time((0x17, b"491231235959Z")).unwrap(), 2_524_607_999);
        assert_eq!(time((0x18, b"20500101000000Z")).unwrap(), 2_524_608_000);
        assert!(time((0x17, b"4912312359590")).is_err());
    }

    #[test]
    fn escaping_keeps_headers_safe() {
        let mut s = String::new();
        escape_value(&mut s, " a,b\r\nc ");
        assert_eq!(s, "\\ a\\,b\\0D\\0Ac\\ ");
    }

    #[test]
    fn dotted_oids() {
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
        assert_eq!(dotted(&[0x55, 0x04, 0x2a]), "2.5.4.42");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = facts(&bytes);
        }
    }
}

#[cfg(test)]
mod rcgen_tests {
    use super::*;

    #[test]
    fn facts_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec![
            "Example.COM".to_owned(),
            "*.example.com".to_owned(),
        ])
        .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Ex, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "example.com");
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2027, 1, 2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let f = facts(cert.der()).unwrap();
        assert_eq!(f.subject, "CN=example.com,O=Ex\\, Inc.");
        assert_eq!(f.dns_names, ["example.com", "*.example.com"]);
        assert_eq!(f.not_before, days_from_civil(2026, 1, 1) * 86_400);
        assert_eq!(f.not_after, days_from_civil(2027, 1, 2) * 86_400);
        // Any truncation is an error, never a panic.
        for n in 0..cert.der().len() {
            let _ = facts(&cert.der()[..n]);
        }
    }
}

/// The facts of the first (leaf) certificate of a PEM file (what `anygate diagnose`
/// prints), or why it cannot be read.
pub fn leaf_facts(path: &std::path::Path) -> Result<CertFacts, String> {
    let certs = crate::server::load_certs(path)?;
    let leaf = certs.first().ok_or("no certificate")?;
    facts(leaf).map_err(|e| format!("`{}`: {e}", path.display()))
}
