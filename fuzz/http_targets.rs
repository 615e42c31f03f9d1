//! The bodies of the HTTP codec fuzz targets, shared with `cargo test`
//! (`crates/http/tests/fuzz_corpus.rs` replays the corpora through them).

use anygate_http::Limits;
use anygate_http::h1::chunked::ChunkedDecoder;
use anygate_http::h1::parse::{Head, Parse, parse};
use anygate_http::h1::response::{ResponseFraming, parse_response_head};
use anygate_http::message::ResponseHead;

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

/// The upstream response head parser must never panic, must keep every field and the
/// reason inside the head, must find a proper prefix of a complete head incomplete, must give no body to
/// `HEAD`, 1xx, 204 and 304, and the body framing it picks must decode the rest without
/// panicking. The first byte chooses whether the request was `HEAD`.
pub fn response_head(data: &[u8]) {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let mut head = ResponseHead::default();
    let Ok(Some((info, framing))) = parse_response_head(input, &mut head, head_request) else {
        return;
    };
    let n = info.len;
    assert!(n <= input.len());
    let bytes = head
        .fields
        .iter()
        .map(|(a, b)| a.len() + b.len())
        .sum::<usize>();
    assert!(bytes + head.reason().len() <= n);
    let status = head.status();
    assert!((100..=599).contains(&status));
    if head_request || status < 200 || status == 204 || status == 304 {
        assert!(matches!(framing, ResponseFraming::None));
    }
    let mut h2 = ResponseHead::default();
    assert!(matches!(
        parse_response_head(&input[..n / 2], &mut h2, head_request),
        Ok(None)
    ));
    if let ResponseFraming::Chunked(mut d) = framing {
        let mut rest = &input[n..];
        while !rest.is_empty() && !d.is_done() {
            match d.decode(rest) {
                Ok(r) if r.consumed > 0 => rest = &rest[r.consumed..],
                _ => break,
            }
        }
    }
}
