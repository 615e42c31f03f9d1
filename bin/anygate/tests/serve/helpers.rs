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

const BROWSER: &str = "Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n";

fn pages_config(
    dir: &crate::support::TempDir,
    dead: std::net::SocketAddr,
    intercept: &str,
) -> String {
    std::fs::write(dir.0.join("404.html"), "<h1>not here</h1>").unwrap();
    std::fs::write(dir.0.join("5xx.html"), "<h1>our fault</h1>").unwrap();
    format!(
        r#"
server:
  listen: "127.0.0.1:0"
errors:
  404: {d}/404.html
  5xx: {d}/5xx.html
  405: "<p>wrong method</p>"
routes:
  "GET /only-get": "OK"
  "/dead/": "http://{dead}/"
groups:
  - prefix: /api
    errors:
      404: '{{"error":"no such api"}}'
    routes:
      "GET /items": "OK"
      "/docs/": "{d}"
  - prefix: /up
    errors:
      intercept_upstream: {intercept}
    routes:
      "/": "http://{dead}/"
"#,
        d = dir.0.display()
    )
}

#[test]
fn error_pages_are_chosen_by_accept_and_keep_their_status() {
    let dir = crate::support::TempDir::new("pages");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let s = in_process(&pages_config(&dir, dead, "false"));
    let a = s.addrs()[0];
    // 404: the HTML page for a browser, the JSON error body for an API client.
    let r = send(a, "GET", "/nothing", BROWSER);
    assert_eq!(
        (r.status, r.header("content-type"), r.body_str().as_str()),
        (404, Some("text/html; charset=utf-8"), "<h1>not here</h1>")
    );
    let r = send(a, "GET", "/nothing", "Accept: application/json\r\n");
    assert_eq!(r.status, 404);
    assert!(r.body_str().contains("\"code\":\"AG-"), "{}", r.body_str());
    let r = send(a, "GET", "/nothing", "");
    assert!(
        r.body_str().starts_with("{\"error\":{\"code\""),
        "{}",
        r.body_str()
    );
    // 405 keeps its Allow field.
    let r = send(a, "POST", "/only-get", BROWSER);
    assert_eq!(
        (r.status, r.header("allow"), r.body_str().as_str()),
        (405, Some("GET, HEAD"), "<p>wrong method</p>")
    );
    // 502 from a dead upstream: the 5xx class page.
    let r = send(a, "GET", "/dead/x", BROWSER);
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (502, "<h1>our fault</h1>")
    );
    let r = send(a, "GET", "/dead/x", "Accept: application/json\r\n");
    assert_eq!(r.status, 502);
    assert!(r.body_str().contains("AG-UPS-"), "{}", r.body_str());
    // A group's own page (JSON, so for every client) over the top level's, for what its
    // rules answer; a path no rule takes gets the top level's. HEAD has no body.
    let r = send(a, "GET", "/api/docs/nope.txt", "");
    assert_eq!(
        (r.status, r.header("content-type"), r.body_str().as_str()),
        (
            404,
            Some("application/json; charset=utf-8"),
            r#"{"error":"no such api"}"#
        )
    );
    let r = send(a, "GET", "/api/nope", BROWSER);
    assert_eq!(r.body_str(), "<h1>not here</h1>");
    let r = one(
        a,
        b"HEAD /nothing HTTP/1.1\r\nHost: t\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((r.status, r.header("content-length")), (404, Some("17")));
}

#[test]
fn upstream_errors_get_the_page_only_when_intercepted() {
    let dir = crate::support::TempDir::new("pages-up");
    let up = crate::proxy::upstream(|_, s| {
        use std::io::Write;
        let _ = s.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 12\r\n\r\nupstream 503",
        );
        true
    });
    for (intercept, want) in [("false", "upstream 503"), ("true", "<h1>our fault</h1>")] {
        let s = in_process(&pages_config(&dir, up.addr, intercept));
        let r = send(s.addrs()[0], "GET", "/up/x", BROWSER);
        assert_eq!(
            (r.status, r.body_str().as_str()),
            (503, want),
            "intercept {intercept}"
        );
        // An API client keeps the upstream's body even when intercepting (HTML page).
        let r = send(s.addrs()[0], "GET", "/up/x", "Accept: application/json\r\n");
        assert_eq!((r.status, r.body_str().as_str()), (503, "upstream 503"));
    }
}

