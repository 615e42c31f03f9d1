//! Replays a fuzz target's corpus (`fuzz/corpus/<target>/`) through the target's body: the
//! `cargo test` side of every fuzz target. Included by each crate's `tests/fuzz_corpus.rs`.

use std::path::Path;

/// Runs `body` on every file of `fuzz/corpus/<target>/`; fails when there are fewer than
/// `at_least` (the seeds are missing).
pub fn replay(manifest_dir: &str, target: &str, at_least: usize, body: fn(&[u8])) {
    let dir = Path::new(manifest_dir)
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            body(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    assert!(
        n >= at_least,
        "{n} files in {}: the seeds are missing",
        dir.display()
    );
}
