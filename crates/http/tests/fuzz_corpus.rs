//! Replays the HTTP fuzz corpora (`fuzz/corpus/{request_head,chunked,response_head}/`) through the
//! targets' bodies.

#[path = "../../../fuzz/http_targets.rs"]
mod http_targets;

#[path = "../../../fuzz/replay.rs"]
mod replay;

#[test]
fn request_head_corpus() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "request_head",
        5,
        http_targets::request_head,
    );
}

#[test]
fn chunked_corpus() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "chunked",
        5,
        http_targets::chunked,
    );
}

#[test]
fn response_head_corpus() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "response_head",
        5,
        http_targets::response_head,
    );
}
