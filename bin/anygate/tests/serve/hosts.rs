//! Host routing over real sockets: several sites and an API on one listener, a wildcard
//! tenant site, the default for an unknown host, absolute-form requests.

use crate::http::one;
use crate::proxy::upstream;
use crate::support::{TempDir, in_process};

fn get(addr: std::net::SocketAddr, target: &str, host: &str) -> crate::http::Resp {
    one(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn two_sites_an_api_a_tenant_wildcard_and_the_default_share_one_listener() {
    let dir = TempDir::new("hosts");
    for (site, text) in [
        ("www", "www site"),
        ("blog", "blog site"),
        ("tenants", "tenant site"),
    ] {
        std::fs::create_dir_all(dir.0.join(site)).unwrap();
        std::fs::write(dir.0.join(site).join("index.html"), text).unwrap();
    }
    let api = upstream(|seen, s| {
        use std::io::Write;
        let target = seen.head.split(' ').nth(1).unwrap_or_default();
        let body = format!("api saw {target}");
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        true
    });
    let yaml = format!(
        r#"
server:
  listen: "127.0.0.1:0"
routes:
  "/": "OK default"
  "www.example.com/": "{www}"
  "blog.example.com/": "{blog}"
  "api.example.com/v1/": "http://{api}/"
  "*.tenants.example.com/": "{tenants}"
  "GET example.com:8080/port": "OK port 8080"
"#,
        www = dir.0.join("www").display(),
        blog = dir.0.join("blog").display(),
        tenants = dir.0.join("tenants").display(),
        api = api.addr,
    );
    let s = in_process(&yaml);
    let addr = s.addrs()[0];
    let r = get(addr, "/", "www.example.com");
    assert_eq!((r.status, r.body_str().as_str()), (200, "www site"));
    // Case and a trailing dot do not matter; the port does not unless the rule names one.
    let r = get(addr, "/", "BLOG.Example.com.:8080");
    assert_eq!((r.status, r.body_str().as_str()), (200, "blog site"));
    let r = get(addr, "/v1/users?id=7", "api.example.com");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "api saw /users?id=7")
    );
    // A path the API host has no rule for falls to the rules for every host.
    let r = get(addr, "/v2/users", "api.example.com");
    assert_eq!((r.status, r.body_str().as_str()), (200, "default"));
    // One label under the wildcard: a tenant; two labels, or the bare suffix: not.
    let r = get(addr, "/", "acme.tenants.example.com");
    assert_eq!((r.status, r.body_str().as_str()), (200, "tenant site"));
    let r = get(addr, "/", "a.b.tenants.example.com");
    assert_eq!(r.body_str(), "default");
    let r = get(addr, "/", "tenants.example.com");
    assert_eq!(r.body_str(), "default");
    // An unknown host gets the default.
    let r = get(addr, "/", "unknown.org");
    assert_eq!((r.status, r.body_str().as_str()), (200, "default"));
    // A rule with a port: only that port.
    let r = get(addr, "/port", "example.com:8080");
    assert_eq!(r.body_str(), "port 8080");
    let r = get(addr, "/port", "example.com");
    assert_eq!(r.body_str(), "default");
    // Absolute form: the target's authority routes (and `Host` must agree with it).
    let r = one(
        addr,
        b"GET http://www.example.com/ HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((r.status, r.body_str().as_str()), (200, "www site"));
    let r = one(
        addr,
        b"GET http://blog.example.com/ HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        r.status, 400,
        "a Host that disagrees with the target's authority"
    );
    // HTTP/1.0 without a Host: the rules for every host.
    let r = one(addr, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.body_str().as_str()), (200, "default"));
}

#[test]
fn a_host_without_a_rule_for_the_path_and_no_default_is_a_404_with_the_host_s_405() {
    let s = in_process(
        r#"
server:
  listen: "127.0.0.1:0"
routes:
  "GET api.example.com/items": 'OK {"items":[]}'
  "PUT /items": "NO_CONTENT"
"#,
    );
    let addr = s.addrs()[0];
    let r = get(addr, "/items", "api.example.com");
    assert_eq!((r.status, r.body_str().as_str()), (200, r#"{"items":[]}"#));
    let r = one(
        addr,
        b"POST /items HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, PUT")));
    let r = one(
        addr,
        b"POST /items HTTP/1.1\r\nHost: other.example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((r.status, r.header("allow")), (405, Some("PUT")));
    let r = get(addr, "/nothing", "api.example.com");
    assert_eq!(r.status, 404);
}
