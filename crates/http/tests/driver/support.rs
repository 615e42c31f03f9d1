//! An in-process server with a test service, and a raw HTTP/1.1 client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anygate_http::server::accept_loop;
use anygate_http::{Drain, ErrorKind, Exchange, Limits, Plain, Request, Service};
use anygate_runtime::Runtime;
use anygate_runtime::net::TcpListener;

/// Every client read is bounded by this: a hang fails the test.
pub const LIMIT: Duration = Duration::from_secs(20);

/// `/panic` panics; `/echo` answers with the body it read; `/nobody` answers without
/// reading the body; `/id` answers with the request id; anything else 200 `ok`.
pub struct TestService;

impl Service for TestService {
    type Conn = Vec<u8>;

    fn connect(&self) -> Vec<u8> {
        Vec::new()
    }

    async fn call<'a, 'b: 'a>(
        &'a self,
        buf: &'a mut Vec<u8>,
        req: &'a Request<'b>,
        res: &'a mut Exchange<'b>,
    ) {
        match req.path() {
            b"/panic" => panic!("handler panic (expected by the test)"),
            b"/echo" => {
                buf.clear();
                loop {
                    match res.body_chunk().await {
                        Ok(Some(d)) => buf.extend_from_slice(d),
                        Ok(None) => break,
                        Err(kind) => return res.error(kind, None),
                    }
                }
                res.send_bytes(200, "OK", Some("application/octet-stream"), buf);
            }
            b"/pieces" => {
                // The sizes of the body's pieces as the exchange hands them over.
                buf.clear();
                loop {
                    match res.body_chunk().await {
                        Ok(Some(d)) => buf.extend_from_slice(format!("{},", d.len()).as_bytes()),
                        Ok(None) => break,
                        Err(kind) => return res.error(kind, None),
                    }
                }
                res.send_bytes(200, "OK", Some("text/plain"), buf);
            }
            b"/id" => {
                let id = req.request_id().to_vec();
                res.send_bytes(200, "OK", Some("text/plain"), &id);
            }
            b"/missing" => res.error(ErrorKind::NotFound, Some("GET /x")),
            b"/nocontent" => {
                res.send_bytes(204, "No Content", None, b"a body that must not be sent");
            }
            _ => res.send_bytes(200, "OK", Some("text/plain"), b"ok"),
        }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub drain: Arc<Drain>,
    pub rt: Runtime,
}

pub fn server(limits: Limits) -> TestServer {
    server_with(limits, 1)
}

pub fn server_with(limits: Limits, workers: usize) -> TestServer {
    let _ = anygate_runtime::raise_fd_limit();
    let rt = Runtime::builder().workers(workers).build().unwrap();
    let drain = Drain::new();
    let addr = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(accept_loop(
            listener,
            Arc::new(Plain),
            Arc::new(TestService),
            Arc::new(limits),
            drain.clone(),
        ));
        addr
    });
    TestServer { addr, drain, rt }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads responses from a stream, keeping what is left over between calls.
pub struct Reader {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read failed (timeout = a hang): {e}"),
        }
    }

    /// The next response; `head_only` for a response to HEAD.
    pub fn response(&mut self, head_only: bool) -> Option<Resp> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill() {
                assert!(self.buf.is_empty(), "truncated head: {:?}", self.buf);
                return None;
            }
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status: u16 = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_owned(), v.to_owned())
            })
            .collect();
        self.buf.drain(..end);
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let len = if head_only || status < 200 { 0 } else { len };
        while self.buf.len() < len {
            assert!(self.fill(), "truncated body");
        }
        let body = self.buf.drain(..len).collect();
        Some(Resp {
            status,
            headers,
            body,
        })
    }

    /// Reads until the server closes the connection (a hang fails on the read timeout) and
    /// returns what came after the responses read so far.
    pub fn rest_until_closed(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }

    /// Asserts that the server closes the connection with nothing after the responses read
    /// so far: no second response to a smuggled request, no stray bytes.
    #[track_caller]
    pub fn assert_closed(&mut self) {
        let rest = self.rest_until_closed();
        assert!(
            rest.is_empty(),
            "bytes after the last response, before the close: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// Sends `raw` on a new connection and reads one response.
pub fn one(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut r = Reader::new(connect(addr));
    r.send(raw);
    r.response(raw.starts_with(b"HEAD")).expect("a response")
}
