//! The proxy action end to end, against upstreams written here over raw TCP (so that they
//! can misbehave on purpose): URL building, forwarding headers, keep-alive, bodies both
//! ways, errors and timeouts, Expect, cancellation.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::http::{LIMIT, Reader, Resp, connect, one};
use crate::support::in_process;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The head, as text (request line and fields).
    pub head: String,
    /// The body, decoded.
    pub body: Vec<u8>,
    /// The raw chunked framing's trailer section, if the body was chunked.
    pub trailers: Option<String>,
}

impl Seen {
    pub fn request_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap_or_default()
    }

    /// Every value of field `name` (lower-case names are compared case-insensitively).
    pub fn fields(&self, name: &str) -> Vec<&str> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }
}

/// What an upstream does with a request: write to the stream; return whether to keep the
/// connection.
type Handler = dyn Fn(&Seen, &mut TcpStream) -> bool + Send + Sync;

/// A raw upstream on a free loopback port, stopped on drop.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// Requests, in arrival order.
    pub seen: mpsc::Receiver<Seen>,
    /// Connections that ended (the peer closed, or it was reset).
    pub closed: mpsc::Receiver<()>,
    stop: Arc<AtomicBool>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Starts an upstream that answers each request with `handler`.
pub fn upstream(
    handler: impl Fn(&Seen, &mut TcpStream) -> bool + Send + Sync + 'static,
) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (seen_tx, seen) = mpsc::channel();
    let (closed_tx, closed) = mpsc::channel();
    let handler: Arc<Handler> = Arc::new(handler);
    {
        let (accepted, stop) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (handler, seen_tx, closed_tx) =
                    (handler.clone(), seen_tx.clone(), closed_tx.clone());
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(LIMIT)).unwrap();
                    let mut buf = Vec::new();
                    while let Some(seen) = read_request(&mut stream, &mut buf) {
                        let _ = seen_tx.send(seen.clone());
                        if !handler(&seen, &mut stream) {
                            break;
                        }
                    }
                    let _ = closed_tx.send(());
                });
            }
        });
    }
    Upstream {
        addr,
        accepted,
        seen,
        closed,
        stop,
    }
}

/// Reads one request (head and body) from `stream`; `None` at the end of the stream.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    let end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if !fill(stream, buf) {
            return None;
        }
    };
    let head = String::from_utf8(buf.drain(..end).collect()).unwrap();
    let mut seen = Seen {
        head,
        body: Vec::new(),
        trailers: None,
    };
    if let Some(len) = seen.fields("content-length").first() {
        let len: usize = len.parse().unwrap();
        while buf.len() < len {
            assert!(fill(stream, buf), "upstream: body cut short");
        }
        seen.body = buf.drain(..len).collect();
    } else if seen
        .fields("transfer-encoding")
        .first()
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let (body, trailers) = read_chunked(stream, buf);
        seen.body = body;
        seen.trailers = Some(trailers);
    }
    Some(seen)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 64 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Decodes a chunked body from `buf` (filled from `stream`): the data and the trailer
/// section as text.
fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (Vec<u8>, String) {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            assert!(fill(stream, buf), "chunked: size line cut short");
        };
        let line = String::from_utf8(buf.drain(..line_end + 2).collect()).unwrap();
        let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap(), 16).unwrap();
        if size == 0 {
            let end = loop {
                if buf.starts_with(b"\r\n") {
                    break 2;
                }
                if let Some(i) = find(buf, b"\r\n\r\n") {
                    break i + 4;
                }
                assert!(fill(stream, buf), "chunked: trailers cut short");
            };
            let trailers = String::from_utf8(buf.drain(..end).collect()).unwrap();
            return (body, trailers);
        }
        while buf.len() < size + 2 {
            assert!(fill(stream, buf), "chunked: data cut short");
        }
        body.extend(buf.drain(..size));
        assert_eq!(buf.drain(..2).collect::<Vec<_>>(), b"\r\n");
    }
}

/// Answers 200 with `body`.
pub fn reply(stream: &mut TcpStream, extra: &str, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 200 OK\r\n{extra}content-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).is_ok() && stream.write_all(body).is_ok()
}

/// An upstream answering every request with its request line as the body.
fn request_line_echo() -> Upstream {
    upstream(|seen, s| reply(s, "", seen.request_line().as_bytes()))
}

fn gateway(routes: &str, upstream: &Upstream, proxy: &str) -> anygate::serve::Server {
    gateway_with("", routes, upstream, proxy)
}

/// [`gateway`] with more `server` settings (`server_extra`: `, key: value`).
fn gateway_with(
    server_extra: &str,
    routes: &str,
    upstream: &Upstream,
    proxy: &str,
) -> anygate::serve::Server {
    let yaml = format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1{server_extra}}}\nproxy:\n  upstreams:\n    up:\n      targets: [\"{}\"]\n{proxy}routes:\n{routes}",
        upstream.addr
    );
    in_process(&yaml)
}

fn get(addr: SocketAddr, target: &str, fields: &str) -> Resp {
    one(
        addr,
        format!("GET {target} HTTP/1.1\r\nhost: gw.test\r\n{fields}\r\n").as_bytes(),
    )
}

#[test]
fn urls_follow_spec_section_5() {
    let up = request_line_echo();
    let port = up.addr.port();
    let routes = format!(
        r#"  "/v1/": "http://up/"
  "/base/": "http://up/inner/"
  "/noslash/": "http://up/inner"
  "/users/:id": "http://up/api/"
  "/files/*": "http://up/store"
  "/ping": "http://up/pong"
  "/bare": "http://up"
  "/direct/": "http://127.0.0.1:{port}/d/"
"#
    );
    let s = gateway(&routes, &up, "");
    let addr = s.addrs()[0];
    for (target, expected) in [
        ("/v1", "GET / HTTP/1.1"),
        ("/v1/", "GET / HTTP/1.1"),
        ("/v1/a/b?x=1", "GET /a/b?x=1 HTTP/1.1"),
        ("/base/a", "GET /inner/a HTTP/1.1"),
        ("/base", "GET /inner/ HTTP/1.1"),
        ("/noslash/a/b", "GET /inner/a/b HTTP/1.1"),
        ("/users/7", "GET /api/users/7 HTTP/1.1"),
        ("/users/7?full=1", "GET /api/users/7?full=1 HTTP/1.1"),
        ("/files/x/y.txt", "GET /store/x/y.txt HTTP/1.1"),
        ("/files/", "GET /store HTTP/1.1"),
        ("/ping", "GET /pong HTTP/1.1"),
        ("/ping?a=%20b&c", "GET /pong?a=%20b&c HTTP/1.1"),
        ("/bare", "GET /bare HTTP/1.1"),
        ("/bare?q=%2F", "GET /bare?q=%2F HTTP/1.1"),
        ("/direct/z", "GET /d/z HTTP/1.1"),
        // Normalised before matching and forwarding: dot segments gone, %2F kept.
        ("/v1/a/../b/%2F/c", "GET /b/%2F/c HTTP/1.1"),
    ] {
        let resp = get(addr, target, "");
        assert_eq!(resp.status, 200, "{target}");
        assert_eq!(resp.body_str(), expected, "{target}");
    }
}

