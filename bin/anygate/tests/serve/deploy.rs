//! Running under a service manager: the sd_notify messages (the test plays systemd's
//! `$NOTIFY_SOCKET`) and the shipped systemd unit.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};

use crate::http::LIMIT;
use crate::support::TempDir;

/// The next datagram on `sock`, as text.
fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notify message in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn sd_notify_says_ready_reloading_and_stopping_in_order() {
    let dir = TempDir::new("notify");
    let path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    let config = dir.0.join("anygate.yml");
    std::fs::write(
        &config,
        "server: {listen: \"127.0.0.1:0\", workers: 1}\nroutes: {\"/\": \"OK\"}\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["serve", "-c"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || BufReader::new(stderr).lines().for_each(drop));
    let signal = |name: &str| {
        assert!(
            Command::new("kill")
                .args([&format!("-{name}"), &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    // Ready only once it serves: the listener answers by now.
    assert_eq!(next(&sock), "READY=1\nSTATUS=serving\n");
    // A reload that applies.
    std::fs::write(
        &config,
        "server: {listen: \"127.0.0.1:0\", workers: 1}\nroutes: {\"/\": \"OK\", \"/b\": \"OK\"}\n",
    )
    .unwrap();
    signal("HUP");
    assert_eq!(
        next(&sock),
        "RELOADING=1\nSTATUS=reloading the configuration\n"
    );
    assert_eq!(
        next(&sock),
        "READY=1\nSTATUS=serving; configuration reloaded\n"
    );
    // A reload that fails still ends with READY=1: the old configuration serves.
    std::fs::write(&config, "routes: {\"/\": \"NOT A VALID ACTION ((\"}\n").unwrap();
    signal("HUP");
    assert_eq!(
        next(&sock),
        "RELOADING=1\nSTATUS=reloading the configuration\n"
    );
    assert_eq!(
        next(&sock),
        "READY=1\nSTATUS=serving; the reload failed, the previous configuration stays\n"
    );
    signal("TERM");
    assert_eq!(next(&sock), "STOPPING=1\nSTATUS=draining connections\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_systemd_unit_is_type_notify_reloads_by_sighup_and_is_hardened() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/anygate.service"
    ))
    .unwrap();
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |key: &str| settings.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    for (key, value) in [
        ("Type", "notify"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("MemoryDenyWriteExecute", "yes"),
    ] {
        assert_eq!(get(key), Some(value), "{key}");
    }
    let start = get("ExecStart").expect("ExecStart");
    assert!(
        start.ends_with("anygate serve -c /etc/anygate/anygate.yml"),
        "{start}"
    );
}
