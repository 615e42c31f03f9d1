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
    let (rt, send, _) = client_with_ping(addr, window);
    (rt, send)
}

/// [`client`], and the connection's PING handle: a PONG means the server has read
/// everything sent before the PING.
fn client_with_ping(addr: SocketAddr, window: u32) -> (Runtime, SendRequest<Bytes>, h2::PingPong) {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let (send, ping) = rt.block_on(async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (send, mut conn) = h2::client::Builder::new()
            .initial_window_size(window)
            .handshake::<_, Bytes>(TokioIo::new(stream))
            .await
            .expect("h2 handshake");
        let ping = conn.ping_pong().expect("a ping handle");
        anygate_runtime::spawn(async move {
            let _ = conn.await;
        });
        (send, ping)
    });
    (rt, send, ping)
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

/// A POST to `path` whose body is still to be sent: its response and its body's stream.
async fn open_post(
    send: &SendRequest<Bytes>,
    path: &str,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let mut ready = send.clone().ready().await.unwrap();
    let req = http::Request::post(format!("http://test.example{path}"))
        .body(())
        .unwrap();
    ready.send_request(req, false).unwrap()
}

/// A response's whole body.
async fn body_of(resp: http::Response<h2::RecvStream>) -> Vec<u8> {
    let mut recv = resp.into_body();
    let mut got = Vec::new();
    while let Some(c) = recv.data().await {
        let c = c.unwrap();
        let _ = recv.flow_control().release_capacity(c.len());
        got.extend_from_slice(&c);
    }
    got
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
        let (resp, mut body) = open_post(&send, "/echo").await;
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
    let (rt, send, mut ping) = client_with_ping(s.addr, 65_535);
    bounded(&rt, async {
        // A stream in progress (its body not yet complete) when the drain starts: the PONG
        // says the server has read its HEADERS, and taken it (in the same poll).
        let (resp, mut body) = open_post(&send, "/echo").await;
        body.send_data(Bytes::from_static(b"first "), false)
            .unwrap();
        ping.ping(h2::Ping::opaque()).await.expect("a PONG");
        s.drain.start(s.rt.handle());
        // The server reads the rest of the body only after it queued the GOAWAY (one poll
        // of its connection does both, in that order).
        body.send_data(Bytes::from_static(b"second"), true).unwrap();
        let got = body_of(resp.await.expect("the open stream completes")).await;
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

/// A hand-made HTTP/2 client that writes raw frames (for what a well-behaved client such as
/// `h2` never sends).
struct RawH2 {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
    /// The server closed the connection (as opposed to a read that timed out).
    eof: bool,
}

impl RawH2 {
    fn connect(addr: SocketAddr) -> Self {
        let mut stream = crate::support::connect(addr);
        use std::io::Write;
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .unwrap();
        Self {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    fn frame(&mut self, kind: u8, flags: u8, id: u32, payload: &[u8]) {
        use std::io::Write;
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(payload);
        self.stream.write_all(&f).unwrap();
    }

    /// The next frame: (type, flags, stream id, payload); `None` once the server closed.
    fn next(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        use std::io::Read;
        loop {
            if self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let id = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                    return Some((f[3], f[4], id, f[9..].to_vec()));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return None;
                }
                Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

const GOAWAY: u8 = 7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

#[test]
fn regression_rapid_reset_after_accept_closes_the_connection_with_enhance_your_calm() {
    let s = server(h2c_limits());
    let mut raw = RawH2::connect(s.addr);
    // POST /echo with its body still to come (the stream is taken and its work begins),
    // then a PING: its ACK means the server has read the HEADERS (and taken the stream)
    // before the reset is sent.
    let block: &[u8] = b"\x83\x86\x04\x05/echo\x01\x01a";
    let mut goaway = None;
    'streams: for i in 0..400u32 {
        let id = 2 * i + 1;
        raw.frame(1, 0x4, id, block);
        raw.frame(6, 0, 0, &i.to_be_bytes().repeat(2));
        loop {
            match raw.next() {
                None => break 'streams,
                Some((6, 0x1, _, _)) => break,
                Some((GOAWAY, _, _, p)) => {
                    goaway = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
                    break 'streams;
                }
                Some(_) => {}
            }
        }
        raw.frame(3, 0, id, &8u32.to_be_bytes()); // RST_STREAM(CANCEL)
    }
    if goaway.is_none() {
        // The last reset may be what tipped it: read what is left.
        while let Some((kind, _, _, p)) = raw.next() {
            if kind == GOAWAY {
                goaway = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
                break;
            }
        }
    }
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM), "the flood was not stopped");
    // The server goes on serving everyone else.
    let (rt, send) = client(s.addr, 65_535);
    bounded(&rt, async {
        let r = request(&send, "GET", "/", None).await.unwrap();
        assert_eq!(r.status, 200);
    });
}

#[test]
fn a_client_cancelling_a_few_streams_keeps_its_connection() {
    let s = server(h2c_limits());
    let (rt, send) = client(s.addr, 65_535);
    bounded(&rt, async {
        for _ in 0..150 {
            // Two normal streams, and one given up before its body was sent.
            for _ in 0..2 {
                let r = request(&send, "GET", "/", None).await.unwrap();
                assert_eq!(r.status, 200);
            }
            let (_resp, mut body) = open_post(&send, "/echo").await;
            body.send_reset(h2::Reason::CANCEL);
        }
        // 150 cancelled of 450 opened: past the floor, but not most of them.
        let r = request(&send, "GET", "/", None).await.unwrap();
        assert_eq!(r.status, 200);
    });
}

#[test]
fn regression_a_client_that_never_answers_the_goaway_ping_is_closed_after_the_head_timeout() {
    let s = server(Limits {
        idle_timeout: std::time::Duration::from_millis(300),
        head_timeout: std::time::Duration::from_millis(300),
        ..h2c_limits()
    });
    let mut raw = RawH2::connect(s.addr);
    // The client reads everything but never acknowledges a PING (h2 sends its last
    // GOAWAY only on that acknowledgement).
    let (mut goaway, mut ping) = (false, false);
    while let Some((kind, flags, _, _)) = raw.next() {
        goaway |= kind == GOAWAY;
        ping |= kind == 6 && flags & 1 == 0;
    }
    assert!(goaway && ping, "idle: GOAWAY and its PING");
    assert!(raw.eof, "the server never closed (the read timed out)");
}

/// An HPACK integer of `n` with a `prefix`-bit prefix (RFC 7541 §5.1).
fn hpack_int(n: usize, prefix: u32) -> Vec<u8> {
    let max = (1usize << prefix) - 1;
    if n < max {
        return vec![n as u8];
    }
    let (mut out, mut n) = (vec![max as u8], n - max);
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
    out
}

/// Reads frames until a GOAWAY (its code) or the close (`None`).
fn goaway_code(raw: &mut RawH2) -> Option<u32> {
    while let Some((kind, _, _, p)) = raw.next() {
        if kind == GOAWAY {
            return Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
        }
    }
    None
}

const GET_BLOCK: &[u8] = b"\x82\x86\x84\x01\x01a";

#[test]
fn a_continuation_flood_is_stopped_and_the_server_goes_on() {
    let s = server(h2c_limits());
    let mut raw = RawH2::connect(s.addr);
    // HEADERS without END_HEADERS, then CONTINUATION frames that never end the block
    // (CVE-2024-27316's class): the decoded list passes max_header_list_size early.
    raw.frame(1, 0x1, 1, GET_BLOCK);
    let field = b"\x00\x03x-a\x0abbbbbbbbbb";
    for _ in 0..20_000 {
        use std::io::Write;
        let mut f = vec![0, 0, field.len() as u8, 9, 0, 0, 0, 0, 1];
        f.extend_from_slice(field);
        if raw.stream.write_all(&f).is_err() {
            break; // closed under us: stopped
        }
    }
    assert_eq!(goaway_code(&mut raw), Some(ENHANCE_YOUR_CALM));
    let (rt, send) = client(s.addr, 65_535);
    bounded(&rt, async {
        assert_eq!(request(&send, "GET", "/", None).await.unwrap().status, 200);
    });
}

#[test]
fn an_hpack_bomb_is_refused_by_the_decoded_header_list_limit() {
    let s = server(h2c_limits());
    let mut raw = RawH2::connect(s.addr);
    // One 4 000-byte value added to the dynamic table, then referenced 3 000 times: 12 MB
    // decoded from 7 KB on the wire.
    let mut block = GET_BLOCK.to_vec();
    block.push(0x40);
    block.extend(hpack_int(5, 7));
    block.extend_from_slice(b"x-bmb");
    block.extend(hpack_int(4000, 7));
    block.extend(std::iter::repeat_n(b'a', 4000));
    block.extend(std::iter::repeat_n(0xbe, 3000)); // indexed: dynamic entry 62
    raw.frame(1, 0x5, 1, &block);
    let refused = goaway_code(&mut raw);
    assert!(
        refused == Some(ENHANCE_YOUR_CALM) || refused == Some(1),
        "the bomb was decoded: {refused:?}"
    );
    let (rt, send) = client(s.addr, 65_535);
    bounded(&rt, async {
        assert_eq!(request(&send, "GET", "/", None).await.unwrap().status, 200);
    });
}

#[test]
fn regression_an_empty_last_data_frame_ends_the_body_instead_of_being_an_empty_piece() {
    let s = server(h2c_limits());
    let (rt, send) = client(s.addr, 65_535);
    bounded(&rt, async {
        // No content-length; the body, then END_STREAM on an empty DATA frame of its own
        // (as Go, hyper and gRPC clients send it).
        let (resp, mut body) = open_post(&send, "/pieces").await;
        body.send_data(Bytes::from_static(b"abc"), false).unwrap();
        body.send_data(Bytes::new(), true).unwrap();
        let got = body_of(resp.await.unwrap()).await;
        assert_eq!(String::from_utf8(got).unwrap(), "3,");
    });
}

/// `POST /echo` (HPACK: POST, http, a literal `:path`, `:authority: a`).
const POST_ECHO: &[u8] = b"\x83\x86\x04\x05/echo\x01\x01a";

/// A control-frame flood of `count` frames from `send` (after a request, when it needs an
/// open stream), then what the server said.
fn flood(send: impl Fn(&mut RawH2, u32) -> bool, count: u32) -> Option<u32> {
    let s = server(h2c_limits());
    let mut raw = RawH2::connect(s.addr);
    // An open request stream (its body still to come), for the frames that need one.
    raw.frame(1, 0x4, 1, POST_ECHO);
    for i in 0..count {
        if !send(&mut raw, i) {
            break; // closed under us: stopped
        }
    }
    let code = goaway_code(&mut raw);
    // The server goes on for everyone else.
    let (rt, client) = client(s.addr, 65_535);
    bounded(&rt, async {
        assert_eq!(
            request(&client, "GET", "/", None).await.unwrap().status,
            200
        );
    });
    code
}

/// Writes one frame; `false` once the server closed the connection.
fn try_frame(raw: &mut RawH2, kind: u8, flags: u8, id: u32, payload: &[u8]) -> bool {
    use std::io::Write;
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(payload);
    raw.stream.write_all(&f).is_ok()
}

#[test]
fn control_frame_floods_are_each_stopped_with_enhance_your_calm() {
    type Sender = fn(&mut RawH2, u32) -> bool;
    let floods: [(&str, Sender); 6] = [
        ("PING", |r, i| {
            try_frame(r, 6, 0, 0, &u64::from(i).to_be_bytes())
        }),
        ("SETTINGS", |r, _| {
            try_frame(r, 4, 0, 0, &[0, 3, 0, 0, 0, 100])
        }),
        ("WINDOW_UPDATE", |r, _| try_frame(r, 8, 0, 0, &[0, 0, 0, 1])),
        ("empty DATA", |r, _| try_frame(r, 0, 0, 1, b"")),
        ("PRIORITY", |r, _| try_frame(r, 2, 0, 1, &[0, 0, 0, 0, 16])),
        ("unknown type", |r, _| try_frame(r, 0xfa, 0, 0, b"x")),
    ];
    for (what, send) in floods {
        assert_eq!(
            flood(send, 20_000),
            Some(ENHANCE_YOUR_CALM),
            "a {what} flood was not stopped"
        );
    }
}

#[test]
fn a_stream_whose_client_never_opens_its_window_is_reset_and_the_connection_goes_on() {
    let limits = Limits {
        idle_timeout: std::time::Duration::from_millis(300),
        min_send_rate: anygate_http::MinRate::OFF,
        ..h2c_limits()
    };
    let s = server(limits);
    let mut raw = RawH2::connect(s.addr);
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no DATA may reach this client.
    raw.frame(4, 0, 0, &[0, 4, 0, 0, 0, 0]);
    // POST /echo with 20 000 bytes: the answer is as large.
    raw.frame(1, 0x4, 1, POST_ECHO);
    raw.frame(0, 0x1, 1, &[7u8; 16_000]);
    let mut reset = None;
    while let Some((kind, _, id, p)) = raw.next() {
        if kind == 3 && id == 1 {
            reset = Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
            break;
        }
        assert_ne!(kind, 0, "DATA past a window of 0");
    }
    assert_eq!(
        reset,
        Some(0x8),
        "the stalled stream was not reset (CANCEL)"
    );
    // The connection still answers.
    raw.frame(6, 0, 0, b"12345678");
    let pong = std::iter::from_fn(|| raw.next()).find(|f| f.0 == 6);
    assert_eq!(pong.map(|f| (f.1, f.3)), Some((0x1, b"12345678".to_vec())));
}

#[test]
fn made_you_reset_streams_the_client_makes_the_server_reset_are_bounded() {
    // MadeYouReset (CVE-2025-8671): each stream is malformed by the client (a request head
    // without `:path` is a stream error), so that the server resets it itself: past
    // `max_local_error_reset_streams` the connection is closed with ENHANCE_YOUR_CALM.
    let s = server(h2c_limits());
    let mut raw = RawH2::connect(s.addr);
    for i in 0..3_000u32 {
        if !try_frame(&mut raw, 1, 0x5, 2 * i + 1, b"\x82\x86\x01\x01a") {
            break; // closed under us
        }
    }
    assert_eq!(
        goaway_code(&mut raw),
        Some(ENHANCE_YOUR_CALM),
        "the server went on resetting streams"
    );
    let (rt, client) = client(s.addr, 65_535);
    bounded(&rt, async {
        assert_eq!(
            request(&client, "GET", "/", None).await.unwrap().status,
            200
        );
    });
}

#[test]
fn streams_past_max_concurrent_streams_are_refused_and_the_connection_goes_on() {
    let s = server(h2c_limits());
    let max = Http2::default().max_concurrent_streams;
    let mut raw = RawH2::connect(s.addr);
    // Streams whose bodies never come: each holds its place.
    for i in 0..max + 20 {
        raw.frame(1, 0x4, 2 * i + 1, POST_ECHO);
    }
    let mut refused = 0;
    while refused < 20 {
        let Some((kind, _, id, p)) = raw.next() else {
            break;
        };
        if kind == 3 && u32::from_be_bytes([p[0], p[1], p[2], p[3]]) == 7 {
            assert!(id > 2 * max, "stream {id} refused below the limit");
            refused += 1;
        }
    }
    assert_eq!(
        refused, 20,
        "streams past the limit were not refused (REFUSED_STREAM)"
    );
    // The connection still answers.
    raw.frame(6, 0, 0, b"pingpong");
    let pong = std::iter::from_fn(|| raw.next()).find(|f| f.0 == 6 && f.1 & 0x1 != 0);
    assert_eq!(pong.map(|f| f.3), Some(b"pingpong".to_vec()));
}
