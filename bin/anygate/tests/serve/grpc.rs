//! HTTP/2 to upstreams, end to end: `h2c://` targets and pools with `protocol: h2` or
//! `auto` (ALPN over TLS), from HTTP/1.1 and HTTP/2 clients; and gRPC through the gateway
//! with Python's grpcio on both ends (`tests/grpc_through.py`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use crate::http2::curl;
use crate::support::{TempDir, in_process};
use crate::tls::Pki;

/// Kills the script if the test fails before it ends.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn grpc_calls_of_every_kind_pass_through_an_h2c_upstream() {
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));
    let child = Command::new("timeout")
        .args(["180", "python3", "tests/grpc_through.py"])
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut script = Script(child);
    let mut out = BufReader::new(script.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let Some(port) = line.trim().strip_prefix("port ") else {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(script.0.stderr.as_mut().unwrap(), &mut err);
        panic!("the gRPC server did not start (is grpcio installed?): {line}{err}");
    };
    let gw = in_process(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 2, h2c: true}}\n\
         routes:\n  \"/t.T/\": \"h2c://127.0.0.1:{port}/t.T/\"\n  \"/down.D/\": \"h2c://127.0.0.1:{}/\"\n\
         groups:\n  - prefix: /slow.S\n    proxy: {{timeouts: {{read: 300ms}}}}\n    routes:\n      \"/\": \"h2c://127.0.0.1:{port}/slow.S/\"\n",
        closed_port()
    ));
    let mut stdin = script.0.stdin.take().unwrap();
    writeln!(stdin, "{}", gw.addrs()[0]).unwrap();
    drop(stdin);
    let mut report = String::new();
    std::io::Read::read_to_string(&mut out, &mut report).unwrap();
    let status = script.0.wait().unwrap();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(script.0.stderr.as_mut().unwrap(), &mut err);
    assert!(
        status.success() && report.contains("13 passed, 0 failed"),
        "{report}{err}"
    );
    gw.shutdown();
}

/// What the echo upstream said of the request: its `version` field.
fn version_seen(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["version"].as_str().unwrap().to_owned()
}

#[test]
fn h1_and_h2_clients_reach_h2c_and_tls_h2_upstreams_and_auto_falls_back_to_h1() {
    let dir = TempDir::new("h2-up");
    let pki = Pki::new("Test CA");
    let (cert, key) = pki.server(&["localhost"]).write(&dir, "srv");
    let ca = pki.write_ca(&dir, "ca");
    let tls_backend = |extra: &str| {
        in_process(&format!(
            "server: {{listen: \"127.0.0.1:0\", workers: 1, h2c: true{extra}}}\n\
             tls:\n  listen: \"127.0.0.1:0\"\n  certificates:\n    - {{cert: \"{}\", key: \"{}\"}}\n\
             routes:\n  \"/\": \"*\"\n",
            cert.display(),
            key.display()
        ))
    };
    let h2_backend = tls_backend("");
    let h1_backend = tls_backend(", h2: {enabled: false}");
    let plain_h1 =
        in_process("server: {listen: \"127.0.0.1:0\", workers: 1}\nroutes:\n  \"/\": \"*\"\n");
    let pool = |name: &str, addr: std::net::SocketAddr, protocol: &str, tls: bool| {
        let tls = if tls {
            format!(
                ", tls: {{ca: \"{}\", server_name: localhost}}",
                ca.display()
            )
        } else {
            String::new()
        };
        format!("    {name}: {{targets: [\"{addr}\"], protocol: {protocol}{tls}}}\n")
    };
    let gw = format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1, h2c: true}}\n\
         proxy:\n  upstreams:\n{}{}{}\
         routes:\n  \"/c/\": \"h2c://{}/\"\n  \"/p/\": \"http://plain/\"\n  \"/t/\": \"https://tls2/\"\n  \"/a/\": \"https://auto1/\"\n",
        pool("plain", h2_backend.addrs()[0], "h2", false),
        pool("tls2", h2_backend.tls_addrs()[0], "h2", true),
        pool("auto1", h1_backend.tls_addrs()[0], "auto", true),
        h2_backend.addrs()[0],
    )
    .replace(
        "routes:\n",
        &format!(
            "{}routes:\n  \"/q/\": \"http://autoplain/\"\n",
            pool("autoplain", plain_h1.addrs()[0], "auto", false)
        ),
    );
    let gw = in_process(&gw);
    let base = format!("http://{}", gw.addrs()[0]);
    for (path, upstream_version) in [
        ("/c/x", "HTTP/2"),
        ("/p/x", "HTTP/2"),
        ("/t/x", "HTTP/2"),
        ("/a/x", "HTTP/1.1"),
        // `auto` over plain TCP is HTTP/1.1 (regression: it spoke h2c, a 502 from any
        // HTTP/1.1 upstream).
        ("/q/x", "HTTP/1.1"),
    ] {
        for (client, args, sent) in [
            // An HTTP/1.1 client, a body of unknown length (chunked) going up.
            (
                "HTTP/1.1",
                &["-H", "transfer-encoding: chunked"][..],
                "chunked body",
            ),
            ("HTTP/2", &["--http2-prior-knowledge"][..], "h2 body"),
        ] {
            let url = format!("{base}{path}");
            let r = curl(&[args, &["--data-binary", sent, &url]].concat());
            assert_eq!((r.version.as_str(), r.status), (client, 200), "{path}");
            assert!(
                r.header("content-type")
                    .unwrap()
                    .starts_with("application/json"),
                "{}",
                r.head
            );
            assert_eq!(version_seen(&r.body), upstream_version, "{path}");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["body"], sent, "{path}");
        }
    }
    gw.shutdown();
}

