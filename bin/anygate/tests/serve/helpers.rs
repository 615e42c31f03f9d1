//! The everyday routing helpers on the wire: trailing-slash modes, error pages, security
//! profiles.

use crate::http::{Resp, one};
use crate::support::in_process;

fn send(addr: std::net::SocketAddr, method: &str, target: &str, extra: &str) -> Resp {
    one(
        addr,
        format!(
            "{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

fn slash_config(mode: &str) -> String {
    format!(
        r#"
server:
  listen: "127.0.0.1:0"
  trailing_slash: {mode}
routes:
  "GET /about": "OK about"
  "GET /docs/": "OK docs prefix"
  "GET /docs/intro": "OK intro"
  "GET /": "OK home"
"#
    )
}

#[test]
fn trailing_slash_strict_matches_the_path_as_sent() {
    let s = in_process(&slash_config("strict"));
    let a = s.addrs()[0];
    assert_eq!(send(a, "GET", "/about", "").body_str(), "about");
    // `/about/` is the `/` prefix's.
    assert_eq!(send(a, "GET", "/about/", "").body_str(), "home");
}

#[test]
fn trailing_slash_redirect_answers_308_to_the_exact_rule_s_path() {
    let s = in_process(&slash_config("redirect"));
    let a = s.addrs()[0];
    let r = send(a, "GET", "/about/?x=1", "");
    assert_eq!((r.status, r.header("location")), (308, Some("/about?x=1")));
    let r = send(a, "GET", "/docs/intro/", "");
    assert_eq!((r.status, r.header("location")), (308, Some("/docs/intro")));
    // An explicit prefix for the slashed form keeps it; so does a path with no exact rule.
    assert_eq!(send(a, "GET", "/docs/", "").body_str(), "docs prefix");
    assert_eq!(send(a, "GET", "/nothing/", "").body_str(), "home");
    assert_eq!(send(a, "GET", "/about", "").body_str(), "about");
}

#[test]
fn trailing_slash_ignore_serves_the_exact_rule_for_both_forms() {
    let s = in_process(&slash_config("ignore"));
    let a = s.addrs()[0];
    for target in ["/about", "/about/"] {
        let r = send(a, "GET", target, "");
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (200, "about"),
            "{target}"
        );
    }
    let r = send(a, "HEAD", "/docs/intro/", "");
    assert_eq!(r.status, 200);
    // The rule's methods still apply: a POST to `/about/` is the `/about` rule's 405.
    let r = send(a, "POST", "/about/", "");
    assert_eq!(r.status, 405);
}

#[test]
fn a_bad_trailing_slash_mode_is_refused_with_its_position() {
    let f = anygate_config::load_str(
        "t.yml",
        "server:\n  trailing_slash: sometimes\nroutes:\n  \"/\": OK\n",
        anygate_config::Format::Yaml,
        std::path::Path::new("."),
        &[],
    )
    .unwrap_err();
    let d = f.errors().next().unwrap();
    assert_eq!(f.sources.location(d.span.unwrap()), "t.yml:2:19");
    assert!(
        d.message.contains("`strict`, `redirect` or `ignore`"),
        "{}",
        d.message
    );
}
