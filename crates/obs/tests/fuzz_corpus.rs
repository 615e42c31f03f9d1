//! Replays the `log_line` fuzz corpus (`fuzz/corpus/log_line/`) through the target's body,
//! so `cargo test` runs what the fuzzer found and seeded.

#[path = "../../../fuzz/obs_targets.rs"]
mod obs_targets;

#[path = "../../../fuzz/replay.rs"]
mod replay;

#[test]
fn log_line_corpus() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "log_line",
        10,
        obs_targets::log_line,
    );
}
