//! HTTP/2 with prior knowledge (`h2c`) against the driver: a real `h2` client on a runtime
//! of its own, over loopback.

use std::net::SocketAddr;

use anygate_http::{Http2, Limits};
use anygate_runtime::Runtime;
use anygate_runtime::compat::TokioIo;
use anygate_runtime::net::TcpStream;
use bytes::Bytes;
use h2::client::SendRequest;

use crate::support::{LIMIT, one, server};

fn h2c_limits() -> Limits {
    Limits {
        h2: Http2 {
            h2c: true,
            ..Http2::default()
        },
        ..Limits::default()
    }
}

/// A client runtime and a connection to `addr`, its window for responses `window` bytes.
fn client(addr: SocketAddr, window: u32) -> (Runtime, SendRequest<Bytes>) {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let send = rt.block_on(async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(window)
            .handshake::<_, Bytes>(TokioIo::new(stream))
            .await
            .expect("h2 handshake");
        anygate_runtime::spawn(async move {
            let _ = conn.await;
        });
        send
    });
    (rt, send)
}

struct Got {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

async fn request(
    send: &SendRequest<Bytes>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Got, h2::Error> {
    let mut send = send.clone().ready().await?;
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://test.example{path}"))
        .body(())
        .unwrap();
    let (resp, mut stream) = send.send_request(req, body.is_none())?;
    if let Some(body) = body {
        stream.send_data(Bytes::from(body), true)?;
    }
    let resp = resp.await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut recv = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    Ok(Got {
        status,
        headers,
        body: out,
    })
}

fn bounded<F: Future>(rt: &Runtime, f: F) -> F::Output {
    rt.block_on(async {
        anygate_runtime::time::timeout(LIMIT, f)
            .await
            .expect("the exchange hung")
    })
}

#[test]
fn h2c_serves_concurrent_streams_and_a_large_echo_through_a_small_window() {
    let s = server(h2c_limits());
    let (rt, send) = client(s.addr, 1024);
    bounded(&rt, async {
        let mut tasks = Vec::new();
        for i in 0..100 {
            let send = send.clone();
            tasks.push(anygate_runtime::spawn(async move {
                let path = if i % 2 == 0 { "/" } else { "/id" };
                request(&send, "GET", path, None).await.unwrap()
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let got = t.await.unwrap();
            assert_eq!(got.status, 200);
            assert!(got.headers.contains_key("date"));
            let id = got.headers["x-request-id"].as_bytes().to_vec();
            if i % 2 == 0 {
                assert_eq!(got.body, b"ok");
            } else {
                assert_eq!(got.body, id, "/id answers with the request id");
            }
        }
        // 1 MiB up (more than the server's 256 KiB stream window) and back down through
        // the client's 1 KiB window.
        let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let got = request(&send, "POST", "/echo", Some(body.clone()))
            .await
            .unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.headers["content-length"], "1048576");
        assert!(got.body == body, "the echoed body differs");
    });
}

#[test]
fn h2c_head_204_errors_and_a_panic_answer_on_their_stream_and_the_connection_goes_on() {
    let s = server(h2c_limits());
    let (rt, send) = client(s.addr, 65_535);
    bounded(&rt, async {
        let head = request(&send, "HEAD", "/", None).await.unwrap();
        assert_eq!((head.status, head.body.len()), (200, 0));
        assert_eq!(head.headers["content-length"], "2");
        let none = request(&send, "GET", "/nocontent", None).await.unwrap();
        assert_eq!((none.status, none.body.len()), (204, 0));
        assert!(!none.headers.contains_key("content-length"));
        let missing = request(&send, "GET", "/missing", None).await.unwrap();
        assert_eq!(missing.status, 404);
        let text = String::from_utf8(missing.body).unwrap();
        assert!(text.contains("\"status\":404"), "{text}");
        let panicked = request(&send, "GET", "/panic", None).await.unwrap();
        assert_eq!(panicked.status, 500);
        let after = request(&send, "GET", "/", None).await.unwrap();
        assert_eq!((after.status, after.body), (200, b"ok".to_vec()));
    });
}

#[test]
fn a_client_reset_stream_leaves_the_connection_serving() {
    let s = server(h2c_limits());
    let (rt, send) = client(s.addr, 65_535);
    bounded(&rt, async {
        // A body promised and never sent, then the stream cancelled.
        let mut ready = send.clone().ready().await.unwrap();
        let req = http::Request::post("http://test.example/echo")
            .body(())
            .unwrap();
        let (resp, mut body) = ready.send_request(req, false).unwrap();
        body.send_data(Bytes::from_static(b"partial"), false)
            .unwrap();
        body.send_reset(h2::Reason::CANCEL);
        assert!(resp.await.is_err(), "a reset stream has no response");
        let after = request(&send, "GET", "/", None).await.unwrap();
        assert_eq!(after.status, 200);
    });
}

#[test]
fn a_drain_sends_goaway_and_lets_the_open_stream_finish() {
    let s = server(h2c_limits());
    let (rt, send) = client(s.addr, 65_535);
    bounded(&rt, async {
        // A stream in progress (its body not yet complete) when the drain starts.
        let mut ready = send.clone().ready().await.unwrap();
        let req = http::Request::post("http://test.example/echo")
            .body(())
            .unwrap();
        let (resp, mut body) = ready.send_request(req, false).unwrap();
        body.send_data(Bytes::from_static(b"first "), false)
            .unwrap();
        s.drain.start(s.rt.handle());
        // The server reads the rest of the body only after it queued the GOAWAY (one poll
        // of its connection does both, in that order).
        body.send_data(Bytes::from_static(b"second"), true).unwrap();
        let resp = resp.await.expect("the open stream completes");
        let mut recv = resp.into_body();
        let mut got = Vec::new();
        while let Some(c) = recv.data().await {
            got.extend_from_slice(&c.unwrap());
        }
        assert_eq!(got, b"first second");
        // The GOAWAY came before that response: no new stream is taken.
        assert!(request(&send, "GET", "/", None).await.is_err());
    });
}

#[test]
fn without_h2c_the_preface_is_refused_as_an_unsupported_version() {
    let s = server(Limits::default());
    let r = one(s.addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert_eq!(r.status, 505);
}