#[test]
fn spec_example_ping_goes_to_the_auth_pool() {
    let up = request_line_echo();
    let yaml = format!(
        "server: {{listen: \"127.0.0.1:0\"}}\nproxy:\n  upstreams:\n    auth:\n      targets: [\"{}\"]\nroutes:\n  \"/ping\": \"http://auth/ping\"\n  \"GET /fastest/ever/ok\": \"OK\"\n",
        up.addr
    );
    let s = in_process(&yaml);
    let resp = get(s.addrs()[0], "/ping", "");
    assert_eq!(
        (resp.status, resp.body_str().as_str()),
        (200, "GET /ping HTTP/1.1")
    );
    let seen = up.seen.recv_timeout(LIMIT).unwrap();
    assert_eq!(seen.fields("host"), ["auth"]);
}

#[test]
fn forwarding_headers_and_hop_by_hop_stripping() {
    let up = upstream(|_, s| {
        reply(
            s,
            "connection: x-secret\r\nx-secret: 1\r\nkeep-alive: timeout=5\r\nx-kept: yes\r\ndate: Mon, 01 Jan 2001 00:00:00 GMT\r\n",
            b"ok",
        )
    });
    // The test client is a trusted proxy here: its chains are kept and extended.
    let s = gateway_with(
        ", trusted_proxies: [127.0.0.1]",
        "  \"/\": \"http://up/\"\n",
        &up,
        "",
    );
    let resp = get(
        s.addrs()[0],
        "/x",
        "x-forwarded-for: 10.0.0.1, 10.0.0.2\r\nforwarded: for=10.0.0.1\r\nx-request-id: req-12345678\r\n\
         connection: keep-alive, x-drop\r\nx-drop: 1\r\nkeep-alive: timeout=9\r\nte: trailers\r\n\
         proxy-connection: keep-alive\r\nupgrade: h2c\r\nx-custom: kept\r\n",
    );
    assert_eq!(resp.status, 200);
    let seen = up.seen.recv_timeout(LIMIT).unwrap();
    assert_eq!(
        seen.fields("x-forwarded-for"),
        ["10.0.0.1, 10.0.0.2, 127.0.0.1"]
    );
    assert_eq!(seen.fields("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.fields("x-forwarded-host"), ["gw.test"]);
    assert_eq!(
        seen.fields("forwarded"),
        ["for=10.0.0.1, for=127.0.0.1;host=\"gw.test\";proto=http"]
    );
    assert_eq!(seen.fields("x-request-id"), ["req-12345678"]);
    assert_eq!(seen.fields("host"), ["up"]);
    assert_eq!(seen.fields("x-custom"), ["kept"]);
    for gone in [
        "connection",
        "x-drop",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
        "via",
    ] {
        assert!(
            seen.fields(gone).is_empty(),
            "{gone} went upstream: {}",
            seen.head
        );
    }
    // And on the way back.
    assert_eq!(resp.header("x-kept"), Some("yes"));
    assert_eq!(resp.header("x-request-id"), Some("req-12345678"));
    for gone in ["x-secret", "keep-alive", "connection"] {
        assert!(resp.header(gone).is_none(), "{gone} came back: {resp:?}");
    }
    let dates: Vec<_> = resp
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("date"))
        .collect();
    assert_eq!(dates.len(), 1, "one Date: {resp:?}");
    assert_ne!(dates[0].1, "Mon, 01 Jan 2001 00:00:00 GMT");
}

#[test]
fn host_header_options_and_via() {
    let up = upstream(|_, s| reply(s, "", b"ok"));
    for (setting, expected) in [
        ("", "up"),
        ("  host: client\n", "gw.test"),
        ("  host: \"api.internal:8443\"\n", "api.internal:8443"),
    ] {
        let s = gateway(
            "  \"/\": \"http://up/\"\n",
            &up,
            &format!("  via: true\n{setting}"),
        );
        let resp = get(s.addrs()[0], "/", "via: 1.0 edge\r\n");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("via"), Some("1.1 anygate"));
        let seen = up.seen.recv_timeout(LIMIT).unwrap();
        assert_eq!(seen.fields("host"), [expected], "{setting}");
        assert_eq!(seen.fields("via"), ["1.0 edge", "1.1 anygate"]);
    }
}

