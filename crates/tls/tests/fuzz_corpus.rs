//! Replays the `x509_facts` fuzz corpus (`fuzz/corpus/x509_facts/`) through the target's
//! body, so `cargo test` runs what the fuzzer found and seeded.

#[path = "../../../fuzz/tls_targets.rs"]
mod tls_targets;

#[path = "../../../fuzz/replay.rs"]
mod replay;

#[test]
fn x509_facts_corpus() {
    replay::replay(
        env!("CARGO_MANIFEST_DIR"),
        "x509_facts",
        4,
        tls_targets::x509_facts,
    );
}
