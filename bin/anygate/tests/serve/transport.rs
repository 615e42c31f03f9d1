//! The driver over a transport that is not a `TcpStream`: a wrapper that buffers every write
//! until it is flushed and has none of plain TCP's capabilities (no `sendfile`, no cork, no
//! peek), as a TLS stream will be. Every action answers over it, pipelined requests
//! included; a driver that forgot a flush would leave a response in the buffer (the client
//! times out), and a file body needs the read-and-write fallback.

use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use anygate::serve::Server;
use anygate_config::{Format, load_str};
use anygate_http::server::{Accepted, Acceptor, Protocol};
use anygate_runtime::net::TcpStream;
use anygate_runtime::transport::Transport;

use crate::http::{LIMIT, Reader, connect};
use crate::proxy::{fill, find, raw_upgrade_echo, reply, upstream};
use crate::support::TempDir;

/// Writes wait in `pending` until a flush; past `LIMIT_PENDING` a write is refused until
/// the buffer drains (backpressure, as a TLS stream's record buffer).
struct Buffered {
    tcp: TcpStream,
    pending: Vec<u8>,
    flushes: Arc<AtomicUsize>,
}

const LIMIT_PENDING: usize = 64 * 1024;

impl Buffered {
    /// Writes out what is pending; `Ready(Ok)` once all of it left.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            match self.tcp.poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.pending.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl Transport for Buffered {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.tcp.poll_read(cx, buf)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_read_ready(cx)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.pending.len() >= LIMIT_PENDING {
            match self.drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = buf.len().min(LIMIT_PENDING - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_writev(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut total = 0;
        for b in bufs {
            match self.poll_write(cx, b) {
                Poll::Ready(Ok(n)) => {
                    total += n;
                    if n < b.len() {
                        break;
                    }
                }
                other if total == 0 => return other,
                _ => break,
            }
        }
        Poll::Ready(Ok(total))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = self.drain(cx);
        if r.is_ready() {
            self.flushes.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.drain(cx) {
            Poll::Ready(Ok(())) => {
                Poll::Ready(self.tcp.shutdown(std::net::Shutdown::Write).or(Ok(())))
            }
            other => other,
        }
    }
}

struct BufferedAcceptor {
    flushes: Arc<AtomicUsize>,
}

impl Acceptor for BufferedAcceptor {
    type Stream = Buffered;

    async fn accept(&self, tcp: TcpStream, _peer: SocketAddr) -> io::Result<Accepted<Buffered>> {
        Ok(Accepted {
            stream: Buffered {
                tcp,
                pending: Vec::new(),
                flushes: self.flushes.clone(),
            },
            protocol: Protocol::Http1,
            tls: None,
        })
    }
}

fn gateway(yaml: &str) -> (Server, Arc<AtomicUsize>) {
    let config = load_str("test.yml", yaml, Format::Yaml, Path::new("."), &[])
        .unwrap_or_else(|f| panic!("{f}"));
    let flushes = Arc::new(AtomicUsize::new(0));
    let acceptor = Arc::new(BufferedAcceptor {
        flushes: flushes.clone(),
    });
    let registry = anygate_plugins::Registry::builtin();
    (
        Server::start_with(config, acceptor, registry).unwrap(),
        flushes,
    )
}

/// A pattern that shows a misplaced or repeated piece of a large body.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn every_action_answers_over_a_buffering_transport_without_sendfile() {
    let dir = TempDir::new("transport");
    let big = pattern(3 << 20);
    std::fs::write(dir.0.join("big.bin"), &big).unwrap();
    std::fs::write(dir.0.join("small.txt"), b"small file\n").unwrap();
    let up = upstream(|seen, s| reply(s, "x-up: 1\r\n", seen.request_line().as_bytes()));
    let yaml = format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\n\
         static: {{memory_file_max: 1KiB}}\n\
         routes:\n  \"GET /fixed\": 'OK {{\"a\":1}}'\n  \"/echo/*\": \"*\"\n  \
         \"/files/\": \"{}/\"\n  \"/api/\": \"http://{}/\"\n",
        dir.0.display(),
        up.addr
    );
    let (s, flushes) = gateway(&yaml);
    let addr = s.addrs()[0];
    let mut r = Reader::new(connect(addr));

    // Pipelined: five requests in one write, answered in order on one connection.
    r.send(
        b"GET /fixed HTTP/1.1\r\nhost: t\r\n\r\n\
          POST /echo/x HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nhello\
          GET /files/small.txt HTTP/1.1\r\nhost: t\r\n\r\n\
          GET /api/v?q=1 HTTP/1.1\r\nhost: t\r\n\r\n\
          GET /files/big.bin HTTP/1.1\r\nhost: t\r\n\r\n",
    );
    let fixed = r.response(false).unwrap();
    assert_eq!(
        (fixed.status, fixed.body_str().as_str()),
        (200, "{\"a\":1}")
    );
    let echo = r.response(false).unwrap();
    assert_eq!(echo.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&echo.body).unwrap();
    assert_eq!(json["body"], "hello");
    assert_eq!(json["splat"], "x");
    let small = r.response(false).unwrap();
    assert_eq!(
        (small.status, small.body_str().as_str()),
        (200, "small file\n")
    );
    let proxied = r.response(false).unwrap();
    assert_eq!(proxied.status, 200);
    assert_eq!(proxied.body_str(), "GET /v?q=1 HTTP/1.1");
    assert_eq!(proxied.header("x-up"), Some("1"));
    // A file body larger than the memory cache: read and written, not sent with sendfile.
    let file = r.response(false).unwrap();
    assert_eq!(file.status, 200);
    assert!(
        file.body == big,
        "the file body differs ({} bytes)",
        file.body.len()
    );

    // A range of it, and a multipart range, from the disk.
    r.send(b"GET /files/big.bin HTTP/1.1\r\nhost: t\r\nrange: bytes=100-199\r\n\r\n");
    let part = r.response(false).unwrap();
    assert_eq!(part.status, 206);
    assert_eq!(part.body, big[100..200]);
    r.send(b"GET /files/big.bin HTTP/1.1\r\nhost: t\r\nrange: bytes=0-9,2000000-2000009\r\n\r\n");
    let multi = r.response(false).unwrap();
    assert_eq!(multi.status, 206);
    assert!(find(&multi.body, &big[2_000_000..2_000_010]).is_some());
    assert!(flushes.load(Ordering::Relaxed) > 0);
}

#[test]
fn a_tunnel_runs_over_a_buffering_transport() {
    let up = raw_upgrade_echo();
    let yaml = format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\nroutes:\n  \"/\": \"http://{}/\"\n",
        up.addr
    );
    let (s, _) = gateway(&yaml);
    let mut client = connect(s.addrs()[0]);
    client
        .write_all(
            b"GET /t HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: raw\r\n\r\nearly",
        )
        .unwrap();
    let mut buf = Vec::new();
    while find(&buf, b"early").is_none() || find(&buf, b"first").is_none() {
        assert!(
            fill(&mut client, &mut buf),
            "{}",
            String::from_utf8_lossy(&buf)
        );
    }
    assert!(buf.starts_with(b"HTTP/1.1 101 "));
    client.write_all(b"later").unwrap();
    while find(&buf, b"later").is_none() {
        assert!(fill(&mut client, &mut buf));
    }
    // The client's half-close passes through; the upstream's close ends the tunnel.
    client.shutdown(std::net::Shutdown::Write).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    while fill(&mut client, &mut buf) {}
}
