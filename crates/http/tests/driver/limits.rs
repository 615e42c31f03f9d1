//! Every limit: 431, 414, 413, 408 (slowloris), idle close, 505, max connections.

use std::time::{Duration, Instant};

use anygate_http::{Limits, MinRate};

use crate::support::{Reader, connect, one, server};

#[test]
fn a_head_over_max_head_gets_431() {
    let s = server(Limits {
        max_head: 4096,
        ..Limits::default()
    });
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(5000)
    );
    let resp = one(s.addr, raw.as_bytes());
    assert_eq!(resp.status, 431);
    assert!(resp.body_str().contains("AG-HTTP-4310"));
}

#[test]
fn too_many_header_fields_gets_431() {
    let s = server(Limits {
        max_headers: 10,
        ..Limits::default()
    });
    let fields: String = (0..11).map(|i| format!("X-{i}: v\r\n")).collect();
    let resp = one(
        s.addr,
        format!("GET / HTTP/1.1\r\nHost: t\r\n{fields}\r\n").as_bytes(),
    );
    assert_eq!(resp.status, 431);
    let fields: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
    let resp = one(
        s.addr,
        format!("GET / HTTP/1.1\r\nHost: t\r\n{fields}\r\n").as_bytes(),
    );
    assert_eq!(resp.status, 200);
}

#[test]
fn a_long_target_gets_414() {
    let s = server(Limits {
        max_uri: 100,
        ..Limits::default()
    });
    let resp = one(
        s.addr,
        format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(200)).as_bytes(),
    );
    assert_eq!(resp.status, 414);
    // A request line that does not even fit in the head limit is a 414 too.
    let s = server(Limits {
        max_head: 2048,
        ..Limits::default()
    });
    let resp = one(s.addr, format!("GET /{}", "a".repeat(3000)).as_bytes());
    assert_eq!(resp.status, 414);
}

#[test]
fn bodies_over_max_body_get_413() {
    let s = server(Limits {
        max_body: 10,
        ..Limits::default()
    });
    let resp = one(
        s.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world",
    );
    assert_eq!(resp.status, 413);
    assert_eq!(resp.header("connection"), Some("close"));
    let chunked = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
    let resp = one(s.addr, chunked);
    assert_eq!(resp.status, 413);
    let resp = one(
        s.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhelloworld",
    );
    assert_eq!((resp.status, resp.body_str().as_str()), (200, "helloworld"));
}

