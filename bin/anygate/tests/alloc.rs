//! Zero heap allocations per request on the fixed and echo paths after warm-up (SPEC §11),
//! and on the static path for a small cached file between two revalidations, counted by a
//! global allocator over the whole process: the server runs in-process and the client uses
//! std sockets and stack buffers, which do not allocate. A proxied request allocates one
//! thing, the boxed proxy future (kept out of every connection's task so that idle
//! connections stay small); the pool of idle upstream connections allocates nothing.
//!
//! `harness = false`: the libtest harness would allocate on its own threads meanwhile.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use anygate::serve::Server;
use anygate_config::{Format, load_str};
use anygate_runtime::alloc::{CountingAlloc, allocations};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const CONFIG: &str = r#"
server: {listen: "127.0.0.1:0", workers: 1}
static: {revalidate: 1h}
routes:
  "GET /fixed": 'OK {"fixed":true}'
  "POST /echo/:id/*": "*"
  "/static/": "STATIC_DIR"
"#;

/// Sends `req` `n` times on `stream`, reading each response of exactly `len` bytes.
fn round_trips(stream: &mut TcpStream, req: &[u8], len: usize, n: usize) {
    let mut buf = [0u8; 4096];
    for _ in 0..n {
        stream.write_all(req).unwrap();
        stream.read_exact(&mut buf[..len]).unwrap();
        assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
}

/// The length of the response to `req` (all responses to it have the same length: the
/// request id is fixed, the date has a fixed width).
fn response_len(stream: &mut TcpStream, req: &[u8]) -> usize {
    stream.write_all(req).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            if got.len() >= end + 4 + len {
                return end + 4 + len;
            }
        }
    }
}

fn check(name: &str, server: &Server, req: &[u8]) -> u64 {
    let mut stream = TcpStream::connect(server.addrs()[0]).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let len = response_len(&mut stream, req);
    // Warm-up: buffers grow to their working size, the date cache fills, the timer entry
    // is created.
    round_trips(&mut stream, req, len, 2_000);
    let before = allocations();
    round_trips(&mut stream, req, len, 10_000);
    let allocated = allocations() - before;
    println!("{name}: {allocated} allocations in 10 000 requests");
    allocated
}

/// A proxy in front of `backend`'s fixed route, both in this process.
fn regression_pool_checkin_allocates_per_request(backend: &Server) -> u64 {
    let yaml = format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\nroutes:\n  \"/proxy\": \"http://{}/fixed\"\n",
        backend.addrs()[0]
    );
    let config = load_str("proxy.yml", &yaml, Format::Yaml, Path::new("."), &[]).unwrap();
    let proxy = Server::start(config).unwrap();
    let allocated = check(
        "proxy",
        &proxy,
        b"GET /proxy HTTP/1.1\r\nHost: t\r\nX-Request-Id: alloc-test\r\n\r\n",
    );
    proxy.shutdown();
    allocated
}

fn main() {
    let dir = std::env::temp_dir().join(format!("anygate-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("1k.txt"), vec![b'x'; 1024]).unwrap();
    let yaml = CONFIG.replace("STATIC_DIR", &format!("{}/", dir.display()));
    let config = load_str("alloc.yml", &yaml, Format::Yaml, Path::new("."), &[]).unwrap();
    let server = Server::start(config).unwrap();
    let fixed = check(
        "fixed",
        &server,
        b"GET /fixed HTTP/1.1\r\nHost: t\r\nX-Request-Id: alloc-test\r\n\r\n",
    );
    let echo = check(
        "echo",
        &server,
        b"POST /echo/7/a/b?q=1 HTTP/1.1\r\nHost: t\r\nX-Request-Id: alloc-test\r\nContent-Length: 5\r\n\r\nhello",
    );
    let generated_id = check(
        "fixed, generated request id",
        &server,
        b"GET /fixed HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let static_file = check(
        "static 1 KiB file",
        &server,
        b"GET /static/1k.txt HTTP/1.1\r\nHost: t\r\nX-Request-Id: alloc-test\r\nAccept-Encoding: gzip, br\r\n\r\n",
    );
    let proxy = regression_pool_checkin_allocates_per_request(&server);
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        (fixed, echo, generated_id, static_file),
        (0, 0, 0, 0),
        "allocations per request on the hot path"
    );
    // The pool dropped an address's emptied stack at checkout, so each checkin allocated
    // a new one: two allocations per proxied request instead of one.
    assert!(
        proxy <= 10_000,
        "proxy: {proxy} allocations in 10 000 requests, more than the boxed future's one each"
    );
    println!("test result: ok. 5 passed; 0 failed");
}
