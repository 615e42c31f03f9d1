//! Proxy URL building (SPEC §5) on rules compiled by the router.

use anygate_actions::proxy::upstream_path_and_query;
use anygate_router::{Action, Lookup, Router, parse_action, parse_head};

fn router(rules: &[(&str, &str)]) -> Router<Action> {
    Router::build(
        rules
            .iter()
            .map(|(h, a)| (parse_head(h).unwrap(), parse_action(a).unwrap())),
    )
    .unwrap()
}

fn upstream(r: &Router<Action>, path: &str, query: Option<&str>) -> String {
    let Lookup::Found(m) = r.lookup(b"GET", path.as_bytes()) else {
        panic!("{path}")
    };
    let Action::Proxy(t) = &m.rule.value else {
        panic!()
    };
    let pq = upstream_path_and_query(
        t,
        &m.rule.head.path,
        path.as_bytes(),
        m.params.splat(),
        query.map(str::as_bytes),
    );
    format!("{}{}", t.origin(), String::from_utf8(pq).unwrap())
}

#[test]
fn proxy_urls_never_double_a_slash() {
    let r = router(&[("/v1/", "http://up:9000/")]);
    assert_eq!(upstream(&r, "/v1", None), "http://up:9000/");
    assert_eq!(upstream(&r, "/v1/", None), "http://up:9000/");
    assert_eq!(
        upstream(&r, "/v1/a/b", Some("x=1")),
        "http://up:9000/a/b?x=1"
    );
    let r = router(&[("/v2/*", "http://up/base")]);
    assert_eq!(upstream(&r, "/v2/a", None), "http://up/base/a");
    assert_eq!(upstream(&r, "/v2", None), "http://up/base");
    let r = router(&[("/v3/", "http://up/base/")]);
    assert_eq!(upstream(&r, "/v3/a/", None), "http://up/base/a/");
    let r = router(&[
        ("/ping", "http://auth/ping"),
        ("/users/:id", "http://users/api/"),
        ("/raw", "http://raw"),
    ]);
    assert_eq!(upstream(&r, "/ping", Some("q")), "http://auth/ping?q");
    assert_eq!(upstream(&r, "/users/7", None), "http://users/api/users/7");
    assert_eq!(upstream(&r, "/raw", None), "http://raw/raw");
}

#[test]
fn encoded_separators_that_would_climb() {
    use anygate_actions::proxy::encoded_traversal;
    for path in [
        "/public/..%2Fadmin",
        "/public/..%5Cadmin",
        "/public/..%2fadmin",
        "/public/a%2F..%2F..%2Fetc",
        "/public/..\\admin",
        "/public/x%2F..",
        "/public/.%2Fa",
    ] {
        assert!(encoded_traversal(path.as_bytes()), "{path}");
    }
    for path in [
        "/public/a%2Fb",
        "/public/..a%2Fb",
        "/public/a..%2Fb",
        "/public/%2F",
        "/public/100%25",
        "/public/plain",
        "/",
    ] {
        assert!(!encoded_traversal(path.as_bytes()), "{path}");
    }
}
