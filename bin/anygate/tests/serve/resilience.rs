//! Resilience over real upstreams that fail on command: retries (and what is never
//! retried), the retry budget under load, active health checks, backups, outlier ejection,
//! the circuit breaker, and hash stickiness when a target leaves.

// Test threads outside the runtime bound their waits with the real clock.
#![allow(clippy::disallowed_methods)]

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::http::{LIMIT, Reader, Resp, connect, one};
use crate::proxy::{Upstream, upstream};
use crate::support::in_process;

/// An upstream answering every request with `status` (changed on command) and the body
/// `name`; it counts the requests that are not health checks.
struct Switchable {
    up: Upstream,
    status: Arc<AtomicU16>,
    served: Arc<AtomicUsize>,
}

impl Switchable {
    fn new(name: u8, status: u16) -> Self {
        let st = Arc::new(AtomicU16::new(status));
        let served = Arc::new(AtomicUsize::new(0));
        let (s2, c2) = (st.clone(), served.clone());
        let up = upstream(move |seen, s| {
            use std::io::Write;
            if !seen.request_line().contains("/healthz") {
                c2.fetch_add(1, Ordering::SeqCst);
            }
            let status = s2.load(Ordering::SeqCst);
            let mut r = format!("HTTP/1.1 {status} X\r\ncontent-length: 1\r\n\r\n").into_bytes();
            r.push(name);
            s.write_all(&r).is_ok()
        });
        Self {
            up,
            status: st,
            served,
        }
    }
    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
    fn addr(&self) -> SocketAddr {
        self.up.addr
    }
}

/// An address nothing listens on.
fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn gateway(upstreams: &str, proxy: &str) -> anygate::serve::Server {
    named_gateway("app", upstreams, proxy)
}

/// A gateway whose pool is `name` (metrics are per process: a test that reads a counter
/// names its pool alone).
fn named_gateway(name: &str, upstreams: &str, proxy: &str) -> anygate::serve::Server {
    in_process(&format!(
        "server: {{ listen: \"127.0.0.1:0\", workers: 1 }}\n\
         admin: {{ listen: \"127.0.0.1:0\" }}\n\
         proxy:\n{proxy}  upstreams:\n    {name}:\n{upstreams}\n\
         routes: {{ \"/\": \"http://{name}/\" }}\n"
    ))
}

