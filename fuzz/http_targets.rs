//! The bodies of the HTTP codec fuzz targets, shared with `cargo test`
//! (`crates/http/tests/fuzz_corpus.rs` replays the corpora through them).

use anygate_http::Limits;
use anygate_http::h1::chunked::ChunkedDecoder;
use anygate_http::h1::parse::{Head, Parse, parse};

/// The head parser must never panic, must give every span inside the head, and must give
/// the same answer whether the input arrives whole or in two parts.
pub fn request_head(data: &[u8]) {
    let limits = Limits {
        max_head: 4096,
        ..Limits::default()
    };
    let mut head = Head::default();
    let whole = parse(data, &limits, &mut head);
    if let Parse::Complete(n) = whole {
        assert!(n <= data.len());
        for f in head.fields() {
            assert!(f.name.end as usize <= n && f.value.end as usize <= n);
        }
        assert!(head.path.end as usize <= n && head.target.end as usize <= n);
        // Every proper prefix is Partial (or already invalid for the same reason).
        let cut = data.len().min(n) / 2;
        let mut h2 = Head::default();
        assert_eq!(parse(&data[..cut], &limits, &mut h2), Parse::Partial);
    }
}

/// The chunked decoder must never panic and must decode the same bytes however the input
/// is split.
pub fn chunked(data: &[u8]) {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let whole = decode_all(input, input.len());
    let parts = decode_all(input, usize::from(split).max(1));
    assert_eq!(whole, parts, "split every {split} bytes");
}

fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, bool), ()> {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for piece in input.chunks(step.max(1)) {
        pending.extend_from_slice(piece);
        while !pending.is_empty() && !d.is_done() {
            let r = d.decode(&pending).map_err(|_| ())?;
            out.extend_from_slice(&pending[r.data.clone()]);
            pending.drain(..r.consumed);
            if r.consumed == 0 {
                break;
            }
        }
    }
    Ok((out, d.is_done()))
}