#[test]
fn keep_alive_reuses_one_upstream_connection() {
    let up = upstream(|seen, s| reply(s, "", seen.request_line().as_bytes()));
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    let mut client = Reader::new(connect(s.addrs()[0]));
    for i in 0..20 {
        client.send(format!("GET /n{i} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes());
        let resp = client.response(false).unwrap();
        assert_eq!(resp.body_str(), format!("GET /n{i} HTTP/1.1"));
    }
    // New client connections reuse it too.
    for _ in 0..5 {
        assert_eq!(get(s.addrs()[0], "/", "").status, 200);
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn a_pooled_connection_closed_by_the_upstream_is_replaced() {
    // Each connection serves one request, then the upstream closes it (without saying so).
    let up = upstream(|_, s| {
        reply(s, "", b"once");
        false
    });
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    for _ in 0..5 {
        let resp = get(s.addrs()[0], "/", "");
        assert_eq!((resp.status, resp.body_str().as_str()), (200, "once"));
        up.closed.recv_timeout(LIMIT).unwrap();
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 5);
}

/// An upstream that answers "fine" to the first request of each connection, then reads the
/// second and closes without answering.
fn second_request_unanswered() -> Upstream {
    let count = Arc::new(AtomicUsize::new(0));
    upstream(move |_, s| {
        if count.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
            return false;
        }
        reply(s, "", b"fine")
    })
}

/// Accepts one connection on `listener` and reads until the end of a request head; returns
/// the stream and what was read (the head, and any body bytes that came with it).
fn accept_head(listener: &TcpListener) -> (TcpStream, Vec<u8>) {
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let mut buf = Vec::new();
    while find(&buf, b"\r\n\r\n").is_none() {
        assert!(fill(&mut s, &mut buf), "the head was cut short");
    }
    (s, buf)
}

#[test]
fn a_dead_pooled_connection_is_retried_once_on_a_fresh_one() {
    // The upstream reads the second request of a connection and closes without answering:
    // the gateway may not have seen the close when it reused the connection; the request
    // (no body yet sent) goes again on a new connection.
    let up = second_request_unanswered();
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    for _ in 0..4 {
        let resp = get(s.addrs()[0], "/", "");
        assert_eq!((resp.status, resp.body_str().as_str()), (200, "fine"));
    }
}

#[test]
fn bodies_stream_both_ways_chunked_and_fixed() {
    let up = upstream(|seen, s| {
        if seen.request_line().starts_with("POST /chunked-back") {
            let mut out =
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n".to_vec();
            for piece in seen.body.chunks(1000) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\nx-sum: 42\r\n\r\n");
            s.write_all(&out).is_ok()
        } else {
            reply(s, "", &seen.body)
        }
    });
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    let addr = s.addrs()[0];
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();

    // Content-Length up, Content-Length down.
    let mut raw = format!(
        "POST /fixed HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n",
        data.len()
    )
    .into_bytes();
    raw.extend_from_slice(&data);
    let resp = one(addr, &raw);
    assert_eq!(resp.body, data);
    let seen = up.seen.recv_timeout(LIMIT).unwrap();
    assert_eq!(seen.fields("content-length"), [data.len().to_string()]);
    assert_eq!(seen.body, data);

    // Chunked up (re-framed), chunked down with its trailer, relayed as it came.
    let mut raw =
        b"POST /chunked-back HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for piece in data.chunks(7000) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let mut client = connect(addr);
    client.write_all(&raw).unwrap();
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        assert!(fill(&mut client, &mut buf));
    };
    let head = String::from_utf8(buf.drain(..end).collect()).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    let (body, trailers) = read_chunked(&mut client, &mut buf);
    assert_eq!(body, data);
    assert_eq!(trailers, "x-sum: 42\r\n\r\n");
    let seen = up.seen.recv_timeout(LIMIT).unwrap();
    assert_eq!(seen.fields("transfer-encoding"), ["chunked"]);
    assert_eq!(seen.body, data);

    // An HTTP/1.0 client cannot take chunked: the body comes decoded, ended by the close.
    let mut raw = format!(
        "POST /chunked-back HTTP/1.0\r\ncontent-length: {}\r\n\r\n",
        data.len()
    )
    .into_bytes();
    raw.extend_from_slice(&data);
    let mut client = connect(addr);
    client.write_all(&raw).unwrap();
    let mut all = Vec::new();
    client.read_to_end(&mut all).unwrap();
    let end = find(&all, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..end]).into_owned();
    assert!(!head.contains("chunked"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(&all[end..], &data[..]);
}

#[test]
fn head_and_bodiless_statuses_relay_no_body() {
    let up = upstream(|seen, s| {
        let line = seen.request_line();
        let out: &[u8] = if line.starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"
        } else if line.contains("/nc") {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        } else {
            b"HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n"
        };
        s.write_all(out).is_ok()
    });
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    let mut client = Reader::new(connect(s.addrs()[0]));
    client.send(b"HEAD /h HTTP/1.1\r\nhost: t\r\n\r\n");
    let r = client.response(true).unwrap();
    assert_eq!((r.status, r.header("content-length")), (200, Some("1234")));
    client.send(b"GET /nc HTTP/1.1\r\nhost: t\r\n\r\n");
    assert_eq!(client.response(false).unwrap().status, 204);
    client.send(b"GET /nm HTTP/1.1\r\nhost: t\r\n\r\n");
    let r = client.response(false).unwrap();
    assert_eq!((r.status, r.header("etag")), (304, Some("\"x\"")));
    // The same client connection and the same upstream connection served all three.
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

fn error_code(resp: &Resp) -> String {
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    v["error"]["code"].as_str().unwrap().to_owned()
}

#[test]
fn refused_reset_and_garbage_are_502() {
    let free = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let reset = upstream(|_, s| {
        socket2::SockRef::from(&*s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        false
    });
    let garbage = upstream(|_, s| {
        let _ = s.write_all(b"SPDY/9 ok\r\n\r\n");
        false
    });
    let cut = upstream(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort");
        false
    });
    let routes = format!(
        "  \"/refused\": \"http://{free}/\"\n  \"/reset\": \"http://{}/\"\n  \"/garbage\": \"http://{}/\"\n  \"/cut\": \"http://{}/\"\n",
        reset.addr, garbage.addr, cut.addr
    );
    let s = gateway(&routes, &reset, "");
    let addr = s.addrs()[0];
    for (path, code) in [
        ("/refused", "AG-UPS-5021"),
        ("/reset", "AG-UPS-5022"),
        ("/garbage", "AG-UPS-5023"),
    ] {
        let resp = get(addr, path, "");
        assert_eq!(resp.status, 502, "{path}");
        assert_eq!(error_code(&resp), code, "{path}");
        let body = resp.body_str();
        assert!(
            !body.contains("127.0.0.1") && !body.contains(&format!(":{}", free.port())),
            "{body}"
        );
        assert!(body.contains(&format!("\"route\":\"* {path}\"")), "{body}");
    }
    // A response cut short after its head: the client connection closes before the
    // announced length.
    let mut client = connect(addr);
    client
        .write_all(b"GET /cut HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    client.read_to_end(&mut all).unwrap();
    assert!(all.starts_with(b"HTTP/1.1 200"));
    assert!(
        all.ends_with(b"\r\n\r\nshort"),
        "{:?}",
        String::from_utf8_lossy(&all)
    );
}

#[test]
fn connect_read_and_total_timeouts_are_504() {
    // A listener whose accept queue is full drops further SYNs: connecting hangs.
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    full.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..3 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&full_addr.into());
        fillers.push(s);
    }
    let silent = upstream(|_, s| {
        // Never answers; holds the connection until the gateway gives up.
        let mut b = [0u8; 1];
        let _ = s.read(&mut b);
        false
    });
    let routes = format!(
        "  \"/connect\": \"http://{full_addr}/\"\n  \"/read\": \"http://{}/\"\n",
        silent.addr
    );
    let proxy = "  timeouts: {connect: 300ms, read: 300ms}\n";
    let s = gateway(&routes, &silent, proxy);
    let resp = get(s.addrs()[0], "/connect", "");
    assert_eq!(
        (resp.status, error_code(&resp).as_str()),
        (504, "AG-UPS-5041")
    );
    let resp = get(s.addrs()[0], "/read", "");
    assert_eq!(
        (resp.status, error_code(&resp).as_str()),
        (504, "AG-UPS-5042")
    );

    let proxy = "  timeouts: {read: 10s, total: 300ms}\n";
    let s = gateway(&routes, &silent, proxy);
    let resp = get(s.addrs()[0], "/read", "");
    assert_eq!(
        (resp.status, error_code(&resp).as_str()),
        (504, "AG-UPS-5044")
    );
}

#[test]
fn max_conns_bounds_a_target_with_503() {
    let release = Arc::new(std::sync::Barrier::new(2));
    let held = release.clone();
    let up = upstream(move |_, s| {
        held.wait();
        reply(s, "", b"late")
    });
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "  max_conns: 1\n");
    let addr = s.addrs()[0];
    let mut first = Reader::new(connect(addr));
    first.send(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n");
    up.seen.recv_timeout(LIMIT).unwrap();
    let resp = get(addr, "/", "");
    assert_eq!(
        (resp.status, error_code(&resp).as_str()),
        (503, "AG-UPS-5031")
    );
    release.wait();
    assert_eq!(first.response(false).unwrap().body_str(), "late");
}

#[test]
fn a_client_that_leaves_cancels_the_upstream_request() {
    let up = upstream(|_, s| {
        // Wait for the gateway to give up on us: the read ends (EOF) when it closes.
        let mut b = [0u8; 1];
        let _ = s.read(&mut b);
        false
    });
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    let mut client = connect(s.addrs()[0]);
    client
        .write_all(b"GET /wait HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    up.seen.recv_timeout(LIMIT).unwrap();
    client.shutdown(Shutdown::Both).unwrap();
    drop(client);
    up.closed
        .recv_timeout(LIMIT)
        .expect("the upstream connection closes when the client leaves");
}

#[test]
fn expect_100_continue_is_passed_through() {
    let up = upstream(|_, s| reply(s, "", b"ok"));
    // A raw upstream that answers 100 first, then reads the body.
    let continuing = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, mut buf) = accept_head(&l);
            let head = String::from_utf8_lossy(&buf).to_lowercase();
            assert!(head.contains("expect: 100-continue"), "{head}");
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
            let end = find(&buf, b"\r\n\r\n").unwrap() + 4;
            while buf.len() < end + 5 {
                assert!(fill(&mut s, &mut buf));
            }
            assert_eq!(&buf[end..], b"hello");
            s.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok")
                .unwrap();
        });
        addr
    };
    // And one that refuses the body: it answers as soon as it has the head, and reports
    // whatever else it received before the gateway closed the connection.
    let (body_tx, body_rx) = mpsc::channel();
    let refusing = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, mut buf) = accept_head(&l);
            s.write_all(b"HTTP/1.1 417 Expectation Failed\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            while fill(&mut s, &mut buf) {}
            let end = find(&buf, b"\r\n\r\n").unwrap() + 4;
            body_tx.send(buf[end..].to_vec()).unwrap();
        });
        addr
    };
    let routes = format!(
        "  \"/c\": \"http://{continuing}/\"\n  \"/r\": \"http://{refusing}/\"\n  \"/\": \"http://up/\"\n"
    );
    let s = gateway(&routes, &up, "");
    let addr = s.addrs()[0];

    let mut client = Reader::new(connect(addr));
    client
        .send(b"POST /c HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n");
    let interim = client.response(false).unwrap();
    assert_eq!(interim.status, 100);
    client.send(b"hello");
    let resp = client.response(false).unwrap();
    assert_eq!((resp.status, resp.body_str().as_str()), (201, "ok"));

    let mut client = Reader::new(connect(addr));
    client
        .send(b"POST /r HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n");
    let resp = client.response(false).unwrap();
    assert_eq!(resp.status, 417);
    assert_eq!(resp.header("connection"), Some("close"));
    client.assert_closed();
    let upstream_got = body_rx.recv_timeout(LIMIT).unwrap();
    assert!(
        upstream_got.is_empty(),
        "the body was not sent: {upstream_got:?}"
    );
}