fn send(r: &mut Reader, method: &str, body: &str) -> Resp {
    r.send(
        format!(
            "{method} /x HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    r.response(false).expect("a response")
}

fn get(addr: SocketAddr) -> Resp {
    one(
        addr,
        b"GET /x HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    )
}

/// The state `/upstreams` reports for `target` (in whichever pool has it).
fn state(gw: &anygate::serve::Server, target: SocketAddr) -> String {
    let r = one(
        gw.admin_addr().expect("admin"),
        b"GET /upstreams HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.body_str());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let t = target.to_string();
    v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .find(|x| x["target"] == t.as_str())
        .map(|x| x["state"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{t} not in {v}"))
}

/// Waits (bounded) until `/upstreams` reports `want` for `target`.
fn wait_state(gw: &anygate::serve::Server, target: SocketAddr, want: &str) {
    let until = Instant::now() + LIMIT;
    loop {
        let now = state(gw, target);
        if now == want {
            return;
        }
        assert!(Instant::now() < until, "{target} stayed {now}, not {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    let items: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("      targets: [{}]\n", items.join(", "))
}

#[test]
fn a_get_whose_first_target_refuses_succeeds_on_the_second() {
    let live = Switchable::new(b'b', 200);
    let gw = gateway(&list(&[dead_addr(), live.addr()]), "");
    let mut r = Reader::new(connect(gw.addrs()[0]));
    for _ in 0..20 {
        let resp = send(&mut r, "GET", "");
        assert_eq!(resp.status, 200, "{}", resp.body_str());
        assert_eq!(resp.body_str(), "b");
    }
    assert_eq!(live.served(), 20);
}

#[test]
fn a_post_is_never_retried_by_default() {
    let failing = Switchable::new(b'a', 502);
    let other = Switchable::new(b'b', 200);
    let targets = list(&[failing.addr(), other.addr()]);
    let retries = "  retries: { attempts: 3, on: [connect_failure, reset, 502] }\n";
    let gw = gateway(&targets, retries);
    let mut r = Reader::new(connect(gw.addrs()[0]));
    let statuses: Vec<u16> = (0..10)
        .map(|_| send(&mut r, "POST", "data").status)
        .collect();
    // Round robin: every other POST went to the failing target and got its 502, once.
    assert_eq!(
        statuses.iter().filter(|&&s| s == 502).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(failing.served() + other.served(), 10, "each POST sent once");
    // A refused connection is not retried for a POST either.
    let gw = gateway(&list(&[dead_addr(), other.addr()]), retries);
    let mut r = Reader::new(connect(gw.addrs()[0]));
    let statuses: Vec<u16> = (0..4)
        .map(|_| send(&mut r, "POST", "data").status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 502).count(),
        2,
        "{statuses:?}"
    );
    // The same GETs are retried on the other target.
    let gw = gateway(&targets, retries);
    let mut r = Reader::new(connect(gw.addrs()[0]));
    assert!((0..10).all(|_| send(&mut r, "GET", "").status == 200));
}

#[test]
fn a_post_opted_in_is_retried_with_its_body() {
    let failing = Switchable::new(b'a', 503);
    let (tx, bodies) = std::sync::mpsc::channel();
    let ok = upstream(move |seen, s| {
        use std::io::Write;
        let _ = tx.send(seen.body.clone());
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_ok()
    });
    let gw = gateway(
        &list(&[failing.addr(), ok.addr]),
        "  retries: { attempts: 2, on: [503], non_idempotent: true }\n",
    );
    let mut r = Reader::new(connect(gw.addrs()[0]));
    for i in 0..4 {
        let body = format!("payload-{i}");
        let resp = send(&mut r, "POST", &body);
        assert_eq!(resp.status, 200, "{}", resp.body_str());
        assert_eq!(bodies.recv_timeout(LIMIT).unwrap(), body.as_bytes());
    }
    assert_eq!(
        failing.served(),
        4,
        "round robin: each went to the failing one first"
    );
}

#[test]
fn a_failing_pool_under_load_receives_at_most_the_budgeted_extra_requests() {
    let failing = Switchable::new(b'a', 503);
    let gw = named_gateway(
        "budgeted",
        &list(&[failing.addr()]),
        "  retries: { attempts: 3, on: [503], budget: 20%, min_retries_per_s: 0, backoff: 1ms..2ms }\n",
    );
    let n = 300;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let addr = gw.addrs()[0];
            std::thread::spawn(move || {
                let mut r = Reader::new(connect(addr));
                (0..n / 4)
                    .map(|_| send(&mut r, "GET", "").status)
                    .filter(|&s| s == 503)
                    .count()
            })
        })
        .collect();
    let failed: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(failed, n, "the last attempt's 503 is relayed");
    let extra = failing.served() - n;
    // 20 % of 300 requests: 60 retries at most (the window is 10 s: all of them count).
    assert!(extra <= n / 5, "{extra} retries for {n} requests");
    assert!(extra >= n / 10, "the budget allows retries: {extra}");
    assert!(
        metrics(&gw).contains(&format!(
            "anygate_upstream_retries_total{{upstream=\"budgeted\"}} {extra}\n"
        )),
        "{}",
        metrics(&gw)
    );
}

fn metrics(gw: &anygate::serve::Server) -> String {
    one(
        gw.admin_addr().expect("admin"),
        b"GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .body_str()
}

#[test]
fn active_checks_take_a_dead_target_out_before_any_client_request_fails_and_bring_it_back() {
    let sick = Switchable::new(b'a', 503);
    let good = Switchable::new(b'b', 200);
    let dead = dead_addr();
    let gw = gateway(
        &format!(
            "{}      health: {{ path: /healthz, interval: 50ms, timeout: 500ms, fall: 1, rise: 1 }}\n",
            list(&[dead, sick.addr(), good.addr()])
        ),
        "  retries: { attempts: 1 }\n",
    );
    // The first checks answered before the server served: no request ever fails.
    assert_eq!(state(&gw, dead), "down");
    assert_eq!(state(&gw, sick.addr()), "down");
    let mut r = Reader::new(connect(gw.addrs()[0]));
    for _ in 0..50 {
        let resp = send(&mut r, "GET", "");
        assert_eq!(resp.status, 200, "{}", resp.body_str());
    }
    assert_eq!(sick.served(), 0);
    let m = metrics(&gw);
    assert!(
        m.contains("anygate_upstream_targets{upstream=\"app\",state=\"down\"} 2\n"),
        "{m}"
    );
    assert!(
        m.contains("anygate_upstream_targets{upstream=\"app\",state=\"up\"} 1\n"),
        "{m}"
    );
    // It recovers: back in rotation.
    sick.set(200);
    wait_state(&gw, sick.addr(), "up");
    let before = sick.served();
    for _ in 0..50 {
        assert_eq!(send(&mut r, "GET", "").status, 200);
    }
    assert_eq!(
        sick.served() - before,
        25,
        "round robin over the two that are up"
    );
    // And it fails again: out again.
    sick.set(500);
    wait_state(&gw, sick.addr(), "down");
    let before = sick.served();
    for _ in 0..20 {
        assert_eq!(send(&mut r, "GET", "").status, 200);
    }
    assert_eq!(sick.served(), before);
}

#[test]
fn tcp_and_websocket_checks_follow_their_targets() {
    let listening = Switchable::new(b'a', 200);
    let dead = dead_addr();
    let gw = gateway(
        &format!(
            "{}      health: {{ type: tcp, interval: 50ms }}\n",
            list(&[listening.addr(), dead])
        ),
        "",
    );
    assert_eq!(state(&gw, listening.addr()), "up");
    assert_eq!(state(&gw, dead), "down");
    drop(gw);
    // A WebSocket check wants a 101 with the right accept key: a plain 200 is a failure.
    let ws = upstream(|seen, s| {
        use std::io::Write;
        let key = seen.fields("sec-websocket-key");
        assert_eq!(key, ["dGhlIHNhbXBsZSBub25jZQ=="]);
        let _ = s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
              sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        );
        false
    });
    let gw = gateway(
        &format!(
            "{}      health: {{ type: websocket, path: /ws, interval: 50ms }}\n",
            list(&[ws.addr, listening.addr()])
        ),
        "",
    );
    assert_eq!(state(&gw, ws.addr), "up");
    assert_eq!(state(&gw, listening.addr()), "down");
    let seen = ws.seen.recv_timeout(LIMIT).unwrap();
    assert_eq!(seen.request_line(), "GET /ws HTTP/1.1");
}

#[test]
fn backups_serve_only_when_all_primaries_are_down() {
    let p1 = Switchable::new(b'1', 200);
    let p2 = Switchable::new(b'2', 200);
    let b = Switchable::new(b'b', 200);
    let gw = gateway(
        &format!(
            "      targets: [\"{}\", \"{}\", {{ addr: \"{}\", backup: true }}]\n\
             \x20     health: {{ path: /healthz, interval: 50ms, fall: 1, rise: 1 }}\n",
            p1.addr(),
            p2.addr(),
            b.addr()
        ),
        "  retries: { attempts: 1 }\n",
    );
    let mut r = Reader::new(connect(gw.addrs()[0]));
    for _ in 0..30 {
        assert_eq!(send(&mut r, "GET", "").status, 200);
    }
    assert_eq!(b.served(), 0, "the backup waits while a primary is up");
    p1.set(503);
    wait_state(&gw, p1.addr(), "down");
    for _ in 0..10 {
        assert_eq!(send(&mut r, "GET", "").body_str(), "2");
    }
    p2.set(503);
    wait_state(&gw, p2.addr(), "down");
    for _ in 0..10 {
        let resp = send(&mut r, "GET", "");
        assert_eq!((resp.status, resp.body_str().as_str()), (200, "b"));
    }
    assert_eq!(b.served(), 10);
    p1.set(200);
    wait_state(&gw, p1.addr(), "up");
    for _ in 0..10 {
        assert_eq!(send(&mut r, "GET", "").body_str(), "1");
    }
    assert_eq!(b.served(), 10);
    // Every target down, the backup too: 503 AG-UPS-5032.
    p1.set(503);
    b.set(503);
    wait_state(&gw, p1.addr(), "down");
    wait_state(&gw, b.addr(), "down");
    let resp = get(gw.addrs()[0]);
    assert_eq!(resp.status, 503);
    assert!(
        resp.body_str().contains("AG-UPS-5032"),
        "{}",
        resp.body_str()
    );
}

#[test]
fn outlier_ejection_routes_around_a_failing_target_and_lets_it_back() {
    let bad = Switchable::new(b'a', 502);
    let good = Switchable::new(b'b', 200);
    let gw = gateway(
        &format!(
            "{}      outlier: {{ consecutive_failures: 3, base_ejection: 300ms, max_ejected_percent: 50 }}\n",
            list(&[bad.addr(), good.addr()])
        ),
        "  retries: { attempts: 1 }\n",
    );
    let mut r = Reader::new(connect(gw.addrs()[0]));
    let statuses: Vec<u16> = (0..30).map(|_| send(&mut r, "GET", "").status).collect();
    assert_eq!(
        bad.served(),
        3,
        "ejected after 3 failures in a row: {statuses:?}"
    );
    assert_eq!(state(&gw, bad.addr()), "ejected");
    // The ejection ends: it gets traffic again.
    bad.set(200);
    wait_state(&gw, bad.addr(), "up");
    for _ in 0..10 {
        assert_eq!(send(&mut r, "GET", "").status, 200);
    }
    // Round robin over both again: 5 of the 10, or 4 when the first of them still found
    // the ejection in force on its worker (the admin view saw "up" a moment before; a full
    // CI run saw 4). Without the ejection ending it would be none.
    let back = bad.served() - 3;
    assert!(
        (4..=5).contains(&back),
        "the ejected target got {back} of 10 back"
    );
    // Both failing: never more than half the pool ejected.
    bad.set(502);
    good.set(502);
    for _ in 0..40 {
        send(&mut r, "GET", "");
        let ejected = [bad.addr(), good.addr()]
            .iter()
            .filter(|&&a| state(&gw, a) == "ejected")
            .count();
        assert!(ejected <= 1, "{ejected} of 2 ejected");
    }
}

#[test]
fn the_breaker_opens_half_opens_and_closes() {
    let up = Switchable::new(b'a', 502);
    let gw = gateway(
        &format!(
            "{}      breaker: {{ failure_ratio: 0.5, min_requests: 4, window: 10s, open_for: 300ms }}\n",
            list(&[up.addr()])
        ),
        "  retries: { attempts: 1 }\n",
    );
    let addr = gw.addrs()[0];
    for _ in 0..4 {
        assert_eq!(get(addr).status, 502);
    }
    // Open: answered at once, the upstream untouched.
    let resp = get(addr);
    assert_eq!(resp.status, 503, "{}", resp.body_str());
    assert!(
        resp.body_str().contains("AG-UPS-2006"),
        "{}",
        resp.body_str()
    );
    assert_eq!(
        resp.header("retry-after"),
        Some("1"),
        "300 ms, in whole seconds"
    );
    assert!(metrics(&gw).contains("anygate_upstream_circuit_open{upstream=\"app\"} 1\n"));
    assert_eq!(up.served(), 4);
    // Half-open: one probe goes through; it fails, and the circuit opens again.
    let until = Instant::now() + LIMIT;
    let probe = loop {
        let r = get(addr);
        if r.status != 503 {
            break r;
        }
        assert!(Instant::now() < until, "never half-opened");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(probe.status, 502);
    assert_eq!(up.served(), 5);
    assert_eq!(get(addr).status, 503);
    // The upstream recovers: the next probe closes it.
    up.set(200);
    let until = Instant::now() + LIMIT;
    while get(addr).status != 200 {
        assert!(Instant::now() < until, "never closed");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..10 {
        assert_eq!(get(addr).status, 200);
    }
    assert_eq!(state(&gw, up.addr()), "up");
}

#[test]
fn hash_keys_move_only_off_a_target_that_goes_down_and_come_back() {
    let ups: Vec<Switchable> = (0..3u8).map(|i| Switchable::new(b'0' + i, 200)).collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(Switchable::addr).collect();
    let gw = gateway(
        &format!(
            "{}      balance: hash\n      hash_key: cookie:s\n\
             \x20     health: {{ path: /healthz, interval: 50ms, timeout: 5s, fall: 1, rise: 1 }}\n",
            list(&addrs)
        ),
        "  retries: { attempts: 1 }\n",
    );
    // `fall: 1` takes a target down on one failed check: with the default 1 s timeout, a
    // check of a healthy target that a loaded machine (the whole suite on two cores) left
    // waiting for a second moved its keys (regression: "the keys come back" failed once in
    // a full run). The long timeout leaves only the 503 to take a target down.
    let sessions: u32 = 600;
    let owners = |r: &mut Reader| -> Vec<String> {
        (0..sessions)
            .map(|i| {
                r.send(
                    format!("GET /x HTTP/1.1\r\nhost: t\r\ncookie: s=user{i}\r\n\r\n").as_bytes(),
                );
                let resp = r.response(false).unwrap();
                assert_eq!(resp.status, 200);
                resp.body_str()
            })
            .collect()
    };
    let mut r = Reader::new(connect(gw.addrs()[0]));
    let before = owners(&mut r);
    assert_eq!(owners(&mut r), before, "sticky");
    ups[2].set(503);
    wait_state(&gw, addrs[2], "down");
    let during = owners(&mut r);
    let moved = before.iter().zip(&during).filter(|(a, b)| a != b).count();
    for (a, b) in before.iter().zip(&during) {
        assert!(
            a == b || a == "2",
            "a key of a target still up moved: {a} → {b}"
        );
    }
    // Exactly the down target's keys moved. (This was a bound, a third of the keys plus
    // 5 %: the share one of three targets owns varies with the process's hash seed, and a
    // full CI run failed with 230 of 600 against a bound of 229.99…)
    let owned = before.iter().filter(|a| *a == "2").count();
    assert_eq!(
        moved, owned,
        "every key of the down target moved, and no other"
    );
    let owned = u32::try_from(owned).unwrap();
    assert!(
        owned > sessions / 6 && owned < sessions / 2,
        "the hash spread the keys: the third target owned {owned} of {sessions}"
    );
    ups[2].set(200);
    wait_state(&gw, addrs[2], "up");
    assert_eq!(owners(&mut r), before, "the keys come back");
}

#[test]
fn explain_shows_the_pool_and_its_live_target_states() {
    let up = Switchable::new(b'a', 200);
    let dead = dead_addr();
    let dir = crate::support::TempDir::new("explain-health");
    let admin = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_addr = admin.local_addr().unwrap();
    drop(admin);
    let yaml = format!(
        "server: {{ listen: \"127.0.0.1:0\", workers: 1 }}\n\
         admin: {{ listen: \"{admin_addr}\" }}\n\
         proxy:\n  upstreams:\n    app:\n{}      health: {{ path: /healthz, interval: 50ms }}\n\
         routes: {{ \"/\": \"http://app/\" }}\n",
        list(&[up.addr(), dead])
    );
    let config = dir.0.join("anygate.yml");
    std::fs::write(&config, &yaml).unwrap();
    let explain = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_anygate"))
            .args(["explain", "-c"])
            .arg(&config)
            .args(["GET", "/x"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let offline = explain();
    assert!(
        offline.contains(&format!("target {} weight 1\n", up.addr())),
        "{offline}"
    );
    assert!(offline.contains("live state: unavailable"), "{offline}");
    assert!(
        offline.contains("health: Http /healthz every 50ms"),
        "{offline}"
    );
    let gw = crate::support::Gateway::start_in(&dir, &yaml);
    let live = explain();
    assert!(
        live.contains(&format!("target {} weight 1: up", up.addr())),
        "{live}"
    );
    assert!(
        live.contains(&format!("target {dead} weight 1: down (connect: ")),
        "{live}"
    );
    // A change is logged, and seen by the next explain.
    up.set(503);
    gw.wait_line(&format!(
        "upstream app target {}: down (status 503)",
        up.addr()
    ));
    let live = explain();
    assert!(
        live.contains(&format!("target {} weight 1: down (status 503)", up.addr())),
        "{live}"
    );
}

fn config_error(proxy: &str, pool: &str) -> String {
    anygate_config::load_str(
        "t.yml",
        &format!(
            "proxy:\n{proxy}  upstreams:\n    app:\n      targets: [\"a:1\", \"b:1\"]\n{pool}\
             groups:\n  - prefix: /g\n    proxy: {{ retries: {{ budget: 50% }} }}\n    routes: {{ \"/x\": \"http://app/\" }}\n\
             routes: {{ \"/\": \"http://app/\" }}\n"
        ),
        anygate_config::Format::Yaml,
        std::path::Path::new("."),
        &[],
    )
    .unwrap_err()
    .to_string()
}

#[test]
fn bad_resilience_settings_are_refused_with_their_position() {
    // A pool's budget is the top level's: a group may not set it.
    let e = config_error("", "");
    assert!(
        e.contains("t.yml:7:25") && e.contains("can only be set at the top level"),
        "{e}"
    );
    let cases = [
        (
            "  retries: { attempts: 0 }\n",
            "",
            "t.yml:2:24",
            "from 1 (no retries) to 10",
        ),
        ("  retries: { on: [500] }\n", "", "t.yml:2:19", "not `500`"),
        (
            "  retries: { budget: 120% }\n",
            "",
            "t.yml:2:22",
            "a share from 0 to 1",
        ),
        (
            "  retries: { backoff: 1s..10ms }\n",
            "",
            "t.yml:2:23",
            "FIRST..MAX",
        ),
        ("  retry_body_limit: lots\n", "", "t.yml:2:21", ""),
        (
            "",
            "      health: { type: tcp, path: /x }\n",
            "t.yml:5:34",
            "nothing to a tcp check",
        ),
        (
            "",
            "      health: { expect: 200-700 }\n",
            "t.yml:5:25",
            "ranges such as `200-399`",
        ),
        (
            "",
            "      health: { fall: 0 }\n",
            "t.yml:5:23",
            "from 1 to 100",
        ),
        (
            "",
            "      health: { interval: 0s }\n",
            "t.yml:5:27",
            "more than 0",
        ),
        ("", "      health: { port: 1 }\n", "t.yml:5:17", "port"),
        (
            "",
            "      outlier: { max_ejected_percent: 101 }\n",
            "t.yml:5:39",
            "from 0 to 100",
        ),
        (
            "",
            "      breaker: { failure_ratio: 0 }\n",
            "t.yml:5:33",
            "more than 0",
        ),
        (
            "",
            "      breaker: { min_requests: -1 }\n",
            "t.yml:5:32",
            "whole number",
        ),
        (
            "",
            "      balance: hash\n      slow_start: 10s\n",
            "t.yml:6:19",
            "cannot be used with `balance: hash`",
        ),
    ];
    for (proxy, pool, at, says) in cases {
        let e = config_error(proxy, pool);
        assert!(e.contains(at) && e.contains(says), "{proxy}{pool}: {e}");
    }
}

#[test]
fn every_resilience_key_of_the_docs_example_is_accepted() {
    let yaml = "proxy:\n  retries: { attempts: 3, on: [connect_failure, reset, timeout, 502, 503, 504], budget: 20%, min_retries_per_s: 3, backoff: 25ms..1s, non_idempotent: false }\n  retry_body_limit: 64KiB\n  upstreams:\n    users:\n      balance: weighted\n      targets:\n        - { addr: \"10.0.0.1:8080\", weight: 3 }\n        - { addr: \"10.0.0.2:8080\", weight: 1, backup: true }\n      slow_start: 30s\n      health: { path: /healthz, interval: 2s, timeout: 1s, expect: 200-399, fall: 3, rise: 2 }\n      outlier: { consecutive_failures: 5, base_ejection: 30s, max_ejected_percent: 50 }\n      breaker: { failure_ratio: 0.5, min_requests: 20, window: 10s, open_for: 15s, max_pending: 512 }\nroutes: { \"/\": \"http://users/\" }\n";
    let config = anygate_config::load_str(
        "t.yml",
        yaml,
        anygate_config::Format::Yaml,
        std::path::Path::new("."),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let pool = &config.upstreams[0];
    assert!(pool.targets[1].backup && !pool.targets[0].backup);
    assert_eq!(pool.slow_start, Duration::from_secs(30));
    let h = pool.health.as_ref().unwrap();
    assert_eq!((h.fall, h.rise, h.expect.clone()), (3, 2, vec![(200, 399)]));
    assert_eq!(pool.outlier.unwrap().consecutive_failures, 5);
    let b = pool.breaker.unwrap();
    assert_eq!((b.failure_ratio_per_mille, b.max_pending), (500, 512));
    let r = &config.proxy.retries;
    assert_eq!((r.attempts, r.on.len(), r.budget_per_mille), (3, 6, 200));
    assert_eq!(config.proxy.retry_body_limit, 64 * 1024);
}

#[test]
fn the_resilience_example_of_docs_proxy_md_loads_as_it_says() {
    let doc = crate::support::repo_text("docs/PROXY.md");
    let section = doc
        .split_once("## Resilience")
        .expect("docs/PROXY.md has the resilience section")
        .1;
    let yaml = section
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a yaml example")
        .0;
    let text = format!("{yaml}routes: {{ \"/\": \"http://users/\" }}\n");
    let config = anygate_config::load_str(
        "PROXY.md",
        &text,
        anygate_config::Format::Yaml,
        std::path::Path::new("."),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let pool = &config.upstreams[0];
    let backups: Vec<bool> = pool.targets.iter().map(|t| t.backup).collect();
    assert_eq!(backups, [false, false, true]);
    assert!(pool.health.is_some() && pool.outlier.is_some() && pool.breaker.is_some());
    assert_eq!(config.proxy.retries.attempts, 3);
}
