//! Balancing over real upstreams: each strategy's distribution over 10 000 requests, hash
//! stickiness, least connections and random steering around a slow target.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::http::{Reader, connect};
use crate::proxy::{Upstream, upstream};
use crate::support::in_process;

const N: usize = 10_000;

/// Answers `200` with the one-byte body `name`, in one write.
fn answer(s: &mut std::net::TcpStream, name: u8) -> bool {
    use std::io::Write;
    let mut r = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n".to_vec();
    r.push(name);
    s.write_all(&r).is_ok()
}

/// Three upstreams answering `0`, `1` and `2`.
fn three() -> Vec<Upstream> {
    (0..3u8)
        .map(|i| upstream(move |_, s| answer(s, b'0' + i)))
        .collect()
}

fn gateway(pool: &str, workers: usize) -> anygate::serve::Server {
    in_process(&format!(
        "server: {{ listen: \"127.0.0.1:0\", workers: {workers} }}\n\
         proxy:\n  upstreams:\n    app:\n{pool}\n\
         routes: {{ \"/\": \"http://app/\" }}\n"
    ))
}

fn targets(ups: &[Upstream], weights: &[u32]) -> String {
    let list: Vec<String> = ups
        .iter()
        .zip(weights)
        .map(|(u, w)| format!("{{ addr: \"{}\", weight: {w} }}", u.addr))
        .collect();
    format!("      targets: [{}]", list.join(", "))
}

/// Which upstream answered each of `n` requests sent one after another on one connection
/// (`fields(i)`: extra request fields of the i-th).
fn counts(addr: SocketAddr, n: usize, fields: impl Fn(usize) -> String) -> [usize; 3] {
    let mut r = Reader::new(connect(addr));
    let mut c = [0; 3];
    for i in 0..n {
        r.send(format!("GET /x HTTP/1.1\r\nHost: t\r\n{}\r\n", fields(i)).as_bytes());
        let resp = r.response(false).expect("a response");
        assert_eq!(resp.status, 200);
        c[resp.body_str().parse::<usize>().unwrap()] += 1;
    }
    c
}

#[test]
fn round_robin_takes_each_target_in_turn() {
    let ups = three();
    let list: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    let gw = gateway(&format!("      targets: [{}]", list.join(", ")), 1);
    let c = counts(gw.addrs()[0], N, |_| String::new());
    assert_eq!(c.iter().sum::<usize>(), N);
    assert!(c.iter().all(|&k| k == N / 3 || k == N / 3 + 1), "{c:?}");
}

#[test]
fn weighted_is_exact_over_every_cycle() {
    let ups = three();
    let gw = gateway(
        &format!("{}\n      balance: weighted", targets(&ups, &[3, 1, 1])),
        1,
    );
    // 10 000 is 2 000 cycles of 5: exact.
    assert_eq!(
        counts(gw.addrs()[0], N, |_| String::new()),
        [6000, 2000, 2000]
    );
}

#[test]
fn random_spreads_by_weight_within_five_percent() {
    let ups = three();
    let gw = gateway(
        &format!("{}\n      balance: random", targets(&ups, &[2, 1, 1])),
        2,
    );
    let c = counts(gw.addrs()[0], N, |_| String::new());
    // Sequential requests leave every target idle: the draws alone decide.
    for (got, share) in c.iter().zip([0.5, 0.25, 0.25]) {
        let want = share * N as f64;
        assert!((*got as f64 - want).abs() < 0.05 * N as f64, "{c:?}");
    }
}

#[test]
fn hash_on_a_cookie_is_sticky_and_spreads_sessions() {
    let ups = three();
    let gw = gateway(
        &format!(
            "{}\n      balance: hash\n      hash_key: cookie:session",
            targets(&ups, &[1, 1, 1])
        ),
        2,
    );
    let addr = gw.addrs()[0];
    let mut spread = [0; 3];
    for s in 0..300 {
        let c = counts(addr, 5, |_| format!("Cookie: theme=dark; session=s{s}\r\n"));
        let sticky: Vec<usize> = (0..3).filter(|&i| c[i] > 0).collect();
        assert_eq!(sticky.len(), 1, "session s{s} went to {c:?}");
        spread[sticky[0]] += 1;
    }
    assert!(
        spread.iter().all(|&k| k > 60),
        "sessions spread over every target: {spread:?}"
    );
    // Without the cookie: round robin.
    let c = counts(addr, 30, |_| String::new());
    assert_eq!(c, [10, 10, 10]);
}

/// A pool of a fast upstream and one that takes 100 ms per request, driven by 8 concurrent
/// connections of 50 requests each; the fast one's share of the 400.
fn fast_share(balance: &str) -> f64 {
    let fast = upstream(|_, s| answer(s, b'0'));
    let slow = upstream(|_, s| {
        std::thread::sleep(Duration::from_millis(100)); // an upstream that is slow to answer
        answer(s, b'1')
    });
    let gw = gateway(
        &format!(
            "      targets: [\"{}\", \"{}\"]\n      balance: {balance}",
            fast.addr, slow.addr
        ),
        2,
    );
    let addr = gw.addrs()[0];
    let fast_hits = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let fast_hits = fast_hits.clone();
            std::thread::spawn(move || {
                let c = counts(addr, 50, |_| String::new());
                fast_hits.fetch_add(c[0], Ordering::SeqCst);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    fast_hits.load(Ordering::SeqCst) as f64 / 400.0
}

#[test]
fn least_conn_and_random_steer_away_from_a_slow_target() {
    // Round robin would give each half; requests in flight pile up on the slow one.
    let lc = fast_share("least_conn");
    assert!(lc > 0.75, "least_conn sent {lc:.2} to the fast target");
    let p2c = fast_share("random");
    assert!(
        p2c > 0.7,
        "random (two choices) sent {p2c:.2} to the fast target"
    );
}

#[test]
fn bad_balance_settings_are_refused_with_their_position() {
    let bad = |pool: &str| {
        anygate_config::load_str(
            "t.yml",
            &format!(
                "proxy:\n  upstreams:\n    app:\n{pool}\nroutes: {{ \"/\": \"http://app/\" }}\n"
            ),
            anygate_config::Format::Yaml,
            std::path::Path::new("."),
            &[],
        )
        .unwrap_err()
        .to_string()
    };
    let e = bad("      targets: [\"a:1\"]\n      balance: fastest");
    assert!(
        e.contains("t.yml:5:16") && e.contains("not `fastest`"),
        "{e}"
    );
    let e = bad("      targets: [{ addr: \"a:1\", weight: 2 }, \"b:1\"]");
    assert!(e.contains("weights need `balance: weighted`"), "{e}");
    let e = bad("      targets: [{ addr: \"a:1\", weight: 0 }]\n      balance: weighted");
    assert!(e.contains("from 1 to 1000"), "{e}");
    let e = bad("      targets: [\"a:1\"]\n      hash_key: path");
    assert!(e.contains("needs `balance: hash`"), "{e}");
    let e = bad("      targets: [\"a:1\"]\n      balance: hash\n      hash_key: body");
    assert!(e.contains("header:NAME or cookie:NAME"), "{e}");
    let e = bad("      targets: [{ addr: \"a:1\", backup: true }]");
    assert!(e.contains("backup"), "{e}");
}
