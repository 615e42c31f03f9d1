//! Request bodies: lengths, chunks, 100-continue, stalls, leftovers.

use std::time::Duration;

use anygate_http::Limits;

use crate::support::{Reader, connect, one, server};

#[test]
fn content_length_and_chunked_bodies_arrive_whole() {
    let s = server(Limits::default());
    let resp = one(
        s.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world",
    );
    assert_eq!(resp.body_str(), "hello world");
    let chunked = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
    assert_eq!(one(s.addr, chunked).body_str(), "hello world");
}

#[test]
fn a_large_body_streams_through_a_small_buffer() {
    let s = server(Limits::default());
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut r = Reader::new(connect(s.addr));
    let mut w = r.stream.try_clone().unwrap();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let sent = body.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        w.write_all(head.as_bytes()).unwrap();
        w.write_all(&sent).unwrap();
    });
    let resp = r.response(false).unwrap();
    writer.join().unwrap();
    assert_eq!(resp.body, body);
}

#[test]
fn an_unread_body_is_discarded_and_the_next_request_is_answered() {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    r.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.response(false).unwrap().status, 200);
    assert_eq!(r.response(false).unwrap().body_str(), "ok");
    r.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.response(false).unwrap().status, 200);
    assert_eq!(r.response(false).unwrap().body_str(), "ok");
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_read() {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    r.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = r.response(false).unwrap();
    assert_eq!(interim.status, 100);
    r.send(b"hello");
    assert_eq!(r.response(false).unwrap().body_str(), "hello");
    // A handler that does not read the body: no 100, the final response, and close.
    let mut r = Reader::new(connect(s.addr));
    r.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let resp = r.response(false).unwrap();
    assert_eq!(resp.status, 200);
    r.assert_closed();
}

#[test]
fn a_stalled_body_gets_408() {
    let s = server(Limits {
        body_timeout: Duration::from_millis(200),
        ..Limits::default()
    });
    let mut r = Reader::new(connect(s.addr));
    r.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhalf");
    let resp = r.response(false).unwrap();
    assert_eq!(resp.status, 408);
    assert!(resp.body_str().contains("AG-HTTP-4081"));
    r.assert_closed();
}

#[test]
fn a_body_cut_short_by_the_client_closes_quietly() {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    r.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhalf");
    r.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let resp = r.response(false).unwrap();
    assert_eq!(resp.status, 400);
    assert!(resp.body_str().contains("AG-HTTP-4005"));
    r.assert_closed();
    // The server is fine.
    assert_eq!(
        one(s.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
}
