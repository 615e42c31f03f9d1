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
    let reference = match explain(r, method.as_bytes(), None, path.as_bytes()).outcome {
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
    let e = explain(&r, b"GET", None, b"/api/items");
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

/// The declaration index answering `method` for `authority` (`""`: no Host) and `path`,
/// with the reference's agreement checked.
fn host_winner(r: &Router<Action>, method: &str, authority: &str, path: &str) -> Option<usize> {
    let host = (!authority.is_empty())
        .then(|| anygate_router::RequestHost::parse(authority.as_bytes()))
        .flatten();
    let key = host.as_ref().map(|h| h.key(80));
    let got = match r.lookup_host(method.as_bytes(), key, path.as_bytes()) {
        Lookup::Found(m) => Some(m.rule.index),
        _ => None,
    };
    let reference = match explain(r, method.as_bytes(), key, path.as_bytes()).outcome {
        Outcome::Found(i) => Some(i),
        _ => None,
    };
    assert_eq!(
        got, reference,
        "trie and reference disagree on {method} {authority}{path}"
    );
    got
}

#[test]
fn an_exact_host_beats_a_wildcard_which_beats_every_host() {
    let r = router(&[
        ("/", "OK default"),
        ("*.example.com/", "OK wildcard"),
        ("api.example.com/", "OK exact"),
    ]);
    assert_eq!(host_winner(&r, "GET", "api.example.com", "/x"), Some(2));
    assert_eq!(host_winner(&r, "GET", "shop.example.com", "/x"), Some(1));
    assert_eq!(host_winner(&r, "GET", "other.org", "/x"), Some(0));
    assert_eq!(host_winner(&r, "GET", "", "/x"), Some(0));
    // The host tier comes before the method and the path: a prefix for every method of the
    // exact host beats a `GET` exact path for every host.
    let r = router(&[("GET /only", "OK default"), ("api.example.com/", "OK api")]);
    assert_eq!(host_winner(&r, "GET", "api.example.com", "/only"), Some(1));
    // A host tier with no rule for the path falls through to the rules for every host.
    let r = router(&[("/", "OK default"), ("api.example.com/v1/", "OK api")]);
    assert_eq!(host_winner(&r, "GET", "api.example.com", "/v1/x"), Some(1));
    assert_eq!(host_winner(&r, "GET", "api.example.com", "/v2"), Some(0));
}

#[test]
fn a_single_star_matches_exactly_one_label_and_a_double_star_any_depth() {
    let r = router(&[("*.example.com/", "OK one"), ("**.deep.org/", "OK deep")]);
    assert_eq!(host_winner(&r, "GET", "a.example.com", "/"), Some(0));
    assert_eq!(host_winner(&r, "GET", "example.com", "/"), None);
    assert_eq!(host_winner(&r, "GET", "a.b.example.com", "/"), None);
    assert_eq!(host_winner(&r, "GET", "a.deep.org", "/"), Some(1));
    assert_eq!(host_winner(&r, "GET", "a.b.c.deep.org", "/"), Some(1));
    assert_eq!(host_winner(&r, "GET", "deep.org", "/"), None);
    assert_eq!(host_winner(&r, "GET", "xdeep.org", "/"), None);
    // The longer suffix first, and `*.` before `**.` on the same suffix.
    let r = router(&[
        ("**.example.com/", "OK any"),
        ("*.example.com/", "OK one"),
        ("*.eu.example.com/", "OK eu"),
    ]);
    assert_eq!(host_winner(&r, "GET", "a.example.com", "/"), Some(1));
    assert_eq!(host_winner(&r, "GET", "a.eu.example.com", "/"), Some(2));
    assert_eq!(host_winner(&r, "GET", "a.b.example.com", "/"), Some(0));
}

/// Found by the `router_lookup` fuzz target: the host table stopped at an empty label
/// (`a..example.com` matched no wildcard) while the reference `explain` matched it to
/// `**.example.com`. Both now say no wildcard covers a name with an empty label (nginx
/// refuses such a `Host` outright); `HTTP` lets it through, so routing must agree on it.
#[test]
fn regression_fuzz_a_host_with_an_empty_label_matches_no_wildcard_in_lookup_or_explain() {
    let r = router(&[
        ("**.example.com:8444/a/*", "OK deep"),
        ("*.example.com/", "OK one"),
        ("/", "OK every host"),
    ]);
    for host in [
        "a..example.com:8444",
        "ex=a a.....example.com:8444",
        ".example.com:8444",
        "..example.com",
        "a.b..example.com:8444",
    ] {
        // `host_winner` asserts that the table and the reference agree.
        let path = if host.ends_with(":8444") { "/a/x" } else { "/" };
        assert_eq!(host_winner(&r, "GET", host, path), Some(2), "{host}");
    }
    assert_eq!(
        host_winner(&r, "GET", "a.b.example.com:8444", "/a/x"),
        Some(0)
    );
}

#[test]
fn hosts_match_without_their_port_unless_the_rule_names_one() {
    let r = router(&[
        ("example.com/", "OK any port"),
        ("example.com:8443/", "OK 8443"),
        ("example.com:80/", "OK 80"),
    ]);
    assert_eq!(host_winner(&r, "GET", "example.com:8443", "/"), Some(1));
    assert_eq!(host_winner(&r, "GET", "example.com:9000", "/"), Some(0));
    // No port in the authority: the scheme's default (80 here).
    assert_eq!(host_winner(&r, "GET", "example.com", "/"), Some(2));
    assert_eq!(host_winner(&r, "GET", "example.com:80", "/"), Some(2));
}

#[test]
fn host_names_are_case_insensitive_lose_a_trailing_dot_and_take_punycode() {
    let r = router(&[
        ("API.Example.COM/", "OK api"),
        ("xn--bcher-kva.example/", "OK idn"),
        ("[::1]/", "OK v6"),
        ("10.0.0.1:8080/", "OK v4"),
    ]);
    assert_eq!(host_winner(&r, "GET", "api.example.com", "/"), Some(0));
    assert_eq!(host_winner(&r, "GET", "Api.EXAMPLE.com.", "/"), Some(0));
    assert_eq!(
        host_winner(&r, "GET", "XN--BCHER-KVA.example:80", "/"),
        Some(1)
    );
    assert_eq!(host_winner(&r, "GET", "[::1]:80", "/"), Some(2));
    assert_eq!(host_winner(&r, "GET", "10.0.0.1:8080", "/"), Some(3));
    let e = parse_head("bücher.example/").unwrap_err();
    assert!(e.message.contains("punycode"), "{}", e.message);
    assert_eq!(e.offset, 1);
}

#[test]
fn bad_hosts_are_refused_with_their_position() {
    for (head, at, why) in [
        ("GET a..b/", 6, "empty label"),
        ("*/x", 0, "leave the host out"),
        ("a.*.com/", 2, "whole first label"),
        ("a.com:0/", 6, "port"),
        ("a.com:99999/", 6, "port"),
        ("-a.com/", 0, "start or end with `-`"),
        ("a_b!.com/", 3, "letters, digits"),
        ("*.[::1]/", 0, "IP address"),
    ] {
        let e = parse_head(head).unwrap_err();
        assert_eq!(e.offset, at, "{head}: {}", e.message);
        assert!(e.message.contains(why), "{head}: {}", e.message);
    }
}

#[test]
fn the_same_rule_under_two_spellings_of_one_host_conflicts_and_other_hosts_do_not() {
    let heads = ["GET example.com/a", "GET EXAMPLE.com./a"];
    let err = Router::build(heads.iter().map(|h| (parse_head(h).unwrap(), ()))).unwrap_err();
    assert_eq!(err, vec![BuildError::Conflict { rule: 1, with: 0 }]);
    let heads = [
        "GET example.com/a",
        "GET other.com/a",
        "GET /a",
        "GET example.com:81/a",
    ];
    assert!(Router::build(heads.iter().map(|h| (parse_head(h).unwrap(), ()))).is_ok());
}

#[test]
fn a_405_lists_the_methods_of_every_host_tier_the_path_matches_in() {
    let r = router(&[("GET api.example.com/x", "OK"), ("PUT /x", "OK")]);
    let host = anygate_router::RequestHost::parse(b"api.example.com").unwrap();
    match r.lookup_host(b"POST", Some(host.key(80)), b"/x") {
        Lookup::MethodNotAllowed(mask) => assert_eq!(r.allow_header(mask), "GET, HEAD, PUT"),
        other => panic!("{other:?}"),
    }
    match r.lookup(b"POST", b"/x") {
        Lookup::MethodNotAllowed(mask) => assert_eq!(r.allow_header(mask), "PUT"),
        other => panic!("{other:?}"),
    }
}
