//! Content codings: choosing one from `Accept-Encoding`, and producing them.
//!
//! The encoders are used by `anygate pack-spa` (best compression, offline) and by the static
//! action's optional on-the-fly compression (fast levels; results cached with the file, and
//! the deflate state reused through a per-thread pool).

use std::cell::RefCell;
use std::io::Write;

/// A content coding we can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Brotli.
    Br,
    /// Zstandard.
    Zstd,
    /// gzip.
    Gzip,
}

impl Encoding {
    /// In order of preference when the client likes several equally.
    pub const ALL: [Encoding; 3] = [Encoding::Br, Encoding::Zstd, Encoding::Gzip];

    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Self::Br => "br",
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        }
    }

    /// The suffix of a precompressed sibling (`app.js.br`).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Br => ".br",
            Self::Zstd => ".zst",
            Self::Gzip => ".gz",
        }
    }

    /// Index into per-encoding arrays (in [`Encoding::ALL`] order).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Compresses `data`. `best` asks for the smallest output (pack-spa), otherwise a fast
    /// level is used (on the fly).
    pub fn compress(self, data: &[u8], best: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() / 3 + 64);
        match self {
            Self::Br => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: if best { 11 } else { 5 },
                    lgwin: 22,
                    ..Default::default()
                };
                let mut input = data;
                // Writing to a Vec cannot fail.
                let _ = brotli::BrotliCompress(&mut input, &mut out, &params);
            }
            Self::Zstd => {
                let level = if best { 19 } else { 3 };
                out = zstd::bulk::compress(data, level).unwrap_or_default();
            }
            Self::Gzip => {
                if best {
                    // pack-spa: a one-off state at the best level.
                    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
                    gzip_with(&mut c, data, &mut out);
                } else {
                    GZIP.with(|pool| {
                        let mut pool = pool.borrow_mut();
                        let c = pool.get_or_insert_with(|| {
                            flate2::Compress::new(flate2::Compression::default(), false)
                        });
                        c.reset();
                        gzip_with(c, data, &mut out);
                    });
                }
            }
        }
        out
    }
}

thread_local! {
    /// One deflate state per thread, reset between files (its 256 KiB of tables are
    /// allocated once).
    static GZIP: RefCell<Option<flate2::Compress>> = const { RefCell::new(None) };
}

/// A gzip member around a raw deflate stream of `data`.
fn gzip_with(c: &mut flate2::Compress, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut input = data;
    loop {
        out.reserve(input.len() / 2 + 1024);
        let before_in = c.total_in();
        let status = c.compress_vec(input, out, flate2::FlushCompress::Finish);
        let used = usize::try_from(c.total_in() - before_in).unwrap_or(input.len());
        input = &input[used.min(input.len())..];
        match status {
            Ok(flate2::Status::StreamEnd) => break,
            Ok(_) => {}
            Err(_) => {
                out.clear();
                return;
            }
        }
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let _ = out.write_all(&crc.sum().to_le_bytes());
    let _ = out.write_all(&(data.len() as u32).to_le_bytes());
}

/// The client's preferences, from `Accept-Encoding`: a q-value (0–1000) per coding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accept {
    q: [u16; 3],
}

impl Accept {
    /// Parses every `Accept-Encoding` field value (the header may repeat). Unknown codings
    /// are skipped; `*` applies to the codings not named; a malformed q-value counts as 0.
    pub fn parse<'a>(values: impl Iterator<Item = &'a [u8]>) -> Self {
        let mut named = [None::<u16>; 3];
        let mut star = None;
        for value in values {
            for item in value.split(|&b| b == b',') {
                let mut parts = item.split(|&b| b == b';');
                let name = parts.next().unwrap_or_default().trim_ascii();
                let mut q = 1000;
                for param in parts {
                    let param = param.trim_ascii();
                    if param.len() >= 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                        q = qvalue(&param[2..]).unwrap_or(0);
                    }
                }
                let slot = if name.eq_ignore_ascii_case(b"br") {
                    &mut named[0]
                } else if name.eq_ignore_ascii_case(b"zstd") {
                    &mut named[1]
                } else if name.eq_ignore_ascii_case(b"gzip") || name.eq_ignore_ascii_case(b"x-gzip")
                {
                    &mut named[2]
                } else if name == b"*" {
                    &mut star
                } else {
                    continue;
                };
                *slot = Some(slot.map_or(q, |old: u16| old.max(q)));
            }
        }
        let mut q = [0; 3];
        for (i, n) in named.iter().enumerate() {
            q[i] = n.or(star).unwrap_or(0);
        }
        Self { q }
    }

    /// The coding to send among those `available`: the highest q-value above 0, ties going
    /// to br, then zstd, then gzip. `None`: send the identity.
    pub fn choose(&self, available: impl Fn(Encoding) -> bool) -> Option<Encoding> {
        let mut best: Option<(Encoding, u16)> = None;
        for e in Encoding::ALL {
            let q = self.q[e.index()];
            if q > 0 && available(e) && best.is_none_or(|(_, bq)| q > bq) {
                best = Some((e, q));
            }
        }
        best.map(|(e, _)| e)
    }

    /// Whether the client accepts any coding we produce.
    pub fn any(&self) -> bool {
        self.q.iter().any(|&q| q > 0)
    }
}

/// `0`, `0.5`, `1.000`: thousandths, or `None` when malformed.
fn qvalue(s: &[u8]) -> Option<u16> {
    let s = s.trim_ascii();
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |b| u16::from(b - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(header: &str, available: &[Encoding]) -> Option<Encoding> {
        Accept::parse(std::iter::once(header.as_bytes())).choose(|e| available.contains(&e))
    }

    #[test]
    fn negotiation_table() {
        use Encoding::*;
        let all = [Br, Zstd, Gzip];
        assert_eq!(choose("gzip, deflate, br, zstd", &all), Some(Br));
        assert_eq!(choose("gzip, zstd", &all), Some(Zstd));
        assert_eq!(choose("gzip", &all), Some(Gzip));
        assert_eq!(choose("br;q=0.5, gzip;q=0.9", &all), Some(Gzip));
        assert_eq!(choose("br;q=0, gzip", &all), Some(Gzip));
        assert_eq!(choose("*", &all), Some(Br));
        assert_eq!(choose("*;q=0.1, gzip;q=0.5", &all), Some(Gzip));
        assert_eq!(choose("br;q=0, *", &[Br, Gzip]), Some(Gzip));
        assert_eq!(choose("identity", &all), None);
        assert_eq!(choose("", &all), None);
        assert_eq!(choose("br", &[Gzip]), None);
        assert_eq!(choose("BR;Q=1.0", &all), Some(Br));
        assert_eq!(choose("br;q=2, gzip;q=0.001", &all), Some(Gzip));
        assert_eq!(choose("br;q=0.0001, gzip", &all), Some(Gzip));
    }

    #[test]
    fn encoders_round_trip() {
        let data = b"hello hello hello hello hello hello hello hello".repeat(50);
        for best in [false, true] {
            let br = Encoding::Br.compress(&data, best);
            let mut back = Vec::new();
            brotli::BrotliDecompress(&mut &br[..], &mut back).unwrap();
            assert_eq!(back, data);
            let zs = Encoding::Zstd.compress(&data, best);
            assert_eq!(zstd::bulk::decompress(&zs, data.len()).unwrap(), data);
            let gz = Encoding::Gzip.compress(&data, best);
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
                .unwrap();
            assert_eq!(back, data);
            assert!(gz.len() < data.len() / 4);
        }
    }
}