#[test]
fn a_slow_head_is_cut_off_while_other_clients_are_served() {
    let s = server(Limits {
        head_timeout: Duration::from_millis(300),
        ..Limits::default()
    });
    let mut slow = Reader::new(connect(s.addr));
    slow.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    let started = Instant::now();
    // Meanwhile, others are answered at once.
    for _ in 0..20 {
        assert_eq!(
            one(s.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").status,
            200
        );
    }
    let resp = slow.response(false).expect("a 408");
    assert_eq!(resp.status, 408);
    assert!(resp.body_str().contains("AG-HTTP-4080"));
    assert!(started.elapsed() >= Duration::from_millis(250));
    slow.assert_closed();
}

#[test]
fn a_head_dribbled_byte_by_byte_does_not_reset_the_deadline() {
    let s = server(Limits {
        head_timeout: Duration::from_millis(300),
        ..Limits::default()
    });
    let mut slow = Reader::new(connect(s.addr));
    let mut writer = slow.stream.try_clone().unwrap();
    let started = Instant::now();
    // The slowloris client: one byte every 20 ms, never an end of head (the pacing is the
    // behaviour under test, not a synchronisation).
    let dribble = std::thread::spawn(move || {
        use std::io::Write;
        let head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ";
        for i in 0..500 {
            let b = head.get(i).copied().unwrap_or(b'a');
            if writer.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let resp = slow.response(false).expect("a 408");
    assert_eq!(resp.status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    slow.assert_closed();
    dribble.join().unwrap();
}

#[test]
fn regression_a_body_dribbled_under_the_pause_timeout_holds_the_connection_forever() {
    // Each body read reset the deadline: a byte every 59 s kept a worker slot for ever.
    // Now the body must also average `min_body_rate` once its grace has passed.
    let s = server(Limits {
        body_timeout: Duration::from_secs(30),
        min_body_rate: MinRate {
            bytes_per_sec: 512,
            grace: Duration::from_millis(300),
        },
        ..Limits::default()
    });
    let mut slow = Reader::new(connect(s.addr));
    slow.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    let mut writer = slow.stream.try_clone().unwrap();
    let started = Instant::now();
    // A byte every 20 ms (50 B/s): far under the rate, far inside the pause timeout (the
    // pacing is the behaviour under test, not a synchronisation).
    let dribble = std::thread::spawn(move || {
        use std::io::Write;
        for _ in 0..1000 {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let resp = slow.response(false).expect("a 408");
    assert_eq!(resp.status, 408);
    assert!(
        resp.body_str().contains("AG-HTTP-4082"),
        "{}",
        resp.body_str()
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(15),
        "{took:?}"
    );
    slow.assert_closed();
    dribble.join().unwrap();

    // A body at a normal pace is not affected.
    let mut r = Reader::new(connect(s.addr));
    r.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n");
    r.send(b"hello");
    let resp = r.response(false).unwrap();
    assert_eq!((resp.status, resp.body_str().as_str()), (200, "hello"));
}

#[test]
fn regression_body_bytes_sent_with_the_head_earn_no_time() {
    // The minimum body rate counted only bytes read after the head, so a client that sent
    // most of its body with the head was held to the rate as if it had sent nothing.
    let s = server(Limits {
        min_body_rate: MinRate {
            bytes_per_sec: 1000,
            grace: Duration::from_millis(200),
        },
        ..Limits::default()
    });
    let mut r = Reader::new(connect(s.addr));
    let mut first = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1010\r\n\r\n".to_vec();
    first.extend_from_slice(&[b'x'; 1000]);
    r.send(&first);
    // 1 000 bytes earn a second: the last 10 may come after 600 ms (the pause is the
    // behaviour under test).
    std::thread::sleep(Duration::from_millis(600));
    r.send(&[b'y'; 10]);
    let resp = r.response(false).expect("a response");
    assert_eq!(resp.status, 200, "{}", resp.body_str());
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let s = server(Limits {
        idle_timeout: Duration::from_millis(200),
        ..Limits::default()
    });
    let mut r = Reader::new(connect(s.addr));
    r.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.response(false).unwrap().status, 200);
    let started = Instant::now();
    r.assert_closed();
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[test]
fn unsupported_versions_get_505() {
    let s = server(Limits::default());
    assert_eq!(
        one(s.addr, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n").status,
        505
    );
    assert_eq!(
        one(s.addr, b"GET / HTTP/1.2\r\nHost: t\r\n\r\n").status,
        505
    );
}

/// `n` connections, each having had a request answered (so the server counts them).
fn hold(s: &crate::support::TestServer, n: usize) -> Vec<Reader> {
    (0..n)
        .map(|_| {
            let mut r = Reader::new(connect(s.addr));
            r.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(r.response(false).unwrap().status, 200);
            r
        })
        .collect()
}

/// A new connection gets 503 with `retry-after` and is closed.
fn refused(s: &crate::support::TestServer) {
    let mut extra = Reader::new(connect(s.addr));
    let resp = extra.response(false).expect("a 503");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
    extra.assert_closed();
}

#[test]
fn regression_one_client_takes_every_connection_slot() {
    // max_connections was the only cap: one address could hold all of them.
    let s = server(Limits {
        max_connections_per_ip: 2,
        ..Limits::default()
    });
    let mut held = hold(&s, 2);
    refused(&s);
    assert_eq!(s.drain.refused_connections(), 1);
    // Once one closes, its slot is free again.
    held.pop()
        .unwrap()
        .stream
        .shutdown(std::net::Shutdown::Both)
        .unwrap();
    let deadline = Instant::now() + crate::support::LIMIT;
    while s.drain.open_connections() > 1 {
        assert!(
            Instant::now() < deadline,
            "the closed connection was never released"
        );
        std::thread::yield_now();
    }
    let mut r = Reader::new(connect(s.addr));
    r.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.response(false).unwrap().status, 200);
}

#[test]
fn regression_slow_large_heads_each_hold_max_head_without_a_bound() {
    // A connection's buffer grew up to max_head while its head was incomplete, however
    // many connections did so. Now the growth of all of them is bounded by head_memory.
    let s = server(Limits {
        head_memory: 64 * 1024,
        ..Limits::default()
    });
    let partial = || {
        let mut h = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
        h.resize(30 * 1024, b'a');
        h
    };
    let wait_for = |bytes: usize| {
        let deadline = Instant::now() + crate::support::LIMIT;
        while s.drain.head_memory_in_use() != bytes {
            assert!(
                Instant::now() < deadline,
                "head memory {} never reached {bytes}",
                s.drain.head_memory_in_use()
            );
            std::thread::yield_now();
        }
    };
    // 30 KiB of head: the 8 KiB buffer grows to 16 then 32 KiB, 24 KiB of growth each.
    let mut held: Vec<Reader> = Vec::new();
    for i in 1..=2 {
        let mut r = Reader::new(connect(s.addr));
        r.send(&partial());
        held.push(r);
        wait_for(i * 24 * 1024);
    }
    // A third does not fit in 64 KiB: 503, and what it had taken is given back.
    let mut third = Reader::new(connect(s.addr));
    third.send(&partial());
    let resp = third.response(false).expect("a 503");
    assert_eq!(resp.status, 503);
    third.assert_closed();
    wait_for(48 * 1024);
    // The held ones complete normally, and give their share back.
    for r in &mut held {
        r.send(b"\r\n\r\n");
        assert_eq!(r.response(false).unwrap().status, 200);
    }
    wait_for(0);
}

#[test]
fn connections_past_the_limit_get_503_and_are_closed() {
    let s = server(Limits {
        max_connections: 3,
        ..Limits::default()
    });
    let held = hold(&s, 3);
    refused(&s);
    drop(held);
}