#[test]
fn a_host_name_target_is_resolved() {
    let up = request_line_echo();
    let routes = format!("  \"/l/\": \"http://localhost:{}/\"\n", up.addr.port());
    // `localhost` may resolve to ::1 first, where nothing listens: the next address is tried.
    let s = gateway(&routes, &up, "  dns_ttl: 1s\n");
    for _ in 0..3 {
        let resp = get(s.addrs()[0], "/l/x", "");
        assert_eq!(
            (resp.status, resp.body_str().as_str()),
            (200, "GET /x HTTP/1.1")
        );
    }
}

/// Kills a child process on drop (the test's cleanup, also when it fails).
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const WS_ECHO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/ws_echo.py");

/// The real WebSocket echo server of `ws_echo.py` (stopped on drop), and its port.
pub fn ws_echo_server() -> (Child, u16) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut server = Child(
        Command::new("python3")
            .args([WS_ECHO, "server"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs"),
    );
    let mut line = String::new();
    std::io::BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap_or_else(|_| {
        panic!("the WebSocket server did not start (is the `websockets` package installed? scripts/test installs it)")
    });
    (server, port)
}

/// Runs `ws_echo.py`'s client against `url` (with `env` set) and asserts that every echo
/// came back.
pub fn ws_echo_client(url: &str, env: &[(&str, &std::path::Path)]) {
    let mut cmd = std::process::Command::new("python3");
    cmd.args([WS_ECHO, "client", url]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let client = cmd.output().expect("python3 runs");
    assert!(
        client.status.success(),
        "client failed: {}{}",
        String::from_utf8_lossy(&client.stdout),
        String::from_utf8_lossy(&client.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&client.stdout).trim(), "ok");
}

#[test]
fn a_websocket_echo_passes_through_the_tunnel() {
    let (_server, port) = ws_echo_server();
    let up = request_line_echo();
    let routes = format!("  \"/ws/\": \"http://127.0.0.1:{port}/\"\n");
    let s = gateway(&routes, &up, "  via: true\n");
    ws_echo_client(&format!("ws://{}/ws/echo", s.addrs()[0]), &[]);
}

/// An upstream that switches to a raw protocol (`101`, then `first`) and echoes what comes
/// until the gateway closes the tunnel.
pub fn raw_upgrade_echo() -> Upstream {
    upstream(|_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: raw\r\nconnection: upgrade\r\n\r\nfirst",
        );
        let mut b = [0u8; 64];
        while let Ok(n @ 1..) = s.read(&mut b) {
            if s.write_all(&b[..n]).is_err() {
                break;
            }
        }
        false
    })
}

