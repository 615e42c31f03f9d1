//! `SIGUSR2`: a new process takes the listening sockets over with zero failed requests, the
//! old one drains and exits; a new binary or configuration that cannot start leaves the
//! old process serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::http::{LIMIT, one};
use crate::support::{Gateway, TempDir};

fn config(body: &str) -> String {
    format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 2, shutdown_timeout: 5s}}\n\
         admin: {{listen: \"127.0.0.1:0\"}}\n\
         routes:\n  \"GET /v\": \"OK {body}\"\n"
    )
}

/// Kills the process `pid` on drop (the new gateway is not the test's child).
struct Pid(u32);

impl Drop for Pid {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

fn pid_in(line: &str) -> u32 {
    let at = line.find("(pid ").expect("a pid") + 5;
    line[at..].split(')').next().unwrap().parse().unwrap()
}

/// One response of a `GET /v` on `s`: (status, body, the server closes after it), or
/// `None` when the connection ended before any byte of a response.
fn get(s: &mut TcpStream, close: bool) -> Option<(u16, String, bool)> {
    let req: &[u8] = if close {
        b"GET /v HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    } else {
        b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n"
    };
    if s.write_all(req).is_err() {
        return None;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return Some((status, body, head.contains("connection: close")));
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) if buf.is_empty() => return None,
            Ok(0) | Err(_) => panic!("a truncated response: {:?}", String::from_utf8_lossy(&buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("the listener accepts");
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s
}

#[derive(Default)]
struct Tally {
    served: AtomicUsize,
    new_body: AtomicUsize,
    failed: AtomicUsize,
    /// Requests sent again on a fresh connection because a reused one closed before any
    /// byte of the response (what every HTTP client does: RFC 9112 §9.3.1).
    retried: AtomicUsize,
}

impl Tally {
    fn count(&self, status: u16, body: &str) {
        if status != 200 {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return;
        }
        self.served.fetch_add(1, Ordering::SeqCst);
        if body == "two" {
            self.new_body.fetch_add(1, Ordering::SeqCst);
        } else if body != "one" {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Keep-alive traffic: requests one after another on one connection, a new one when the
/// server closes it.
fn keep_alive(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let mut conn: Option<TcpStream> = None;
    while !stop.load(Ordering::SeqCst) {
        let reused = conn.is_some();
        let s = conn.get_or_insert_with(|| connect(addr));
        match get(s, false) {
            Some((status, body, closes)) => {
                tally.count(status, &body);
                if closes {
                    conn = None;
                }
            }
            None if reused => {
                tally.retried.fetch_add(1, Ordering::SeqCst);
                conn = None;
            }
            None => {
                tally.failed.fetch_add(1, Ordering::SeqCst);
                conn = None;
            }
        }
    }
}

/// New-connection traffic: one request per connection.
fn new_connections(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    while !stop.load(Ordering::SeqCst) {
        match get(&mut connect(addr), true) {
            Some((status, body, _)) => tally.count(status, &body),
            None => {
                tally.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = anygate_runtime::time::now() + LIMIT;
    while !done() {
        assert!(
            anygate_runtime::time::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::park_timeout(std::time::Duration::from_millis(1));
    }
}

#[test]
fn sigusr2_hands_the_sockets_to_a_new_process_with_zero_failed_requests() {
    let mut gw = Gateway::start(&config("one"));
    let admin = gw.admin.expect("an admin listener");
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, tally, addr) = (stop.clone(), tally.clone(), gw.addr);
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    keep_alive(addr, &stop, &tally);
                } else {
                    new_connections(addr, &stop, &tally);
                }
            })
        })
        .collect();
    wait_for("traffic", || tally.served.load(Ordering::SeqCst) > 300);
    // The new process reads the configuration again: its answers say so.
    std::fs::write(&gw.config, config("two")).unwrap();
    gw.signal("USR2");
    let line = gw.wait_line("is ready; this one stops accepting and drains");
    let new = Pid(pid_in(&line));
    // The old process drains and exits on its own.
    gw.wait_line("anygate: stopped");
    let mut status = None;
    wait_for("the old process to exit", || {
        status = gw.child.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success());
    // Traffic goes on, answered by the new process alone.
    let seen = tally.new_body.load(Ordering::SeqCst);
    wait_for("answers from the new process", || {
        tally.new_body.load(Ordering::SeqCst) > seen + 300
    });
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(tally.failed.load(Ordering::SeqCst), 0, "failed requests");
    assert!(
        tally.retried.load(Ordering::SeqCst) <= 2,
        "at most one retry per keep-alive client (an idle connection closed by the drain)"
    );
    // The admin listener came over too, and says ready.
    let ready = one(admin, b"GET /ready HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(ready.status, 200);
    assert_eq!(
        one(gw.addr, b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n").body_str(),
        "two"
    );
    drop(new);
}

/// Starts a copy of the binary (which the test may then replace) on `yaml`.
fn start_copy(dir: &TempDir, yaml: &str) -> Gateway {
    let bin = dir.0.join("anygate");
    std::fs::copy(env!("CARGO_BIN_EXE_anygate"), &bin).unwrap();
    let config = dir.0.join("anygate.yml");
    std::fs::write(&config, yaml).unwrap();
    let child = Command::new(&bin)
        .args(["serve", "-c"])
        .arg(&config)
        .env_clear()
        .env("ANYGATE__SERVER__ALLOW_ROOT", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (child, lines) = crate::support::with_lines(child);
    Gateway::started(child, lines, config)
}

#[test]
fn a_new_binary_or_configuration_that_cannot_start_leaves_the_old_one_serving() {
    let dir = TempDir::new("upgrade-broken");
    let gw = start_copy(&dir, &config("one"));
    // A configuration that does not load: the new process exits, the old one serves.
    std::fs::write(&gw.config, "routes: {\"GET /v\": [no]}\n").unwrap();
    gw.signal("USR2");
    let line = gw.wait_line("upgrade failed");
    assert!(line.contains("exited"), "{line}");
    assert_eq!(
        one(gw.addr, b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n").body_str(),
        "one"
    );
    // A binary that is not a gateway at all.
    std::fs::write(&gw.config, config("two")).unwrap();
    let bin = dir.0.join("anygate");
    let tmp = dir.0.join("anygate.new");
    std::fs::write(&tmp, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &bin).unwrap();
    gw.signal("USR2");
    let line = gw.wait_line("upgrade failed");
    assert!(line.contains("exit status: 3"), "{line}");
    assert_eq!(
        one(gw.addr, b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n").body_str(),
        "one"
    );
    // Still listening and still answering its admin listener as ready.
    let admin = gw.admin.unwrap();
    assert_eq!(
        one(admin, b"GET /ready HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
}

#[test]
fn handed_over_descriptors_that_cannot_be_ours_are_refused_with_a_warning() {
    // Standard streams, a number named twice, the readiness pipe among the listeners:
    // each would give one descriptor two owners (and a double close).
    let dir = TempDir::new("upgrade-env");
    let config = dir.0.join("anygate.yml");
    std::fs::write(&config, config_plain()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["serve", "-c"])
        .arg(&config)
        .env_clear()
        .env("ANYGATE__SERVER__ALLOW_ROOT", "true")
        .env(
            "ANYGATE_LISTEN_FDS",
            "http@127.0.0.1:0=1;https@127.0.0.1:1=40,40;admin@x=41",
        )
        .env("ANYGATE_UPGRADE_FD", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (child, lines) = crate::support::with_lines(child);
    let mut warnings = Vec::new();
    let gw = {
        // The warnings come before the "listening" line that `started` waits for.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.iter() {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        loop {
            let line = rx.recv_timeout(LIMIT).expect("the gateway starts");
            if line.contains("listening on http://") {
                seen.push(line);
                break;
            }
            seen.push(line);
        }
        warnings.extend(seen.iter().filter(|l| l.contains("ANYGATE_")).cloned());
        let addr: SocketAddr = seen
            .last()
            .unwrap()
            .split("http://")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        (child, addr)
    };
    let text = warnings.join("\n");
    assert!(
        text.contains("`http@127.0.0.1:0=1` is not KIND@ADDRESS=FD"),
        "{text}"
    );
    assert!(text.contains("descriptor 40 named twice"), "{text}");
    assert!(
        text.contains("`admin@x=41` is not KIND@ADDRESS=FD"),
        "{text}"
    );
    // It serves from sockets of its own.
    assert_eq!(one(gw.1, b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    let mut child = gw.0;
    let _ = child.kill();
    let _ = child.wait();
}

fn config_plain() -> String {
    "server: {listen: \"127.0.0.1:0\", workers: 1}\nroutes: {\"GET /v\": \"OK\"}\n".into()
}
