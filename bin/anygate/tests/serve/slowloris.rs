//! Slowloris against a 2-worker gateway: 2 000 connections trickling heads and 2 000
//! trickling bodies at 1 byte/s, while a normal client runs 10 000 keep-alive requests.
//! Every normal request succeeds and every slow connection is closed by its deadline (a
//! 408 each). The normal client's p99, without and with the slow load, is printed for the
//! bench report (`bench/reports/*-slowloris.md`), never asserted.
#![expect(
    clippy::disallowed_methods,
    reason = "the test measures latencies and bounds its own run with the real clock"
)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::http::{LIMIT, Reader, connect};
use crate::support::in_process;

const SLOW_HEADS: usize = 2_000;
const SLOW_BODIES: usize = 2_000;
const REQUESTS: usize = 10_000;

/// Keep-alive requests on `r`, at least `REQUESTS` and until `until` says stop; their
/// latencies, sorted.
fn run_normal(r: &mut Reader, until: impl Fn() -> bool) -> Vec<Duration> {
    let mut took = Vec::with_capacity(REQUESTS);
    while took.len() < REQUESTS || !until() {
        let t = Instant::now();
        r.send(b"GET /fixed HTTP/1.1\r\nHost: t\r\n\r\n");
        let resp = r.response(false).expect("a normal request failed");
        assert_eq!(resp.status, 200);
        took.push(t.elapsed());
    }
    took.sort();
    took
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() * 99 / 100]
}

/// One slow client: what it has read so far, and whether the server closed it.
struct Slow {
    stream: TcpStream,
    got: Vec<u8>,
    closed: bool,
}

impl Slow {
    fn open(addr: std::net::SocketAddr, first: &[u8]) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(first).unwrap();
        stream.set_nonblocking(true).unwrap();
        Self {
            stream,
            got: Vec::new(),
            closed: false,
        }
    }

    /// Reads what is there; then, if still open, sends one more byte.
    fn tick(&mut self) {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
        if self.stream.write(b"a").is_err() {
            self.closed = true;
        }
    }
}

#[test]
fn slow_heads_and_bodies_are_cut_off_while_a_normal_client_is_served() {
    let s = in_process(
        "server:\n  listen: \"127.0.0.1:0\"\n  workers: 2\n\
         \x20 limits: {max_connections: 20000, max_connections_per_ip: 0, min_body_rate: 512}\n\
         \x20 timeouts: {head: 2s, body_grace: 2s}\n\
         routes:\n  \"GET /fixed\": \"OK\"\n  \"POST /echo\": \"*\"\n",
    );
    let addr = s.addrs()[0];
    let mut normal = Reader::new(connect(addr));
    normal.stream.set_nodelay(true).unwrap();
    let unloaded = run_normal(&mut normal, || true);

    let mut slow: Vec<Slow> = (0..SLOW_HEADS)
        .map(|_| Slow::open(addr, b"GET /fixed HTTP/1.1\r\nHost: t\r\nX-Slow: "))
        .chain((0..SLOW_BODIES).map(|_| {
            Slow::open(
                addr,
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n",
            )
        }))
        .collect();
    let started = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The trickle: a byte per open connection every second (the pace is the behaviour
    // under test), until the server has closed them all or the bound passes.
    let trickle = {
        let done = done.clone();
        std::thread::spawn(move || {
            while slow.iter().any(|c| !c.closed) && started.elapsed() < LIMIT {
                for c in slow.iter_mut().filter(|c| !c.closed) {
                    c.tick();
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            slow
        })
    };
    // The normal client runs for as long as the slow connections live.
    let loaded = run_normal(&mut normal, || {
        done.load(std::sync::atomic::Ordering::SeqCst)
    });
    let slow = trickle.join().unwrap();

    let cut = |range: std::ops::Range<usize>, code: &str| {
        slow[range]
            .iter()
            .filter(|c| {
                c.closed
                    && c.got.starts_with(b"HTTP/1.1 408")
                    && String::from_utf8_lossy(&c.got).contains(code)
            })
            .count()
    };
    let heads = cut(0..SLOW_HEADS, "AG-HTTP-4080");
    let bodies = cut(SLOW_HEADS..SLOW_HEADS + SLOW_BODIES, "AG-HTTP-4082");
    eprintln!(
        "slowloris: {heads}/{SLOW_HEADS} slow heads and {bodies}/{SLOW_BODIES} slow bodies \
         closed with 408 within {:?}; normal client p99 {:?} (max {:?}) unloaded ({} \
         keep-alive requests), p99 {:?} (max {:?}) under the slow load ({} requests while it \
         lasted)",
        started.elapsed(),
        p99(&unloaded),
        unloaded[unloaded.len() - 1],
        unloaded.len(),
        p99(&loaded),
        loaded[loaded.len() - 1],
        loaded.len()
    );
    assert_eq!((heads, bodies), (SLOW_HEADS, SLOW_BODIES));
}
