//! Replays the `config_load` fuzz corpus (`fuzz/corpus/config_load/`) through the target's
//! body, so `cargo test` runs what the fuzzer found and what was seeded.

#[path = "../../../fuzz/config_targets.rs"]
mod config_targets;

#[test]
fn config_load_corpus() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/config_load");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            config_targets::config_load(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    assert!(n >= 6, "the seeds are missing from {}", dir.display());
}