#[test]
fn an_idle_tunnel_is_closed_after_the_read_timeout() {
    let up = raw_upgrade_echo();
    let s = gateway(
        "  \"/\": \"http://up/\"\n",
        &up,
        "  timeouts: {read: 300ms}\n",
    );
    let mut client = connect(s.addrs()[0]);
    client
        .write_all(
            b"GET /t HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: raw\r\n\r\nearly",
        )
        .unwrap();
    let mut buf = Vec::new();
    while find(&buf, b"first").is_none() {
        assert!(fill(&mut client, &mut buf));
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("upgrade: raw\r\n") && head.contains("connection: upgrade\r\n"),
        "{head}"
    );
    let seen = up.seen.recv_timeout(LIMIT).unwrap();
    assert_eq!(seen.fields("upgrade"), ["raw"]);
    assert_eq!(seen.fields("connection"), ["upgrade"]);
    // Bytes sent with the head, and later ones, go through both ways.
    while find(&buf, b"early").is_none() {
        assert!(fill(&mut client, &mut buf));
    }
    client.write_all(b"later").unwrap();
    while find(&buf, b"later").is_none() {
        assert!(fill(&mut client, &mut buf));
    }
    // Then silence: the gateway closes both sides.
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    up.closed.recv_timeout(LIMIT).unwrap();
}

/// A 1 MiB block repeated to make large bodies; receivers check what they get against it.
fn pattern() -> Vec<u8> {
    (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Reads exactly `len` bytes (after `already`, bytes received with the head) and checks
/// them against [`pattern`]; returns how many matched before the first difference.
fn read_pattern(stream: &mut TcpStream, already: &[u8], len: u64) -> u64 {
    let block = pattern();
    let mut offset = 0u64;
    let check = |data: &[u8], offset: &mut u64| -> bool {
        let mut data = data;
        while !data.is_empty() {
            let at = (*offset % block.len() as u64) as usize;
            let n = data.len().min(block.len() - at);
            if data[..n] != block[at..at + n] {
                return false;
            }
            *offset += n as u64;
            data = &data[n..];
        }
        true
    };
    if !check(already, &mut offset) {
        return offset;
    }
    let mut buf = vec![0u8; 256 * 1024];
    while offset < len {
        let want = buf.len().min((len - offset) as usize);
        match stream.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !check(&buf[..n], &mut offset) {
                    break;
                }
            }
        }
    }
    offset
}

/// Writes `len` bytes of [`pattern`].
fn write_pattern(stream: &mut TcpStream, len: u64) -> bool {
    let block = pattern();
    let mut left = len;
    while left > 0 {
        let n = block.len().min(left as usize);
        if stream.write_all(&block[..n]).is_err() {
            return false;
        }
        left -= n as u64;
    }
    true
}

