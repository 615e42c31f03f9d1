//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/`) through the target's body,
//! so `cargo test` runs what the fuzzers found and seeded.

#[path = "../../../fuzz/targets.rs"]
mod targets;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
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
    assert!(n > 0, "empty corpus for {target}");
}

#[test]
fn dsl_parse_corpus() {
    replay("dsl_parse", targets::dsl_parse);
}

#[test]
fn router_lookup_corpus() {
    replay("router_lookup", targets::router_lookup);
}
