//! The body of the `credentials` fuzz target, shared with `cargo test`
//! (`crates/plugins/tests/fuzz_corpus.rs` replays the corpus through it).

/// Input: any bytes, read as an `Authorization` value, a query string and an `Origin`.
/// Parsing must never panic, and what comes out must be a piece of what went in.
pub fn credentials(data: &[u8]) {
    use anygate_plugins::wire::{basic_credentials, bearer_token, origin_matches, query_value};
    if let Some((user, password)) = basic_credentials(data) {
        assert!(!user.contains(&b':'), "a user name never holds the colon");
        assert!(user.len() + password.len() < data.len(), "decoding shrinks");
    }
    if let Some(token) = bearer_token(data) {
        assert!(!token.is_empty() && token.trim_ascii() == token);
        assert!(data.windows(token.len()).any(|w| w == token));
    }
    if let Some(v) = query_value(Some(data), b"api_key") {
        assert!(!v.is_empty() && data.windows(v.len()).any(|w| w == v));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let (pattern, origin) = text.split_once('\n').unwrap_or((text, text));
        if let Some(true) = origin_matches(pattern, origin) {
            assert!(origin.contains("://"), "{pattern} matched {origin}");
        }
    }
}
