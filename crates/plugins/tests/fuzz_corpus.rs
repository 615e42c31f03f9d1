//! Replays the `credentials` fuzz corpus (`fuzz/corpus/credentials/`) through the target's
//! body, so `cargo test` runs what the fuzzer found and seeded.

#[path = "../../../fuzz/plugins_targets.rs"]
mod plugins_targets;

#[path = "../../../fuzz/replay.rs"]
mod replay;

#[test]
fn credentials_corpus() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "credentials",
        10,
        plugins_targets::credentials,
    );
}
