//! The body of the static-request fuzz target, shared with `cargo test`
//! (`crates/actions/tests/fuzz_corpus.rs` replays the corpus through it): the parsers the
//! static action runs on request bytes.

use anygate_actions::static_files::encoding::Accept;
use anygate_actions::static_files::mime;
use anygate_actions::static_files::path::relative;
use anygate_actions::static_files::range::{MAX_RANGES, Ranges, parse as parse_range};
use anygate_http::date;

/// Path decoding never yields a name that could leave the root; ranges stay inside the
/// file; dates round-trip; nothing panics.
pub fn static_request(data: &[u8]) {
    let mut out = b"root\0".to_vec();
    if relative(data, &mut out).is_ok() {
        let rel = &out[5..];
        assert!(!rel.contains(&0) && !rel.contains(&b'\\'));
        assert!(!rel.starts_with(b"/") && !rel.ends_with(b"/"));
        for seg in rel.split(|&b| b == b'/').filter(|_| !rel.is_empty()) {
            assert!(!seg.is_empty() && seg != b"." && seg != b"..");
            assert!(!seg.starts_with(b".") || seg == b".well-known");
        }
    }
    let len = data.first().map_or(0, |&b| u64::from(b) * 37);
    match parse_range(data, len) {
        Ranges::Parts(parts) => {
            assert!(!parts.is_empty() && parts.len() <= MAX_RANGES);
            for (a, b) in parts {
                assert!(a <= b && b < len);
            }
        }
        Ranges::Whole | Ranges::Unsatisfiable => {}
    }
    let accept = Accept::parse(data.split(|&b| b == b'\n'));
    let _ = accept.choose(|_| true);
    if let Some(t) = date::parse(data) {
        assert_eq!(date::parse(&date::format(t)), Some(t));
    }
    let _ = (
        mime::content_type(data),
        mime::is_fingerprinted(data),
        mime::extension(data),
    );
}