#[test]
fn a_rule_s_long_form_carries_its_own_error_pages_and_bad_pages_are_refused() {
    let s = in_process(
        r#"
server:
  listen: "127.0.0.1:0"
routes:
  "/files/":
    action: "/nonexistent-anygate-dir-for-test/"
    errors: { 404: "<b>file gone</b>" }
"#
        .replace(
            "/nonexistent-anygate-dir-for-test/",
            &std::env::temp_dir().display().to_string(),
        )
        .as_str(),
    );
    let r = send(s.addrs()[0], "GET", "/files/no-such-file-here.txt", BROWSER);
    assert_eq!((r.status, r.body_str().as_str()), (404, "<b>file gone</b>"));
    for (yaml, at, why) in [
        (
            "errors:\n  200: x\nroutes: {\"/\": OK}\n",
            "t.yml:2:3",
            "not an error status",
        ),
        (
            "errors:\n  404: ./missing.html\nroutes: {\"/\": OK}\n",
            "t.yml:2:8",
            "does not exist",
        ),
        (
            "errors:\n  6xx: x\nroutes: {\"/\": OK}\n",
            "t.yml:2:3",
            "not an error status",
        ),
        (
            "routes:\n  \"/\": { errors: {} }\n",
            "t.yml:2:8",
            "has no `action`",
        ),
    ] {
        let f = anygate_config::load_str(
            "t.yml",
            yaml,
            anygate_config::Format::Yaml,
            std::path::Path::new("."),
            &[],
        )
        .unwrap_err();
        let d = f.errors().next().unwrap();
        assert_eq!(f.sources.location(d.span.unwrap()), at, "{yaml}");
        assert!(d.message.contains(why), "{yaml}: {}", d.message);
    }
}

fn profiles_config(dir: &crate::support::TempDir) -> String {
    std::fs::write(dir.0.join("index.html"), "<h1>site</h1>").unwrap();
    format!(
        r#"
server:
  listen: "127.0.0.1:0"
groups:
  - prefix: /site
    profile: static_site
    routes:
      "/": "{d}"
  - prefix: /api
    profile: public_api
    routes:
      "/items": 'OK {{"items":[]}}'
  - prefix: /admin
    profile: admin_panel
    plugins:
      - {{ kind: ip, args: {{ allow: ["127.0.0.0/8"] }} }}
      - {{ kind: auth, args: {{ bearer: {{ tokens: [admin-token] }} }} }}
    routes:
      "/": "*"
"#,
        d = dir.0.display()
    )
}

#[test]
fn each_profile_s_settings_are_on_the_wire() {
    let dir = crate::support::TempDir::new("profiles");
    let s = in_process(&profiles_config(&dir));
    let a = s.addrs()[0];
    // static_site: the security preset (SAMEORIGIN framing), bodies capped at 64 KiB.
    let r = send(a, "GET", "/site/", "");
    assert_eq!((r.status, r.body_str().as_str()), (200, "<h1>site</h1>"));
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let big = one(
        a,
        b"POST /site/ HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(big.status, 413);
    // public_api: an API CSP and DENY framing, no CORS fields.
    let r = send(a, "GET", "/api/items", "Origin: https://evil.example\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert!(r.header("access-control-allow-origin").is_none());
    let r = one(
        a,
        b"POST /api/items HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 413, "public_api caps bodies at 1 MiB");
    // admin_panel: its filters in front, then a rate limit of 5/s with a burst of 20.
    assert_eq!(send(a, "GET", "/admin/x", "").status, 401);
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(
            send(
                a,
                "GET",
                "/admin/x",
                "Authorization: Bearer admin-token\r\n",
            )
            .status,
        );
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.contains(&429),
        "the admin_panel rate limit: {statuses:?}"
    );
}

#[test]
fn explicit_settings_beat_the_profile_and_admin_panel_demands_its_guards() {
    let dir = crate::support::TempDir::new("profiles-explicit");
    let s = in_process(&format!(
        r#"
server:
  listen: "127.0.0.1:0"
groups:
  - prefix: /site
    profile: static_site
    max_body: 1MiB
    plugins:
      - {{ kind: headers, args: {{ response: {{ set: {{ x-frame-options: ALLOWALL }} }} }} }}
    routes:
      "/": "{d}"
"#,
        d = dir.0.display()
    ));
    let a = s.addrs()[0];
    let r = one(
        a,
        b"POST /site/ HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n",
    );
    assert_ne!(r.status, 413, "the group's own max_body wins");
    let r = send(a, "GET", "/site/", "");
    assert_eq!(r.header("x-frame-options"), Some("ALLOWALL"));
    assert!(
        r.header("content-security-policy").is_none(),
        "the profile's headers are not added"
    );
    for (plugins, why) in [
        (
            "",
            "an `ip` filter with an `allow` list and `require_client_cert: true` or an `auth` filter",
        ),
        (
            "    plugins: [ { kind: ip, args: { allow: [\"10.0.0.0/8\"] } } ]\n",
            "profile `admin_panel` needs `require_client_cert: true` or an `auth` filter",
        ),
    ] {
        let yaml = format!(
            "groups:\n  - prefix: /admin\n    profile: admin_panel\n{plugins}    routes: {{ \"/\": OK }}\n"
        );
        let f = anygate_config::load_str(
            "t.yml",
            &yaml,
            anygate_config::Format::Yaml,
            std::path::Path::new("."),
            &[],
        )
        .unwrap_err();
        let d = f.errors().next().unwrap();
        assert_eq!(f.sources.location(d.span.unwrap()), "t.yml:3:14", "{yaml}");
        assert!(d.message.contains(why), "{}", d.message);
    }
    let f = anygate_config::load_str(
        "t.yml",
        "groups:\n  - profile: paranoid\n    routes: { \"/\": OK }\n",
        anygate_config::Format::Yaml,
        std::path::Path::new("."),
        &[],
    )
    .unwrap_err();
    assert!(f.to_string().contains("t.yml:2:14"), "{f}");
}