/// Peak resident memory of a process, from `/proc/PID/status` (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Size of the large-body test: 2 GiB (`ANYGATE_BIG_BODY=10GiB`-style overrides, in bytes,
/// for the longer run reported in the issue note).
fn big_body_len() -> u64 {
    std::env::var("ANYGATE_BIG_BODY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2 << 30)
}

#[test]
fn two_gib_up_and_down_stream_in_bounded_memory() {
    let len = big_body_len();
    // The upstream: counts and checks an upload, or sends a download, on raw sockets.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                s.set_read_timeout(Some(LIMIT)).unwrap();
                let mut buf = Vec::new();
                while let Some(end) = loop {
                    if let Some(i) = find(&buf, b"\r\n\r\n") {
                        break Some(i + 4);
                    }
                    if !fill(&mut s, &mut buf) {
                        break None;
                    }
                } {
                    let head = String::from_utf8(buf.drain(..end).collect()).unwrap();
                    if head.starts_with("POST") {
                        let got = read_pattern(&mut s, &std::mem::take(&mut buf), len);
                        let body = got.to_string();
                        let out = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(out.as_bytes()).is_err() {
                            return;
                        }
                    } else {
                        let out = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
                        if s.write_all(out.as_bytes()).is_err() || !write_pattern(&mut s, len) {
                            return;
                        }
                    }
                }
            });
        }
    });
    let gw = crate::support::Gateway::start(&format!(
        "server: {{listen: \"127.0.0.1:0\", limits: {{max_body: 0}}}}\nroutes:\n  \"/\": \"http://{up_addr}/\"\n"
    ));

    // Upload: Content-Length, written while the gateway streams it on. The response comes
    // after the whole body: allow a second per 128 MiB for it.
    let mut client = connect(gw.addr);
    client
        .set_read_timeout(Some(LIMIT.max(Duration::from_secs(len >> 27))))
        .unwrap();
    let writer = {
        let mut w = client.try_clone().unwrap();
        std::thread::spawn(move || {
            w.write_all(
                format!("POST /up HTTP/1.1\r\nhost: t\r\ncontent-length: {len}\r\n\r\n").as_bytes(),
            )
            .unwrap();
            assert!(write_pattern(&mut w, len));
        })
    };
    let mut reader = Reader::new(client.try_clone().unwrap());
    let resp = reader.response(false).unwrap();
    writer.join().unwrap();
    assert_eq!((resp.status, resp.body_str()), (200, len.to_string()));

    // Download on the same connection.
    client
        .write_all(b"GET /down HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        assert!(fill(&mut client, &mut buf));
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    assert!(
        head.contains(&format!("content-length: {len}\r\n")),
        "{head}"
    );
    assert_eq!(read_pattern(&mut client, &buf[end..], len), len);

    let peak = peak_rss_kib(gw.child.id());
    eprintln!("two_gib_up_and_down: {len} bytes each way, gateway peak RSS {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn a_content_length_named_in_connection_still_frames_the_response() {
    // Review finding: the relayed Content-Length was copied from the fields, so an upstream
    // naming it in `Connection` left the client with no framing on a keep-alive connection.
    let up = upstream(|_, s| {
        s.write_all(
            b"HTTP/1.1 200 OK\r\nconnection: keep-alive, content-length\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
        )
        .is_ok()
    });
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    let mut client = Reader::new(connect(s.addrs()[0]));
    for _ in 0..2 {
        client.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n");
        let resp = client.response(false).unwrap();
        assert_eq!(resp.body_str(), "hello");
        let lengths = resp
            .headers
            .iter()
            .filter(|(n, _)| n == "content-length")
            .count();
        assert_eq!(lengths, 1, "{resp:?}");
    }
}

#[test]
fn http10_upstream_connections_are_not_reused() {
    let up = upstream(|_, s| {
        s.write_all(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok")
            .is_ok()
    });
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    for _ in 0..3 {
        assert_eq!(get(s.addrs()[0], "/", "").body_str(), "ok");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
}

#[test]
fn a_non_idempotent_request_is_not_sent_twice() {
    // The upstream answers the first request of each connection, then reads the second and
    // closes without answering: a GET is sent again on a new connection, a POST is not.
    let up = second_request_unanswered();
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    let addr = s.addrs()[0];
    assert_eq!(get(addr, "/warm", "").status, 200);
    let resp = one(
        addr,
        b"POST /once HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n",
    );
    assert_eq!(
        (resp.status, error_code(&resp).as_str()),
        (502, "AG-UPS-5022")
    );
    let posts: Vec<_> = up
        .seen
        .try_iter()
        .filter(|s| s.request_line().starts_with("POST"))
        .collect();
    assert_eq!(posts.len(), 1, "the POST reached the upstream once");
    assert_eq!(posts[0].fields("content-length"), ["0"]);
}

#[test]
fn an_expect_that_timed_out_never_reuses_the_connection() {
    // The upstream never sends 100: after a second the body goes anyway, and the
    // connection is not reused (the upstream could have taken the body for a request).
    let up = upstream(|seen, s| reply(s, "", format!("{}", seen.body.len()).as_bytes()));
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    let mut client = Reader::new(connect(s.addrs()[0]));
    client.send(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n");
    assert_eq!(client.response(false).unwrap().status, 100);
    client.send(b"abc");
    assert_eq!(client.response(false).unwrap().body_str(), "3");
    client.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n");
    assert_eq!(client.response(false).unwrap().body_str(), "0");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

/// Uploads 64 MiB through the gateway to an upstream that, once it has the request head,
/// writes `answer` and closes (with the body unread, which resets the connection); returns
/// the response the client got.
fn upload_to_an_early_answer(answer: &'static [u8]) -> Resp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = accept_head(&listener);
        s.write_all(answer).unwrap();
    });
    let s = in_process(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\nroutes:\n  \"/\": \"http://{up_addr}/\"\n"
    ));
    let len = 64 << 20;
    let client = connect(s.addrs()[0]);
    let writer = {
        let mut w = client.try_clone().unwrap();
        std::thread::spawn(move || {
            let head = format!("POST / HTTP/1.1\r\nhost: t\r\ncontent-length: {len}\r\n\r\n");
            let _ = w.write_all(head.as_bytes());
            // The gateway stops reading once it has the answer: this write may fail.
            let _ = write_pattern(&mut w, len);
        })
    };
    let resp = Reader::new(client.try_clone().unwrap())
        .response(false)
        .unwrap();
    let _ = client.shutdown(Shutdown::Both);
    writer.join().unwrap();
    resp
}

#[test]
fn an_upstream_that_answers_before_the_body_is_relayed() {
    // Review finding: an upstream refusing a large body (413) and closing gave the client
    // a 502; its answer is relayed.
    let resp = upload_to_an_early_answer(
        b"HTTP/1.1 413 Content Too Large\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbig",
    );
    assert_eq!((resp.status, resp.body_str().as_str()), (413, "big"));
    assert_eq!(
        resp.header("connection"),
        Some("close"),
        "the rest of the body is not read"
    );
}

#[test]
fn h2c_upgrades_are_not_tunnelled() {
    let up = request_line_echo();
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    let resp = get(
        s.addrs()[0],
        "/x",
        "connection: upgrade, http2-settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n",
    );
    assert_eq!(
        (resp.status, resp.body_str().as_str()),
        (200, "GET /x HTTP/1.1")
    );
    let seen = up.seen.recv_timeout(LIMIT).unwrap();
    for gone in ["upgrade", "connection", "http2-settings"] {
        assert!(seen.fields(gone).is_empty(), "{gone}: {}", seen.head);
    }
}

/// The response to a GET through the gateway to an upstream that answers with `bytes`
/// (written `times` times) and closes.
fn through_an_upstream_sending(bytes: &'static [u8], times: usize) -> Resp {
    let up = upstream(move |_, s| {
        for _ in 0..times {
            if s.write_all(bytes).is_err() {
                break;
            }
        }
        false
    });
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    get(s.addrs()[0], "/", "")
}

#[test]
fn transfer_codings_other_than_chunked_are_refused() {
    let resp = through_an_upstream_sending(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        1,
    );
    assert_eq!(
        (resp.status, error_code(&resp).as_str()),
        (502, "AG-UPS-5023")
    );
}

#[test]
fn an_early_answer_after_an_interim_one_is_relayed() {
    // Second review: a 100 in front of the early 413 turned it into a 502.
    let resp = upload_to_an_early_answer(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Content Too Large\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbig",
    );
    assert_eq!((resp.status, resp.body_str().as_str()), (413, "big"));
}

#[test]
fn endless_interim_answers_are_a_bad_gateway() {
    let resp =
        through_an_upstream_sending(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n", 100);
    assert_eq!(
        (resp.status, error_code(&resp).as_str()),
        (502, "AG-UPS-5023")
    );
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "the test measures how long the connection rested"
)]
fn a_rule_idle_timeout_does_not_close_another_rule_connections() {
    // Second review: the worker's sweep applied the calling rule's idle_timeout to every
    // idle connection. Rule /a keeps connections 1s, rule /b the default 30s.
    let a = upstream(|_, s| reply(s, "", b"a"));
    let b = upstream(|_, s| reply(s, "", b"b"));
    let yaml = format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\nroutes:\n  \"/b/\": \"http://{}/\"\ngroups:\n  - proxy: {{idle_timeout: 1s}}\n    routes:\n      \"/a/\": \"http://{}/\"\n",
        b.addr, a.addr
    );
    let s = in_process(&yaml);
    let addr = s.addrs()[0];
    assert_eq!(get(addr, "/b/", "").body_str(), "b");
    let rested_from = Instant::now();
    assert_eq!(get(addr, "/a/", "").body_str(), "a");
    // Keep the worker proxying (its sweep runs while it does) until the gateway closes
    // rule /a's resting connection: not before the second, and not much after it.
    let closed_at = loop {
        assert_eq!(get(addr, "/b/", "").body_str(), "b");
        if a.closed.recv_timeout(Duration::from_millis(20)).is_ok() {
            break Instant::now();
        }
        assert!(
            rested_from.elapsed() < Duration::from_secs(5),
            "rule /a's idle connection was never closed"
        );
    };
    let rested = closed_at - rested_from;
    assert!(
        rested >= Duration::from_secs(1),
        "closed after {rested:?}, before its idle_timeout"
    );
    // A new request to /a needs a new connection; /b's was kept all along.
    assert_eq!(get(addr, "/a/", "").body_str(), "a");
    assert_eq!(a.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        1,
        "rule /b's connection was kept"
    );
}

#[test]
fn a_pool_round_robins_across_its_targets() {
    let a = upstream(|_, s| reply(s, "", b"a"));
    let b = upstream(|_, s| reply(s, "", b"b"));
    let yaml = format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\nproxy:\n  upstreams:\n    both:\n      targets: [\"{}\", \"{}\"]\nroutes:\n  \"/\": \"http://both/\"\n",
        a.addr, b.addr
    );
    let s = in_process(&yaml);
    let mut client = Reader::new(connect(s.addrs()[0]));
    let mut answers = String::new();
    for _ in 0..6 {
        client.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n");
        answers.push_str(&client.response(false).unwrap().body_str());
    }
    assert!(answers == "ababab" || answers == "bababa", "{answers}");
    // Each target kept its one connection.
    assert_eq!(a.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn regression_underscore_header_names_reach_the_upstream() {
    // CGI/WSGI-style backends read `X_Forwarded_Host` as `X-Forwarded-Host` (and
    // `Transfer_Encoding` as the framing): such fields are dropped unless allowed.
    let fields = "x_forwarded_host: evil.test\r\nX_Forwarded_Proto: https\r\n\
                  transfer_encoding: chunked\r\nx_custom: 1\r\nx-plain: 2\r\n";
    let up = upstream(|_, s| reply(s, "", b"ok"));
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    assert_eq!(get(s.addrs()[0], "/x", fields).status, 200);
    let seen = up.seen.recv_timeout(LIMIT).unwrap();
    let lower = seen.head.to_ascii_lowercase();
    assert!(
        !lower.contains('_'),
        "underscored fields went upstream:\n{}",
        seen.head
    );
    assert_eq!(seen.fields("x-plain"), ["2"]);
    assert_eq!(seen.fields("x-forwarded-host"), ["gw.test"]);
    assert_eq!(seen.fields("x-forwarded-proto"), ["http"]);

    // Opted in: kept, as they came.
    let up = upstream(|_, s| reply(s, "", b"ok"));
    let yaml = format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1, allow_underscores_in_headers: true}}\nroutes:\n  \"/\": \"http://{}/\"\n",
        up.addr
    );
    let s = in_process(&yaml);
    assert_eq!(get(s.addrs()[0], "/x", fields).status, 200);
    let seen = up.seen.recv_timeout(LIMIT).unwrap();
    assert_eq!(seen.fields("x_custom"), ["1"]);
    assert_eq!(seen.fields("x_forwarded_host"), ["evil.test"]);
}

