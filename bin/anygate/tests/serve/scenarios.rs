//! The SPEC §4 example's fixed and echo rules, 404 and 405, over raw sockets.

use crate::http::{Reader, connect, one};
use crate::support::in_process;

const SPEC_EXAMPLE: &str = r#"
server:
  listen: "127.0.0.1:0"
  workers: 2
routes:
  "GET POST PATCH /api/mock/rude": 'FORBIDDEN {"msg":"GO PATCH UR MUM!"}'
  "GET /fastest/ever/ok": "OK"
  "/a/b/c": "*"
  "/a/b/c-forbidden": "FORBIDDEN *"
  "GET /users/:id/*": "*"
  "GET /old": "MOVED /new"
  "DELETE /gone": "NO_CONTENT"
"#;

#[test]
fn fixed_json_body_with_status() {
    let s = in_process(SPEC_EXAMPLE);
    for method in ["GET", "POST", "PATCH"] {
        let raw =
            format!("{method} /api/mock/rude HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        let resp = one(s.addrs()[0], raw.as_bytes());
        assert_eq!(resp.status, 403, "{method}");
        assert_eq!(
            resp.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(resp.body_str(), r#"{"msg":"GO PATCH UR MUM!"}"#);
        assert_eq!(resp.header("x-request-id").map(str::len), Some(32));
    }
}

#[test]
fn fixed_empty_ok() {
    let s = in_process(SPEC_EXAMPLE);
    let resp = one(
        s.addrs()[0],
        b"GET /fastest/ever/ok HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(
        (resp.status, resp.header("content-length")),
        (200, Some("0"))
    );
    assert!(resp.header("content-type").is_none());
    let head = one(
        s.addrs()[0],
        b"HEAD /fastest/ever/ok HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    let redirect = one(s.addrs()[0], b"GET /old HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (redirect.status, redirect.header("location")),
        (301, Some("/new"))
    );
    let no_content = one(s.addrs()[0], b"DELETE /gone HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(no_content.status, 204);
    assert!(no_content.header("content-length").is_none());
}

#[test]
fn echo_describes_the_request() {
    let s = in_process(SPEC_EXAMPLE);
    let resp = one(
        s.addrs()[0],
        b"PUT /a/b/c?x=1&y=%20 HTTP/1.1\r\nHost: t\r\nX-Multi: 1\r\nx-multi: 2\r\nContent-Length: 11\r\nX-Request-Id: rid-7\r\n\r\nhello \"you\"",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        resp.body_str(),
        r#"{"method":"PUT","target":"/a/b/c?x=1&y=%20","path":"/a/b/c","query":"x=1&y=%20","version":"HTTP/1.1","headers":{"host":"t","x-multi":"1, 2","content-length":"11","x-request-id":"rid-7"},"params":{},"splat":null,"body":"hello \"you\"","body_bytes":11,"body_truncated":false,"request_id":"rid-7"}"#
    );
}

#[test]
fn echo_with_status_params_and_splat() {
    let s = in_process(SPEC_EXAMPLE);
    let resp = one(
        s.addrs()[0],
        b"GET /a/b/c-forbidden HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(resp.status, 403);
    assert!(
        resp.body_str()
            .starts_with(r#"{"method":"GET","target":"/a/b/c-forbidden""#)
    );
    let resp = one(
        s.addrs()[0],
        b"GET /users/42/x/%79 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let body = resp.body_str();
    assert!(body.contains(r#""path":"/users/42/x/y""#), "{body}");
    assert!(
        body.contains(r#""params":{"id":"42"},"splat":"x/y""#),
        "{body}"
    );
}

#[test]
fn echo_keeps_only_the_first_bytes_of_a_large_body() {
    let yaml =
        "server: {listen: \"127.0.0.1:0\", limits: {echo_body: 4}}\nroutes: {\"/e\": \"*\"}\n";
    let s = in_process(yaml);
    let mut r = Reader::new(connect(s.addrs()[0]));
    r.send(b"POST /e HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n");
    let body = r.response(false).unwrap().body_str();
    assert!(
        body.contains(r#""body":"abcd","body_bytes":6,"body_truncated":true"#),
        "{body}"
    );
    // The connection is still usable: the rest of the body was read.
    r.send(b"GET /e HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.response(false).unwrap().status, 200);
}

#[test]
fn not_found_and_method_not_allowed() {
    let s = in_process(SPEC_EXAMPLE);
    let resp = one(s.addrs()[0], b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 404);
    assert!(resp.body_str().contains("AG-RTE-4040"));
    let resp = one(
        s.addrs()[0],
        b"DELETE /api/mock/rude HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD, POST, PATCH"));
    assert!(resp.body_str().contains("AG-RTE-4050"));
}

#[test]
fn paths_are_normalized_before_matching() {
    let s = in_process(SPEC_EXAMPLE);
    let resp = one(
        s.addrs()[0],
        b"GET /x/../%61/b/./c HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert!(resp.body_str().contains(r#""path":"/a/b/c""#));
    let resp = one(s.addrs()[0], b"GET /a/b/c%zz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 400);
    assert!(resp.body_str().contains("AG-HTTP-4003"));
}

#[test]
fn an_https_upstream_that_refuses_the_connection_is_a_502() {
    let s = in_process(
        "server: {listen: \"127.0.0.1:0\"}\nroutes: {\"/p/\": \"https://127.0.0.1:9/\"}\n",
    );
    let resp = one(s.addrs()[0], b"GET /p/x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 502);
    assert!(
        resp.body_str().contains("AG-UPS-5021"),
        "{}",
        resp.body_str()
    );
    assert!(resp.body_str().contains(r#""route":"* /p/""#));
}
