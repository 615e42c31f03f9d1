//! `server.user`: bound as root, serving as the user; the refusal to serve as root; static
//! roots the user cannot read. These tests run as root (what `scripts/test` does on a fresh
//! machine); run as another user, each checks the non-root behaviour instead.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::http::one;
use crate::support::{Gateway, TempDir, spawn_serve};

fn is_root() -> bool {
    anygate_runtime::process::euid() == 0
}

/// `nobody`'s user and group ids, from the password database.
fn nobody() -> (u32, u32) {
    let u = anygate_runtime::process::user("nobody")
        .unwrap()
        .expect("a user `nobody`");
    (u.uid, u.gid)
}

/// The `Uid:`/`Gid:` lines and the effective capabilities of every thread of `pid`.
fn thread_ids(pid: u32) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap()
        };
        out.push((
            field("Uid:"),
            field("Gid:"),
            field("Groups:"),
            field("CapEff:"),
        ));
    }
    out
}

/// A port below 1024 that nothing listens on (binding it needs root).
fn privileged_port() -> u16 {
    (600..1000)
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port below 1024")
}

#[test]
fn started_as_root_the_gateway_binds_a_privileged_port_and_serves_as_the_user() {
    let dir = TempDir::new("drop");
    std::fs::create_dir(dir.0.join("www")).unwrap();
    std::fs::write(dir.0.join("www/a.txt"), "for everyone").unwrap();
    if !is_root() {
        let gw = Gateway::start_in(
            &dir,
            "server: {listen: \"127.0.0.1:0\", user: nobody}\nroutes: {\"/\": \"./www/\"}\n",
        );
        gw.wait_line("server.user `nobody` is ignored: not started as root");
        return;
    }
    let port = privileged_port();
    let config = dir.0.join("anygate.yml");
    std::fs::write(
        &config,
        format!(
            "server: {{listen: \"127.0.0.1:{port}\", workers: 2, user: nobody}}\nroutes: {{\"/\": \"./www/\"}}\n"
        ),
    )
    .unwrap();
    let (child, lines) = spawn_serve(&config, Stdio::null());
    let gw = Gateway::started(child, lines, config);
    assert_eq!(gw.addr.port(), port);
    let resp = one(gw.addr, b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body_str(), "for everyone");
    let (uid, gid) = nobody();
    let threads = thread_ids(gw.child.id());
    assert!(
        threads.len() >= 3,
        "the main thread and two workers at least"
    );
    for (uids, gids, groups, caps) in threads {
        assert_eq!(
            uids,
            format!("{uid} {uid} {uid} {uid}"),
            "real, effective, saved, fs"
        );
        assert_eq!(gids, format!("{gid} {gid} {gid} {gid}"));
        assert_eq!(groups, gid.to_string(), "supplementary groups cleared");
        assert_eq!(caps, "0000000000000000", "no capability left");
    }
}

/// Runs `serve` on `yaml` in `dir` until it exits (it must, within the limit); its stderr.
fn refused(dir: &TempDir, yaml: &str, allow_root_env: bool) -> String {
    let config = dir.0.join("anygate.yml");
    std::fs::write(&config, yaml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anygate"));
    cmd.args(["serve", "-c"]).arg(&config).env_clear();
    if allow_root_env {
        cmd.env("ANYGATE__SERVER__ALLOW_ROOT", "true");
    }
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // stderr ends when the process exits: read it to the end, within the limit.
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        let _ = tx.send(err);
    });
    let Ok(err) = rx.recv_timeout(crate::http::LIMIT) else {
        let _ = child.kill();
        panic!("serve did not refuse to start");
    };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    err
}

#[test]
fn a_static_root_the_user_cannot_read_is_refused_at_start_with_its_position() {
    let dir = TempDir::new("unreadable");
    let www = dir.0.join("www");
    std::fs::create_dir(&www).unwrap();
    // Owned by whoever runs the test, closed to everyone else.
    std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o700)).unwrap();
    let yaml = "server: {listen: \"127.0.0.1:0\", user: nobody}\nroutes:\n  \"/\": \"./www/\"\n";
    if !is_root() {
        // Not root: the drop is ignored, and a root closed to this user is refused the same.
        std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let err = refused(&dir, yaml, false);
    assert!(err.contains("anygate.yml:3:8"), "{err}");
    assert!(err.contains("AG-CFG-1104"), "{err}");
    assert!(err.contains("is not readable by this process"), "{err}");
    if is_root() {
        assert!(err.contains("uid 65534") || err.contains(&format!("uid {}", nobody().0)));
    }
    std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn as_root_serve_refuses_to_start_without_a_user_unless_allow_root() {
    let dir = TempDir::new("root");
    let yaml = "server: {listen: \"127.0.0.1:0\"}\nroutes: {\"/\": \"OK\"}\n";
    if !is_root() {
        let gw = Gateway::start_in(&dir, yaml);
        assert_eq!(
            one(gw.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").status,
            200
        );
        return;
    }
    let err = refused(&dir, yaml, false);
    assert!(
        err.contains("not serving as root: set `server.user`"),
        "{err}"
    );
    assert!(err.contains("server.allow_root: true"), "{err}");
    // Named as root, the user is refused too.
    let err = refused(
        &dir,
        "server: {listen: \"127.0.0.1:0\", user: root}\nroutes: {\"/\": \"OK\"}\n",
        false,
    );
    assert!(err.contains("anygate.yml:1:39"), "{err}");
    assert!(err.contains("user `root` is root"), "{err}");
    // An unknown user is an error at its position.
    let err = refused(
        &dir,
        "server: {listen: \"127.0.0.1:0\", user: no-such-user-here}\nroutes: {\"/\": \"OK\"}\n",
        true,
    );
    assert!(err.contains("anygate.yml:1:39"), "{err}");
    assert!(err.contains("no user `no-such-user-here`"), "{err}");
    // allow_root lets it serve.
    let gw = Gateway::start_in(
        &dir,
        "server: {listen: \"127.0.0.1:0\", allow_root: true}\nroutes: {\"/\": \"OK\"}\n",
    );
    assert_eq!(
        one(gw.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
}
