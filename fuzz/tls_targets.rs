//! The body of the `x509_facts` fuzz target, shared with `cargo test`
//! (`crates/tls/tests/fuzz_corpus.rs` replays the corpus through it).

/// Input: any bytes, read as a DER certificate. Reading must never panic, and a subject it
/// returns must be safe in a header field (no control character).
pub fn x509_facts(data: &[u8]) {
    if let Ok(facts) = anygate_tls::x509::facts(data) {
        assert!(
            !facts.subject.chars().any(char::is_control),
            "a control character in {:?}",
            facts.subject
        );
        assert!(
            facts
                .dns_names
                .iter()
                .all(|n| !n.chars().any(|c| c.is_ascii_uppercase()))
        );
    }
}
