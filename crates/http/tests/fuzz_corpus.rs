//! Replays the HTTP fuzz corpora (`fuzz/corpus/{request_head,chunked}/`) through the
//! targets' bodies.

#[path = "../../../fuzz/http_targets.rs"]
mod http_targets;

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
    assert!(n >= 5, "the seeds are missing from {}", dir.display());
}

#[test]
fn request_head_corpus() {
    replay("request_head", http_targets::request_head);
}

#[test]
fn chunked_corpus() {
    replay("chunked", http_targets::chunked);
}
