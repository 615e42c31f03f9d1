//! The routing scenarios of SPEC §5 and issue 3, on the compiled trie, each cross-checked
//! against the `explain` reference.

use anygate_router::explain::{Outcome, explain};
use anygate_router::{Action, BuildError, Lookup, Router, parse_action, parse_head};

fn router(rules: &[(&str, &str)]) -> Router<Action> {
    Router::build(
        rules
            .iter()
            .map(|(h, a)| (parse_head(h).unwrap(), parse_action(a).unwrap())),
    )
    .unwrap()
}

/// The declaration index of the rule answering, with the reference's agreement checked.
fn winner(r: &Router<Action>, method: &str, path: &str) -> Option<usize> {
    let got = match r.lookup(method.as_bytes(), path.as_bytes()) {
        Lookup::Found(m) => Some(m.rule.index),
        _ => None,
    };
    let reference = match explain(r, method.as_bytes(), path.as_bytes()).outcome {
        Outcome::Found(i) => Some(i),
        _ => None,
    };
    assert_eq!(
        got, reference,
        "trie and reference disagree on {method} {path}"
    );
    got
}

#[test]
fn named_method_beats_every_method() {
    let r = router(&[("GET /path", "OK"), ("* /path", "FORBIDDEN")]);
    assert_eq!(winner(&r, "GET", "/path"), Some(0));
    assert_eq!(winner(&r, "POST", "/path"), Some(1));
    // Declaration order does not matter for this rule.
    let r = router(&[("* /path", "FORBIDDEN"), ("GET /path", "OK")]);
    assert_eq!(winner(&r, "GET", "/path"), Some(1));
    // Even a less specific named rule beats a more specific any-method rule.
    let r = router(&[("/api/items", "*"), ("GET /api/*", "OK")]);
    assert_eq!(winner(&r, "GET", "/api/items"), Some(1));
    assert_eq!(winner(&r, "DELETE", "/api/items"), Some(0));
}

#[test]
fn literal_beats_param_beats_splat() {
    let r = router(&[("/api/*", "OK"), ("/api/:res", "OK"), ("/api/items", "OK")]);
    assert_eq!(winner(&r, "GET", "/api/items"), Some(2));
    assert_eq!(winner(&r, "GET", "/api/users"), Some(1));
    assert_eq!(winner(&r, "GET", "/api/users/7"), Some(0));
    assert_eq!(
        winner(&r, "GET", "/api/"),
        Some(0),
        "a param never matches an empty segment"
    );
    // Segment by segment from the left: a literal early beats an exact match later.
    let r = router(&[("/a/:x/c", "OK"), ("/a/b/*", "OK")]);
    assert_eq!(winner(&r, "GET", "/a/b/c"), Some(1));
    assert_eq!(winner(&r, "GET", "/a/z/c"), Some(0));
}

#[test]
fn params_and_splat_are_captured() {
    let r = router(&[
        ("/users/:id/posts/:post", "OK"),
        ("PROPFIND SEARCH /dav/*", "*"),
    ]);
    let Lookup::Found(m) = r.lookup(b"GET", b"/users/42/posts/hello") else {
        panic!()
    };
    assert_eq!(m.params.get("id"), Some(&b"42"[..]));
    assert_eq!(m.params.get("post"), Some(&b"hello"[..]));
    assert_eq!(m.params.get("nope"), None);
    assert_eq!(m.params.splat(), None);
    let Lookup::Found(m) = r.lookup(b"PROPFIND", b"/dav/a/b.txt") else {
        panic!()
    };
    assert_eq!(m.params.splat(), Some(&b"a/b.txt"[..]));
    assert!(matches!(r.lookup(b"SEARCH", b"/dav/"), Lookup::Found(_)));
    let Lookup::MethodNotAllowed(allow) = r.lookup(b"GET", b"/dav/x") else {
        panic!()
    };
    assert_eq!(r.allow_header(allow), "PROPFIND, SEARCH");
}