#[test]
fn a_grpc_call_the_gateway_cannot_route_is_answered_with_http_200_and_a_grpc_status() {
    let gw = in_process(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1, h2c: true}}\nroutes:\n  \"/svc/\": \"h2c://127.0.0.1:{}/\"\n",
        closed_port()
    ));
    let url = format!("http://{}/svc/M", gw.addrs()[0]);
    let grpc = |url: &str| {
        curl(&[
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--http2-prior-knowledge",
            "--data-binary",
            "",
            url,
        ])
    };
    let r = grpc(&url);
    assert_eq!(
        (r.version.as_str(), r.status),
        ("HTTP/2", 200),
        "{}",
        r.head
    );
    assert_eq!(r.header("content-type"), Some("application/grpc"));
    assert_eq!(r.header("grpc-status"), Some("14"));
    assert!(
        r.header("grpc-message")
            .unwrap()
            .starts_with("AG-UPS-5021 "),
        "{}",
        r.head
    );
    assert!(r.body.is_empty());
    // No rule: UNIMPLEMENTED.
    let r = grpc(&format!("http://{}/nothing", gw.addrs()[0]));
    assert_eq!((r.status, r.header("grpc-status")), (200, Some("12")));
    // The same failure for a client that is not gRPC: an HTTP error.
    let r = curl(&["--http2-prior-knowledge", &url]);
    assert_eq!(r.status, 502);
    gw.shutdown();
}

/// Why a configuration does not start.
fn start_error(yaml: &str) -> String {
    match anygate::serve::Server::start(crate::support::config_of(yaml)) {
        Ok(_) => panic!("started"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_protocol_the_rule_cannot_speak_to_its_pool_is_a_config_error() {
    let e = start_error(
        "server: {listen: \"127.0.0.1:0\"}\nproxy:\n  upstreams:\n    u: {targets: [\"a:1\"], protocol: h2}\n\
         routes: {\"/\": \"https://u/\"}\n",
    );
    assert!(
        e.contains("test.yml:5:") && e.contains("pool `u` has `protocol` h2 or auto but no `tls`"),
        "{e}"
    );
    let e = start_error(
        "server: {listen: \"127.0.0.1:0\"}\nproxy:\n  upstreams:\n    u: {targets: [\"a:1\"], tls: {}}\n\
         routes: {\"/\": \"h2c://u/\"}\n",
    );
    assert!(e.contains("pool `u` speaks TLS (it has `tls`)"), "{e}");
}

#[test]
fn regression_a_304_or_204_from_an_h2_upstream_is_not_chunked_for_an_http1_client() {
    let up = in_process(
        "server: {listen: \"127.0.0.1:0\", workers: 1, h2c: true}\nroutes:\n  \"GET /nm\": \"304\"\n  \"GET /nc\": \"204\"\n  \"GET /ok\": \"OK fine\"\n",
    );
    let gw = in_process(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\nroutes:\n  \"/u/\": \"h2c://{}/\"\n",
        up.addrs()[0]
    ));
    // Three requests on one keep-alive connection: a stray `0\r\n\r\n` after the 304 or
    // the 204 would be read as the start of the next response.
    let mut c = std::net::TcpStream::connect(gw.addrs()[0]).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    c.write_all(
        b"GET /u/nm HTTP/1.1\r\nhost: a\r\n\r\nGET /u/nc HTTP/1.1\r\nhost: a\r\n\r\n\
          GET /u/ok HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut c, &mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_lowercase();
    let parts: Vec<&str> = text.split("http/1.1 ").skip(1).collect();
    assert_eq!(parts.len(), 3, "{text}");
    assert!(parts[0].starts_with("304"), "{text}");
    assert!(parts[1].starts_with("204"), "{text}");
    assert!(
        parts[2].starts_with("200") && parts[2].ends_with("\r\n\r\nfine"),
        "{text}"
    );
    for p in &parts[..2] {
        assert!(!p.contains("transfer-encoding"), "{text}");
        assert!(
            p.ends_with("\r\n\r\n"),
            "a body after a bodiless answer: {text}"
        );
    }
    gw.shutdown();
    up.shutdown();
}
