//! Panics, many clients, draining.

use anygate_http::Limits;

use crate::support::{LIMIT, Reader, connect, one, server, server_with};

#[test]
fn a_panicking_handler_gets_a_500_and_the_worker_goes_on() {
    let s = server(Limits::default());
    let mut keep = Reader::new(connect(s.addr));
    keep.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(keep.response(false).unwrap().status, 200);
    for _ in 0..3 {
        let mut r = Reader::new(connect(s.addr));
        r.send(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\n");
        let resp = r.response(false).unwrap();
        assert_eq!(resp.status, 500);
        assert!(resp.body_str().contains("AG-INT-5000"));
        r.assert_closed();
    }
    // One worker: the same worker still serves the connection opened before, and new ones.
    keep.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(keep.response(false).unwrap().status, 200);
    assert_eq!(
        one(s.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
}

#[test]
fn a_thousand_concurrent_keep_alive_clients() {
    // All from one address: no per-address cap.
    let s = server_with(
        Limits {
            max_connections_per_ip: 0,
            ..Limits::default()
        },
        2,
    );
    let mut clients: Vec<Reader> = (0..1000).map(|_| Reader::new(connect(s.addr))).collect();
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(
                format!("GET /id HTTP/1.1\r\nHost: t\r\nX-Request-Id: c{i}r{round}\r\n\r\n")
                    .as_bytes(),
            );
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(
                c.response(false).unwrap().body_str(),
                format!("c{i}r{round}")
            );
        }
    }
    assert_eq!(s.drain.open_connections(), 1000);
}

#[test]
fn draining_closes_idle_connections_and_finishes_busy_ones() {
    let s = server_with(Limits::default(), 2);
    let mut idle: Vec<Reader> = (0..10)
        .map(|_| {
            let mut r = Reader::new(connect(s.addr));
            r.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(r.response(false).unwrap().status, 200);
            r
        })
        .collect();
    // A request in flight, proven by its `100 Continue`: the handler is reading its body.
    // (Waiting for the connection count raced: a connection accepted but not yet read
    // from is idle, and a drain closes it.)
    let mut busy = Reader::new(connect(s.addr));
    busy.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(busy.response(false).unwrap().status, 100);
    busy.send(b"hello");
    s.drain.start(s.rt.handle());
    for r in &mut idle {
        r.assert_closed();
    }
    busy.send(b"world");
    let resp = busy.response(false).unwrap();
    assert_eq!(resp.body_str(), "helloworld");
    assert_eq!(resp.header("connection"), Some("close"));
    busy.assert_closed();
    s.rt.block_on(s.drain.closed());
    assert_eq!(s.drain.open_connections(), 0);
}

#[test]
fn regression_a_connection_accepted_just_before_a_drain_gets_its_first_request_answered() {
    // A binary upgrade lost requests here: a client writes its request right after
    // connecting, and a drain that began in between closed the connection unanswered.
    let s = server_with(Limits::default(), 1);
    let mut fresh = Reader::new(connect(s.addr));
    let mut silent = Reader::new(connect(s.addr));
    let deadline = anygate_runtime::time::now() + LIMIT;
    while s.drain.open_connections() < 2 {
        assert!(
            anygate_runtime::time::now() < deadline,
            "both connections accepted"
        );
        std::thread::park_timeout(std::time::Duration::from_millis(1));
    }
    s.drain.start(s.rt.handle());
    fresh.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = fresh.response(false).expect("answered, not closed");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    fresh.assert_closed();
    // One that never sends a request is closed after the grace (a second), not kept.
    let waited = anygate_runtime::time::now();
    silent.assert_closed();
    assert!(waited.elapsed() < LIMIT);
    s.rt.block_on(s.drain.closed());
}
