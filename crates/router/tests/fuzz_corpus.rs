//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/`) through the target's body,
//! so `cargo test` runs what the fuzzers found and seeded.

#[path = "../../../fuzz/targets.rs"]
mod targets;

#[path = "../../../fuzz/replay.rs"]
mod replay;

#[test]
fn dsl_parse_corpus() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "dsl_parse",
        1,
        targets::dsl_parse,
    );
}

#[test]
fn router_lookup_corpus() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "router_lookup",
        1,
        targets::router_lookup,
    );
}
