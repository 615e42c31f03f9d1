//! Regression tests for bugs found in review, named after them.

use anygate_http::Limits;

use crate::support::{Reader, connect, one, server};

#[test]
fn regression_a_head_ending_at_the_buffer_end_still_reads_its_body() {
    let s = server(Limits::default());
    for total in [8192, 8191, 16384] {
        let start = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nX-Pad: ";
        let pad = "p".repeat(total - start.len() - 4);
        let head = format!("{start}{pad}\r\n\r\n");
        assert_eq!(head.len(), total);
        let mut r = Reader::new(connect(s.addr));
        r.send(head.as_bytes());
        r.send(b"hello");
        let resp = r.response(false).unwrap();
        assert_eq!(
            (resp.status, resp.body_str().as_str()),
            (200, "hello"),
            "head of {total}"
        );
    }
}

#[test]
fn regression_a_response_before_100_continue_says_close() {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    r.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let resp = r.response(false).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    r.assert_closed();
}

#[test]
fn regression_a_chunk_size_followed_by_junk_is_refused() {
    let s = server(Limits::default());
    for size_line in ["5 6", "5 junk", "5\t\tx", "5;a\x01b"] {
        let raw = format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{size_line}\r\nhello\r\n0\r\n\r\n"
        );
        let resp = one(s.addr, raw.as_bytes());
        assert_eq!(resp.status, 400, "{size_line:?}");
        assert!(resp.body_str().contains("AG-HTTP-4002"));
    }
    for size_line in ["5 ", "5 ;a=b", "5;a=\"q s\""] {
        let raw = format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{size_line}\r\nhello\r\n0\r\n\r\n"
        );
        assert_eq!(
            one(s.addr, raw.as_bytes()).body_str(),
            "hello",
            "{size_line:?}"
        );
    }
}

#[test]
fn regression_a_large_unread_body_closes_instead_of_being_drained() {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    // 10 MB announced, 1 KB sent: the handler does not read it; the server must not wait
    // for the rest before closing.
    r.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n");
    r.send(&[b'x'; 1024]);
    let resp = r.response(false).unwrap();
    assert_eq!(resp.status, 200);
    r.stream.shutdown(std::net::Shutdown::Write).unwrap();
    r.assert_closed();
    // A small unread body is drained and the connection kept.
    let mut r = Reader::new(connect(s.addr));
    r.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n");
    r.send(&[b'x'; 100]);
    assert!(r.response(false).unwrap().header("connection").is_none());
    r.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.response(false).unwrap().body_str(), "ok");
}

#[test]
fn regression_a_204_never_carries_a_body() {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    r.send(b"GET /nocontent HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = r.response(false).unwrap();
    assert_eq!(resp.status, 204);
    assert!(resp.header("content-length").is_none());
    // The next response follows directly: no stray body bytes in between.
    assert_eq!(r.response(false).unwrap().body_str(), "ok");
}

#[test]
fn regression_a_503_is_delivered_even_when_the_client_sends_a_request() {
    let s = server(Limits {
        max_connections: 1,
        ..Limits::default()
    });
    let mut held = Reader::new(connect(s.addr));
    held.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(held.response(false).unwrap().status, 200);
    for _ in 0..5 {
        let mut extra = Reader::new(connect(s.addr));
        extra.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(
            extra.response(false).expect("a 503, not a reset").status,
            503
        );
    }
}

#[test]
fn regression_closing_with_unread_input_lingers_so_the_response_survives() {
    let s = server(Limits::default());
    for _ in 0..5 {
        let mut r = Reader::new(connect(s.addr));
        let mut w = r.stream.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = w.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 1000000\r\n\r\n");
            let _ = w.write_all(&vec![b'x'; 1_000_000]);
        });
        let resp = r.response(false).expect("the response, not a reset");
        assert_eq!((resp.status, resp.body_str().as_str()), (200, "ok"));
        writer.join().unwrap();
    }
}

#[test]
fn regression_whitespace_after_a_chunk_size_is_bounded() {
    let s = server(Limits::default());
    let raw = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1{}\r\nx\r\n0\r\n\r\n",
        " ".repeat(5000)
    );
    let resp = one(s.addr, raw.as_bytes());
    assert_eq!(resp.status, 400);
    assert!(resp.body_str().contains("AG-HTTP-4002"));
    // obs-text inside a quoted extension value is allowed.
    let raw = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\"\xe9\"\r\nx\r\n0\r\n\r\n";
    assert_eq!(one(s.addr, raw).body_str(), "x");
}

#[test]
fn regression_expect_with_the_body_already_sent_keeps_the_connection() {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    r.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi",
    );
    let resp = r.response(false).unwrap();
    assert_eq!(resp.body_str(), "hi");
    assert!(resp.header("connection").is_none(), "{resp:?}");
    r.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.response(false).unwrap().body_str(), "ok");
}
