//! The real binary: SIGHUP reloads under load without failing a request; a bad file keeps
//! the running configuration; SIGTERM lets requests in flight finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::http::{Reader, connect};
use crate::support::Gateway;

fn config(body: &str) -> String {
    format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 2}}\nroutes:\n  \"GET /v\": \"OK {body}\"\n  \"/e\": \"*\"\n"
    )
}

#[test]
fn sighup_swaps_a_rule_under_load_with_zero_failed_requests() {
    let gw = Gateway::start(&config("one"));
    let stop = Arc::new(AtomicBool::new(false));
    let seen_two = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, seen_two, served, addr) =
                (stop.clone(), seen_two.clone(), served.clone(), gw.addr);
            std::thread::spawn(move || {
                let mut r = Reader::new(connect(addr));
                while !stop.load(Ordering::SeqCst) {
                    r.send(b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n");
                    let resp = r.response(false).expect("no failed request");
                    assert_eq!(resp.status, 200);
                    match resp.body_str().as_str() {
                        "one" => {}
                        "two" => {
                            seen_two.fetch_add(1, Ordering::SeqCst);
                        }
                        other => panic!("unexpected body {other:?}"),
                    }
                    served.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // Let traffic flow, then reload.
    while served.load(Ordering::SeqCst) < 200 {
        std::thread::yield_now();
    }
    std::fs::write(&gw.config, config("two")).unwrap();
    gw.signal("HUP");
    gw.wait_line("reloaded");
    // Every client sees the new rule on its next requests, on the same connection.
    let target = served.load(Ordering::SeqCst) + 400;
    while served.load(Ordering::SeqCst) < target {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("a client saw a failure");
    }
    assert!(seen_two.load(Ordering::SeqCst) > 0);
}

#[test]
fn a_failed_reload_keeps_the_running_configuration() {
    let gw = Gateway::start(&config("one"));
    std::fs::write(&gw.config, "routes:\n  \"/bad/*/x\": OK\n").unwrap();
    gw.signal("HUP");
    gw.wait_line("error[AG-CFG-1101]");
    gw.wait_line("still serving the previous configuration");
    let mut r = Reader::new(connect(gw.addr));
    r.send(b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.response(false).unwrap().body_str(), "one");
}

#[test]
fn sigterm_lets_requests_in_flight_finish() {
    let mut gw = Gateway::start(&config("one"));
    let mut idle = Reader::new(connect(gw.addr));
    idle.send(b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(idle.response(false).unwrap().status, 200);
    // Requests in flight: the server has read each head and is waiting for the body (it
    // said so with `100 Continue`).
    let mut busy: Vec<Reader> = (0..5)
        .map(|_| {
            let mut r = Reader::new(connect(gw.addr));
            r.send(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
            assert_eq!(r.response(false).unwrap().status, 100);
            r
        })
        .collect();
    gw.signal("TERM");
    gw.wait_line("shutting down");
    // Idle connections are closed.
    idle.assert_closed();
    for r in &mut busy {
        r.send(b"helloworld");
        let resp = r.response(false).expect("the in-flight request completes");
        assert_eq!(resp.status, 200);
        assert!(resp.body_str().contains(r#""body":"helloworld""#));
        assert_eq!(resp.header("connection"), Some("close"));
    }
    let status = gw.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    gw.wait_line("stopped");
}

#[test]
fn a_second_signal_during_the_drain_stops_at_once() {
    let mut gw = Gateway::start(
        "server: {listen: \"127.0.0.1:0\", shutdown_timeout: 10m}\nroutes: {\"/e\": \"*\"}\n",
    );
    // A request that will never finish: its body does not come.
    let mut stuck = Reader::new(connect(gw.addr));
    stuck
        .send(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(stuck.response(false).unwrap().status, 100);
    gw.signal("TERM");
    gw.wait_line("shutting down");
    gw.signal("INT");
    gw.wait_line("second signal");
    // Well before the 10 minutes of `shutdown_timeout`.
    let status = gw.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn regression_a_second_instance_on_a_busy_port_fails_to_start() {
    // SO_REUSEPORT let a second `anygate serve` bind a port another instance listens on and
    // take a share of its connections.
    let first = Gateway::start(&config("first"));
    let dir = crate::support::TempDir::new("busy-port");
    let path = dir.0.join("second.yml");
    std::fs::write(
        &path,
        config("second").replace("127.0.0.1:0", &first.addr.to_string()),
    )
    .unwrap();
    let (mut second, lines) = crate::support::spawn_serve(&path, std::process::Stdio::null());
    // Its stderr ends when it exits; a "listening" line means it started.
    let mut said = Vec::new();
    loop {
        match lines.recv_timeout(crate::http::LIMIT) {
            Ok(line) if line.contains("listening on") => {
                let _ = second.kill();
                let _ = second.wait();
                panic!("the second instance started: {line}");
            }
            Ok(line) => said.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = second.kill();
                let _ = second.wait();
                panic!("the second instance neither started nor exited: {said:?}");
            }
        }
    }
    let status = second.wait().unwrap();
    let said = said.join("\n");
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("{}: address already in use", first.addr)),
        "{said}"
    );
    // The first instance still answers every request alone.
    for _ in 0..20 {
        let mut r = Reader::new(connect(first.addr));
        r.send(b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.response(false).unwrap().body_str(), "first");
    }
}

#[test]
fn twenty_reloads_under_keep_alive_and_new_connection_traffic_fail_no_request() {
    let gw = Gateway::start(&config("v0"));
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    // Two clients on one keep-alive connection each, two opening a connection per request.
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, served, addr) = (stop.clone(), served.clone(), gw.addr);
            std::thread::spawn(move || {
                let keep_alive = i < 2;
                let mut r = Reader::new(connect(addr));
                while !stop.load(Ordering::SeqCst) {
                    if !keep_alive {
                        r = Reader::new(connect(addr));
                    }
                    r.send(b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n");
                    let resp = r.response(false).expect("no failed request");
                    assert_eq!(resp.status, 200);
                    let body = resp.body_str();
                    assert!(body.starts_with('v'), "unexpected body {body:?}");
                    served.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for n in 1..=20 {
        // Some traffic between two reloads.
        let target = served.load(Ordering::SeqCst) + 50;
        while served.load(Ordering::SeqCst) < target {
            std::thread::yield_now();
        }
        std::fs::write(&gw.config, config(&format!("v{n}"))).unwrap();
        gw.signal("HUP");
        gw.wait_line("reloaded");
    }
    // The last configuration answers.
    let mut r = Reader::new(connect(gw.addr));
    r.send(b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.response(false).unwrap().body_str(), "v20");
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("a client saw a failure");
    }
    assert!(served.load(Ordering::SeqCst) >= 20 * 50);
}

#[test]
fn regression_a_draining_server_refuses_new_connections_instead_of_queueing_them() {
    // The copies of the listening sockets kept for a binary upgrade held them open through
    // the drain: new connections were accepted by the kernel into a backlog nobody read,
    // and reset at exit.
    let mut gw = Gateway::start(&config("one"));
    // A request in flight keeps the drain going: its body never completes.
    let mut busy = connect(gw.addr);
    std::io::Write::write_all(
        &mut busy,
        b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello",
    )
    .unwrap();
    // Echo answers once the body is in: wait for the connection to count as open.
    let mut r = Reader::new(connect(gw.addr));
    r.send(b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.response(false).unwrap().status, 200);
    drop(r);
    gw.signal("TERM");
    gw.wait_line("shutting down");
    let deadline = anygate_runtime::time::now() + crate::http::LIMIT;
    loop {
        match std::net::TcpStream::connect(gw.addr) {
            // A connect that reached the backlog in the instant the listener closed is
            // reset by the kernel (seen once in a full CI run): not queued, try again.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                assert!(
                    anygate_runtime::time::now() < deadline,
                    "connections are still reset instead of refused while draining"
                );
            }
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                // Refused by a process that is still draining, not because it has gone.
                assert!(
                    gw.child.try_wait().unwrap().is_none(),
                    "the gateway exited before refusing: connections were queued while it drained"
                );
                break;
            }
            Ok(_) => {
                // The accept loops may not have stopped yet: try again, within the limit.
                assert!(
                    anygate_runtime::time::now() < deadline,
                    "connections are still accepted into the backlog while draining"
                );
                std::thread::park_timeout(std::time::Duration::from_millis(10));
            }
        }
    }
    drop(busy);
}