#[test]
fn prefix_rules_match_themselves_and_below() {
    let r = router(&[("/v1/", "http://up:9000/")]);
    for p in ["/v1", "/v1/", "/v1/a/b"] {
        assert_eq!(winner(&r, "GET", p), Some(0), "{p}");
    }
    assert_eq!(winner(&r, "GET", "/v10"), None);
    assert_eq!(winner(&r, "GET", "/"), None);
    let r = router(&[("/v1", "OK"), ("/v1/", "NOT_FOUND")]);
    assert_eq!(
        winner(&r, "GET", "/v1"),
        Some(0),
        "exact beats prefix at the end of the path"
    );
    assert_eq!(winner(&r, "GET", "/v1/"), Some(1));
    let r = router(&[("/", "/tmp/"), ("/api/", "*")]);
    assert_eq!(winner(&r, "GET", "/"), Some(0));
    assert_eq!(winner(&r, "GET", "/deep/link"), Some(0));
    assert_eq!(winner(&r, "GET", "/api/x"), Some(1));
}

#[test]
fn method_not_allowed_lists_allow_and_get_answers_head() {
    let r = router(&[
        ("GET POST /x", "OK"),
        ("PATCH /x", "OK"),
        ("DELETE /other", "OK"),
    ]);
    let Lookup::MethodNotAllowed(allow) = r.lookup(b"PUT", b"/x") else {
        panic!()
    };
    assert_eq!(r.allow_header(allow), "GET, HEAD, POST, PATCH");
    assert!(matches!(r.lookup(b"PUT", b"/nothing"), Lookup::NotFound));
    assert_eq!(winner(&r, "HEAD", "/x"), Some(0), "GET rules answer HEAD");
    let r = router(&[("GET /x", "OK"), ("HEAD /x", "NO_CONTENT")]);
    assert_eq!(
        winner(&r, "HEAD", "/x"),
        Some(1),
        "an explicit HEAD rule beats GET"
    );
    assert_eq!(winner(&r, "get", "/x"), None, "methods are case-sensitive");
}

#[test]
fn duplicate_rules_are_rejected_with_both_indices() {
    let rules = [
        ("GET /a/:x", "OK"),
        ("GET /a/:y", "OK"),
        ("/v1/", "OK"),
        ("* /v1/*", "OK"),
        ("POST GET /a/:z", "OK"),
    ];
    let err = Router::build(
        rules
            .iter()
            .map(|(h, a)| (parse_head(h).unwrap(), parse_action(a).unwrap())),
    )
    .unwrap_err();
    assert_eq!(
        err,
        vec![
            BuildError::Conflict { rule: 1, with: 0 },
            BuildError::Conflict { rule: 3, with: 2 }
        ]
    );
    // Same path shape but different method sets is fine.
    Router::build(
        [("GET /a", "OK"), ("POST /a", "OK")]
            .iter()
            .map(|(h, a)| (parse_head(h).unwrap(), parse_action(a).unwrap())),
    )
    .unwrap();
}

#[test]
fn explain_says_why() {
    let r = router(&[
        ("/api/*", "OK"),
        ("/api/:res", "OK"),
        ("/api/items", "OK"),
        ("POST /api/items", "OK"),
    ]);
    let e = explain(&r, b"GET", b"/api/items");
    assert_eq!(e.outcome, Outcome::Found(2));
    let order: Vec<usize> = e.candidates.iter().map(|c| c.rule.index).collect();
    assert_eq!(order, [2, 1, 0, 3]);
    let why = anygate_router::explain::reason(&e.candidates[0], &e.candidates[1], "GET");
    assert!(
        why.contains("segment 2") && why.contains("literal") && why.contains(":param"),
        "{why}"
    );
    let why = anygate_router::explain::reason(&e.candidates[0], &e.candidates[3], "GET");
    assert_eq!(why, "does not accept GET");
}
