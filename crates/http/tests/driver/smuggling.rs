//! Request smuggling defences: each case is a 400 and a closed connection.

use anygate_http::Limits;

use crate::support::{Reader, connect, server};

fn rejected(raw: &str, code: &str) {
    let s = server(Limits::default());
    let mut r = Reader::new(connect(s.addr));
    r.send(raw.as_bytes());
    let resp = r.response(false).expect("a response");
    assert_eq!(resp.status, 400, "{raw:?}");
    assert!(
        resp.body_str().contains(code),
        "{raw:?}: {}",
        resp.body_str()
    );
    assert_eq!(resp.header("connection"), Some("close"));
    r.assert_closed();
}

#[test]
fn content_length_with_transfer_encoding() {
    rejected(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "AG-HTTP-4001",
    );
    rejected(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        "AG-HTTP-4001",
    );
}

#[test]
fn differing_or_malformed_content_lengths() {
    for cl in [
        "Content-Length: 3\r\nContent-Length: 4",
        "Content-Length: 3, 4",
        "Content-Length: +3",
        "Content-Length: -1",
        "Content-Length: 0x10",
        "Content-Length: 99999999999999999999",
        "Content-Length:",
    ] {
        rejected(
            &format!("POST /echo HTTP/1.1\r\nHost: t\r\n{cl}\r\n\r\nabcd"),
            "AG-HTTP-4001",
        );
    }
}

#[test]
fn transfer_encodings_other_than_a_single_chunked() {
    for te in [
        "Transfer-Encoding: gzip",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: chunked;q=1",
    ] {
        rejected(
            &format!("POST /echo HTTP/1.1\r\nHost: t\r\n{te}\r\n\r\n0\r\n\r\n"),
            "AG-HTTP-4001",
        );
    }
    rejected(
        "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "AG-HTTP-4001",
    );
}

#[test]
fn obs_fold_bare_lf_and_bad_header_syntax() {
    rejected(
        "GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  folded\r\n\r\n",
        "AG-HTTP-4000",
    );
    rejected("GET / HTTP/1.1\nHost: t\r\n\r\n", "AG-HTTP-4000");
    rejected("GET / HTTP/1.1\r\nHost: t\n\r\n", "AG-HTTP-4000");
    rejected("GET / HTTP/1.1\r\nHost : t\r\n\r\n", "AG-HTTP-4000");
    // More than two empty lines before the request line.
    rejected(
        "\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
        "AG-HTTP-4000",
    );
    rejected("GET / HTTP/1.1\r\nHo\0st: t\r\n\r\n", "AG-HTTP-4000");
    rejected("GET  / HTTP/1.1\r\nHost: t\r\n\r\n", "AG-HTTP-4000");
}

#[test]
fn bad_chunk_framing() {
    for body in [
        "zz\r\nabc\r\n0\r\n\r\n",
        "3\nabc\r\n0\r\n\r\n",
        "3\r\nabcX\r\n0\r\n\r\n",
        "-3\r\nabc\r\n0\r\n\r\n",
        "ffffffffffffffffff\r\n",
        "\r\n",
    ] {
        rejected(
            &format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}"),
            "AG-HTTP-4002",
        );
    }
}

#[test]
fn regression_an_invalid_host_is_forwarded() {
    // RFC 9112 §3.2: a 400 for an invalid Host; it used to reach the handler (and upstreams).
    rejected("GET / HTTP/1.1\r\nHost: a b/#@x\r\n\r\n", "AG-HTTP-4004");
    rejected(
        "GET / HTTP/1.1\r\nHost: evil@good.example\r\n\r\n",
        "AG-HTTP-4004",
    );
    // An absolute-form target's authority is the request's: a Host saying otherwise is refused.
    rejected(
        "GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n",
        "AG-HTTP-4004",
    );
}

#[test]
fn host_is_required_once_in_http_1_1() {
    rejected("GET / HTTP/1.1\r\n\r\n", "AG-HTTP-4004");
    rejected(
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "AG-HTTP-4004",
    );
}
