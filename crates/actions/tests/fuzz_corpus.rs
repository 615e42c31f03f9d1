//! Replays the static-request fuzz corpus (`fuzz/corpus/static_request/`) through the
//! target's body, and property-tests the same invariants on generated inputs.

#[path = "../../../fuzz/static_targets.rs"]
mod static_targets;

#[path = "../../../fuzz/replay.rs"]
mod replay;

use proptest::prelude::*;

#[test]
fn static_request_corpus() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "static_request",
        5,
        static_targets::static_request,
    );
}

proptest! {
    #[test]
    fn static_parsers_hold_their_invariants(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        static_targets::static_request(&data);
    }

    /// Paths built from dangerous pieces never decode to a traversal.
    #[test]
    fn tricky_paths_never_decode_to_a_traversal(
        pieces in proptest::collection::vec(
            prop::sample::select(vec![
                "..", ".", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", "%00", "/", "a", "b.txt", "%25", ".git",
            ]),
            0..12,
        )
    ) {
        static_targets::static_request(pieces.concat().as_bytes());
    }

    /// Every satisfiable range lies inside the file, for any length.
    #[test]
    fn ranges_lie_inside_the_file(a in 0u64..2000, b in 0u64..2000, suffix in 0u64..2000, len in 0u64..1500) {
        use anygate_actions::static_files::range::{parse, Ranges};
        let header = format!("bytes={a}-{b}, -{suffix}, {a}-");
        if let Ranges::Parts(parts) = parse(header.as_bytes(), len) {
            for (x, y) in parts {
                prop_assert!(x <= y && y < len);
            }
        }
    }
}
