//! The bodies of the fuzz targets, shared with `cargo test` (which replays each target's
//! corpus through the same functions; see `crates/router/tests/fuzz_corpus.rs`).

use anygate_router::explain::{Outcome, explain};
use anygate_router::path::normalize;
use anygate_router::{Lookup, RequestHost, Router, parse_action, parse_head};

/// Input: `HEAD\nACTION`. Parsing must never panic, and a parsed path must re-parse from its
/// canonical form to the same pattern.
pub fn dsl_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (head, action) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(h) = parse_head(head) {
        let again = parse_head(&h.target_display()).expect("a canonical target re-parses");
        assert_eq!(again.path, h.path, "canonical form changed the pattern");
        assert_eq!(again.hosts, h.hosts, "canonical form changed the host");
    }
    let _ = parse_action(action);
}

/// Input: lines. `> METHOD [HOST]PATH` is a request; any other line is a rule head (action
/// `OK`). The trie's answer must equal the reference scorer's for every request.
pub fn router_lookup(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut rules = Vec::new();
    let mut requests = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("> ") {
            Some(req) => {
                if let Some((m, p)) = req.split_once(' ') {
                    requests.push((m, p));
                }
            }
            None => {
                if let Ok(h) = parse_head(line) {
                    rules.push((h, ()));
                }
            }
        }
    }
    let Ok(router) = Router::build(rules) else {
        return;
    };
    for (method, target) in requests {
        let (authority, raw) = match target.find('/') {
            Some(i) => target.split_at(i),
            None => continue,
        };
        let host = (!authority.is_empty())
            .then(|| RequestHost::parse(authority.as_bytes()))
            .flatten();
        let key = host.as_ref().map(|h| h.key(80));
        let Ok(path) = normalize(raw.as_bytes()) else {
            continue;
        };
        let got = match router.lookup_host(method.as_bytes(), key, &path) {
            Lookup::Found(m) => Outcome::Found(m.rule.index),
            Lookup::MethodNotAllowed(a) => Outcome::MethodNotAllowed(a),
            Lookup::NotFound => Outcome::NotFound,
        };
        assert_eq!(
            got,
            explain(&router, method.as_bytes(), key, &path).outcome,
            "{method} {target}"
        );
    }
}