#[test]
fn an_absolute_form_authority_is_the_forwarded_host() {
    let up = upstream(|_, s| reply(s, "", b"ok"));
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    let resp = one(
        s.addrs()[0],
        b"GET http://Site.example:8080/x HTTP/1.0\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    let seen = up.seen.recv_timeout(LIMIT).unwrap();
    assert_eq!(seen.request_line(), "GET /x HTTP/1.1");
    assert_eq!(seen.fields("x-forwarded-host"), ["Site.example:8080"]);
}

#[test]
fn regression_a_client_chooses_the_address_a_backend_sees() {
    // Incoming forwarding fields were appended to or passed through from any peer.
    let spoof = "x-forwarded-for: 6.6.6.6\r\nforwarded: for=6.6.6.6\r\n\
                 x-forwarded-proto: https\r\nx-forwarded-host: evil.test\r\nx-real-ip: 6.6.6.6\r\n\
                 x-forwarded-port: 443\r\nx-forwarded-prefix: /admin\r\ntrue-client-ip: 6.6.6.6\r\n\
                 cf-connecting-ip: 6.6.6.6\r\nx-client-ip: 6.6.6.6\r\n";
    let up = upstream(|_, s| reply(s, "", b"ok"));
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    assert_eq!(get(s.addrs()[0], "/x", spoof).status, 200);
    let seen = up.seen.recv_timeout(LIMIT).unwrap();
    assert_eq!(seen.fields("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(
        seen.fields("forwarded"),
        ["for=127.0.0.1;host=\"gw.test\";proto=http"]
    );
    assert_eq!(seen.fields("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.fields("x-forwarded-host"), ["gw.test"]);
    for claim in [
        "x-real-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "true-client-ip",
        "cf-connecting-ip",
        "x-client-ip",
    ] {
        assert!(seen.fields(claim).is_empty(), "{claim}: {}", seen.head);
    }

    // From a trusted proxy they are believed: chains extended, the rest passed on.
    let up = upstream(|_, s| reply(s, "", b"ok"));
    let s = gateway_with(
        ", trusted_proxies: [\"127.0.0.0/8\"]",
        "  \"/\": \"http://up/\"\n",
        &up,
        "",
    );
    assert_eq!(get(s.addrs()[0], "/x", spoof).status, 200);
    let seen = up.seen.recv_timeout(LIMIT).unwrap();
    assert_eq!(seen.fields("x-forwarded-for"), ["6.6.6.6, 127.0.0.1"]);
    assert_eq!(
        seen.fields("forwarded"),
        ["for=6.6.6.6, for=127.0.0.1;host=\"gw.test\";proto=http"]
    );
    assert_eq!(seen.fields("x-forwarded-proto"), ["https"]);
    assert_eq!(seen.fields("x-forwarded-host"), ["evil.test"]);
    assert_eq!(seen.fields("x-real-ip"), ["6.6.6.6"]);
    assert_eq!(seen.fields("x-forwarded-prefix"), ["/admin"]);
}

#[test]
fn regression_encoded_separators_climb_out_of_a_proxied_prefix() {
    // `/public/..%2Fadmin` matched `/public/*` and reached the backend still encoded; one
    // that decodes %2F or %5C walked to /admin.
    let up = request_line_echo();
    let routes = "  \"/public/\": \"http://up/public/\"\n";
    let s = gateway(routes, &up, "");
    for path in [
        "/public/..%2Fadmin",
        "/public/..%5Cadmin",
        "/public/a%2F..%2F..%2Fadmin",
    ] {
        let resp = get(s.addrs()[0], path, "");
        assert_eq!(
            (resp.status, error_code(&resp).as_str()),
            (400, "AG-HTTP-4003"),
            "{path}"
        );
    }
    // An encoded slash that climbs nothing is data, forwarded as it came.
    let resp = get(s.addrs()[0], "/public/a%2Fb", "");
    assert_eq!(
        (resp.status, resp.body_str().as_str()),
        (200, "GET /public/a%2Fb HTTP/1.1")
    );
    // A rule may opt in.
    let s = gateway(routes, &up, "  allow_encoded_traversal: true\n");
    let resp = get(s.addrs()[0], "/public/..%2Fadmin", "");
    assert_eq!(
        (resp.status, resp.body_str().as_str()),
        (200, "GET /public/..%2Fadmin HTTP/1.1")
    );
}

#[test]
fn regression_upstream_chunk_extensions_and_trailers_are_relayed_raw() {
    // The chunked framing came through byte for byte: extensions, and trailer lines with
    // NUL or control bytes.
    let up = upstream(|seen, s| {
        let trailer = if seen.request_line().contains("/bad") {
            "x-evil: a\0b\r\n"
        } else {
            "x-sum: 42\r\n"
        };
        let out = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
             5;name=\"v\"\r\nhello\r\n6 ; x\r\n world\r\n0;last\r\n{trailer}\r\n"
        );
        s.write_all(out.as_bytes()).is_ok()
    });
    let s = gateway("  \"/\": \"http://up/\"\n", &up, "");
    for (path, trailers) in [("/good", "x-sum: 42\r\n\r\n"), ("/bad", "\r\n")] {
        let mut client = connect(s.addrs()[0]);
        client
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
            .unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            assert!(fill(&mut client, &mut buf));
        };
        buf.drain(..end);
        // The whole body, framing included: it ends with the last chunk and the trailers.
        let tail = format!("0\r\n{trailers}");
        while !buf.ends_with(tail.as_bytes()) {
            assert!(fill(&mut client, &mut buf), "{path}: {buf:?}");
        }
        let framing = String::from_utf8_lossy(&buf).into_owned();
        assert!(!framing.contains(';'), "{path}: {framing:?}");
        let (body, got) = read_chunked(&mut client, &mut buf);
        assert_eq!(
            (body.as_slice(), got.as_str()),
            (&b"hello world"[..], trailers)
        );
    }
}

#[test]
fn a_dropped_trailer_section_is_said_on_stderr() {
    let up = upstream(|_, s| {
        s.write_all(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nset-cookie: a=b\r\n\r\n",
        )
        .is_ok()
    });
    let gw = crate::support::Gateway::start(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\nroutes:\n  \"/t\": \"http://{}/t\"\n",
        up.addr
    ));
    let mut client = connect(gw.addr);
    client
        .write_all(b"GET /t HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    while !buf.ends_with(b"0\r\n\r\n") {
        assert!(fill(&mut client, &mut buf), "{buf:?}");
    }
    assert!(!String::from_utf8_lossy(&buf).contains("set-cookie"));
    let line = gw.wait_line("trailer section");
    assert!(
        line.contains(&up.addr.to_string()) && line.contains("/t"),
        "{line}"
    );
}

#[test]
fn a_trusted_proxy_is_not_held_to_the_per_address_cap() {
    // A load balancer in front carries many clients on one address.
    let open = |yaml: &str| {
        let s = in_process(yaml);
        // All three stay open while the next ones connect.
        let mut held = Vec::new();
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let mut r = Reader::new(connect(s.addrs()[0]));
            r.send(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n");
            statuses.push(r.response(false).unwrap().status);
            held.push(r);
        }
        statuses
    };
    let capped = "server: {listen: \"127.0.0.1:0\", workers: 1, limits: {max_connections_per_ip: 1}}\n\
                  routes: {\"/x\": \"OK\"}\n";
    assert_eq!(open(capped), [200, 503, 503]);
    let trusted = capped.replace("workers: 1,", "workers: 1, trusted_proxies: [127.0.0.1],");
    assert_eq!(open(&trusted), [200, 200, 200]);
}
