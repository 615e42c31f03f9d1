//! Keep-alive, pipelining, HEAD, HTTP/1.0, split input, request ids.

use anygate_http::Limits;

use crate::support::{Reader, connect, one, server};

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    for _ in 0..50 {
        r.send(GET);
        let resp = r.response(false).unwrap();
        assert_eq!((resp.status, resp.body_str().as_str()), (200, "ok"));
        assert!(resp.header("connection").is_none());
        assert!(resp.header("date").unwrap().ends_with(" GMT"));
    }
}

#[test]
fn a_hundred_pipelined_requests_in_one_write_are_answered_in_order() {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend_from_slice(
            format!("GET /id HTTP/1.1\r\nHost: t\r\nX-Request-Id: req-{i}\r\n\r\n").as_bytes(),
        );
    }
    r.send(&batch);
    for i in 0..100 {
        let resp = r.response(false).unwrap();
        assert_eq!(resp.body_str(), format!("req-{i}"));
        assert_eq!(
            resp.header("x-request-id"),
            Some(format!("req-{i}").as_str())
        );
    }
}

#[test]
fn a_request_sent_one_byte_at_a_time() {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    let req = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    for b in req {
        r.send(&[*b]);
    }
    assert_eq!(r.response(false).unwrap().body_str(), "hello");
}

#[test]
fn every_request_of_a_corpus_split_at_every_byte() {
    let s = server(Limits::default());
    let corpus: [&[u8]; 4] = [
        b"GET /?q=1 HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ];
    let mut r = Reader::new(connect(s.addr));
    for req in corpus {
        for cut in 1..req.len() {
            let keep_alive = !req.ends_with(b"HTTP/1.0\r\n\r\n");
            if !keep_alive {
                r = Reader::new(connect(s.addr));
            }
            r.send(&req[..cut]);
            r.send(&req[cut..]);
            let resp = r.response(false).unwrap();
            assert_eq!(
                resp.status,
                200,
                "cut {cut} of {:?}",
                String::from_utf8_lossy(req)
            );
            if req.starts_with(b"POST") {
                assert_eq!(resp.body_str(), "abc");
            }
            if !keep_alive {
                r.assert_closed();
            }
        }
    }
}

#[test]
fn two_pipelined_requests_split_at_every_byte() {
    let s = server(Limits::default());
    let pair: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
                        GET /?q=2 HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut r = Reader::new(connect(s.addr));
    for cut in 1..pair.len() {
        r.send(&pair[..cut]);
        r.send(&pair[cut..]);
        let first = r.response(false).unwrap();
        let second = r.response(false).unwrap();
        assert_eq!(
            (first.status, first.body_str().as_str(), second.status),
            (200, "abc", 200),
            "cut {cut}"
        );
    }
}

#[test]
fn a_large_head_trickled_a_byte_at_a_time_is_answered() {
    let s = server(Limits::default());
    let mut head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    head.resize(16 * 1024, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    let mut r = Reader::new(connect(s.addr));
    r.stream.set_nodelay(true).unwrap();
    for b in &head {
        r.send(std::slice::from_ref(b));
    }
    assert_eq!(r.response(false).unwrap().status, 200);
}

#[test]
fn head_gets_the_headers_without_the_body() {
    let s = server(Limits::default());
    let resp = one(s.addr, b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("2"));
    assert!(resp.body.is_empty());
    // And the connection is still in sync for the next request.
    let mut r = Reader::new(connect(s.addr));
    r.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(r.response(true).unwrap().body.is_empty());
    assert_eq!(r.response(false).unwrap().body_str(), "ok");
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    r.send(b"GET / HTTP/1.0\r\n\r\n");
    let resp = r.response(false).unwrap();
    assert_eq!(resp.header("connection"), Some("close"));
    r.assert_closed();
    let mut r = Reader::new(connect(s.addr));
    r.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        r.response(false).unwrap().header("connection"),
        Some("keep-alive")
    );
    r.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.response(false).unwrap().status, 200);
}

#[test]
fn connection_close_is_honoured() {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    r.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(
        r.response(false).unwrap().header("connection"),
        Some("close")
    );
    r.assert_closed();
}

#[test]
fn request_ids_are_kept_when_sane_and_generated_otherwise() {
    let s = server(Limits::default());
    let resp = one(
        s.addr,
        b"GET /id HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc-123\r\n\r\n",
    );
    assert_eq!(resp.body_str(), "abc-123");
    for bad in ["", "has space", &"x".repeat(200)] {
        let raw = format!("GET /id HTTP/1.1\r\nHost: t\r\nX-Request-Id: {bad}\r\n\r\n");
        let resp = one(s.addr, raw.as_bytes());
        let id = resp.body_str();
        assert_eq!(id.len(), 32, "{bad:?} -> {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(resp.header("x-request-id"), Some(id.as_str()));
    }
}

#[test]
fn error_bodies_are_json_with_a_code_and_the_trace() {
    let s = server(Limits::default());
    let resp = one(
        s.addr,
        b"GET /missing HTTP/1.1\r\nHost: t\r\nX-Request-Id: r1\r\n\r\n",
    );
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        resp.body_str(),
        r#"{"error":{"code":"AG-RTE-4040","message":"no route for this path","status":404},"trace":{"trace_id":"r1","route":"GET /x"}}"#
    );
}
