//! Replays the `config_load` fuzz corpus (`fuzz/corpus/config_load/`) through the target's
//! body, so `cargo test` runs what the fuzzer found and what was seeded.

#[path = "../../../fuzz/config_targets.rs"]
mod config_targets;

#[path = "../../../fuzz/replay.rs"]
mod replay;

#[test]
fn config_load_corpus() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "config_load",
        6,
        config_targets::config_load,
    );
}
