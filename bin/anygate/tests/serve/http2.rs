//! HTTP/2 end to end with real clients: `curl --http2` (ALPN over TLS) and
//! `--http2-prior-knowledge` (h2c), `nghttp` and `h2load` (Debian's `nghttp2-client`),
//! against every action.

use std::process::Command;

use crate::support::{TempDir, in_process};
use crate::tls::Pki;

/// One response as curl printed it (`-i`): its version, status, fields, body.
pub(crate) struct Got {
    pub(crate) version: String,
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Got {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Runs curl (bounded to 20 s) with `args` and parses its `-i` output.
pub(crate) fn curl(args: &[&str]) -> Got {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs (apt-get install curl)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status_line = head.lines().next().unwrap();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap().to_owned();
    let status = parts.next().unwrap().parse().unwrap();
    Got {
        version,
        status,
        head,
        body: raw[end + 4..].to_vec(),
    }
}

struct Setup {
    gw: anygate::serve::Server,
    backend: anygate::serve::Server,
    big: Vec<u8>,
    ca: std::path::PathBuf,
    _dirs: (TempDir, TempDir),
}

/// A gateway with a TLS listener and an h2c plain listener, serving fixed, echo, static and
/// proxy rules (`extra` goes in the `server` section).
fn setup(extra: &str) -> Setup {
    let dir = TempDir::new("h2");
    let pki = Pki::new("Test CA");
    let (cert, key) = pki.server(&["localhost"]).write(&dir, "srv");
    let ca = pki.write_ca(&dir, "ca");
    let site = TempDir::new("h2-site");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.0.join("big.bin"), &big).unwrap();
    std::fs::write(site.0.join("small.txt"), "small file\n").unwrap();
    let backend =
        in_process("server: {listen: \"127.0.0.1:0\", workers: 1}\nroutes:\n  \"/\": \"*\"\n");
    let gw = in_process(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1, h2c: true{extra}}}\n\
         tls:\n  listen: \"127.0.0.1:0\"\n  certificates:\n    - {{cert: \"{}\", key: \"{}\"}}\n\
         routes:\n  \"GET /fixed\": 'OK {{\"a\":1}}'\n  \"/echo\": \"*\"\n  \"/files/\": \"{}/\"\n  \"/up/\": \"http://{}/\"\n",
        cert.display(),
        key.display(),
        site.0.display(),
        backend.addrs()[0],
    ));
    Setup {
        gw,
        backend,
        big,
        ca,
        _dirs: (dir, site),
    }
}

impl Setup {
    /// curl arguments for `path` over TLS with ALPN h2.
    fn tls_url(&self, path: &str) -> Vec<String> {
        let port = self.gw.tls_addrs()[0].port();
        vec![
            "--http2".into(),
            "--cacert".into(),
            self.ca.display().to_string(),
            "--resolve".into(),
            format!("localhost:{port}:127.0.0.1"),
            format!("https://localhost:{port}{path}"),
        ]
    }

    /// curl arguments for `path` over h2c (prior knowledge).
    fn h2c_url(&self, path: &str) -> Vec<String> {
        vec![
            "--http2-prior-knowledge".into(),
            format!("http://{}{path}", self.gw.addrs()[0]),
        ]
    }
}

fn run(base: &[String], extra: &[&str]) -> Got {
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(base.iter().map(String::as_str));
    curl(&args)
}

/// Every action over one way of speaking HTTP/2 (`url` builds curl's arguments).
fn every_action(s: &Setup, url: impl Fn(&str) -> Vec<String>) {
    let r = run(&url("/fixed"), &[]);
    assert_eq!(
        (r.version.as_str(), r.status),
        ("HTTP/2", 200),
        "{}",
        r.head
    );
    assert_eq!(r.body, br#"{"a":1}"#);
    assert!(r.header("x-request-id").is_some() && r.header("date").is_some());
    let r = run(&url("/fixed"), &["-I"]);
    assert_eq!((r.status, r.header("content-length")), (200, Some("7")));
    assert!(r.body.is_empty());
    // Echo sees the request as it would over HTTP/1.1: host from :authority, the body.
    let r = run(
        &url("/echo?q=1"),
        &["--data-binary", "hello", "-H", "x-test: 1"],
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["body"], "hello", "{v}");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["headers"]["x-test"], "1");
    assert!(v["headers"]["host"].as_str().is_some(), "{v}");
    // Static: a body larger than any window, a range, HEAD, a revalidation.
    let r = run(&url("/files/big.bin"), &[]);
    assert_eq!(r.status, 200);
    assert!(
        r.body == s.big,
        "the file arrived changed ({} bytes)",
        r.body.len()
    );
    let etag = r.header("etag").expect("an etag").to_owned();
    let r = run(&url("/files/big.bin"), &["-H", "range: bytes=1000-1999"]);
    assert_eq!(r.status, 206);
    assert!(r.body == s.big[1000..2000]);
    let r = run(&url("/files/big.bin"), &["-I"]);
    assert_eq!(r.header("content-length"), Some("300000"));
    let r = run(
        &url("/files/big.bin"),
        &["-H", &format!("if-none-match: {etag}")],
    );
    assert_eq!((r.status, r.body.len()), (304, 0));
    let r = run(&url("/files/small.txt"), &[]);
    assert_eq!(r.body, b"small file\n");
    // Proxy to an HTTP/1.1 upstream, a body of unknown length sent chunked to it.
    let r = run(&url("/up/x?y=2"), &["--data-binary", "payload"]);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["body"], "payload", "{v}");
    assert_eq!(v["path"], "/x", "{v}");
    let r = run(&url("/nothing-here"), &[]);
    assert_eq!(r.status, 404);
    let e: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(e["error"]["status"], 404);
}

#[test]
fn curl_over_tls_alpn_and_h2c_gets_every_action() {
    let s = setup("");
    every_action(&s, |p| s.tls_url(p));
    every_action(&s, |p| s.h2c_url(p));
    // HTTP/1.1 still works on both listeners beside HTTP/2.
    let r = run(&s.h2c_url("/fixed")[1..], &["--http1.1"]);
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.1", 200));
    let tls = s.tls_url("/fixed");
    let r = run(&tls[1..], &["--http1.1"]);
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.1", 200));
    s.gw.shutdown();
    s.backend.shutdown();
}

#[test]
fn h2_can_be_turned_off_for_tls_listeners() {
    let s = setup(", h2: {enabled: false}");
    let r = run(&s.tls_url("/fixed"), &[]);
    assert_eq!(
        (r.version.as_str(), r.status),
        ("HTTP/1.1", 200),
        "{}",
        r.head
    );
    s.gw.shutdown();
    s.backend.shutdown();
}

/// Runs a tool of `nghttp2-client` and returns its stdout; it must exit 0.
fn nghttp2_tool(tool: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs (apt-get install nghttp2-client): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn nghttp_and_h2load_run_clean_over_tls_and_h2c() {
    let s = setup("");
    let h2c = format!("http://{}", s.gw.addrs()[0]);
    let tls = format!("https://{}", s.gw.tls_addrs()[0]);
    for base in [&h2c, &tls] {
        let body = nghttp2_tool("nghttp", &[&format!("{base}/fixed")]);
        assert_eq!(body, r#"{"a":1}"#);
        // Many streams at once on one connection, with a big static body each.
        let stat = nghttp2_tool(
            "nghttp",
            &["-n", "-s", "-m", "20", &format!("{base}/files/big.bin")],
        );
        assert_eq!(stat.matches(" 200 ").count(), 20, "{stat}");
        let report = nghttp2_tool(
            "h2load",
            &[
                "-n",
                "2000",
                "-c",
                "4",
                "-m",
                "10",
                &format!("{base}/fixed"),
            ],
        );
        assert!(
            report.contains("2000 succeeded, 0 failed, 0 errored"),
            "{report}"
        );
    }
    s.gw.shutdown();
    s.backend.shutdown();
}

/// curl over h2c; its exit code and stderr (it must fail).
fn curl_fails(url: &str) -> (i32, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            url,
        ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn proxied_bodies_arrive_whole_over_h2_and_one_cut_short_resets_its_stream() {
    use std::io::Write;
    let big: Vec<u8> = (0..500_000u32).map(|i| (i % 253) as u8).collect();
    let body = big.clone();
    let up = crate::proxy::upstream(move |seen, s| {
        let line = seen.request_line();
        if line.contains("/short") {
            // 100 bytes promised, 10 sent, then the connection ends.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789");
            false
        } else if line.contains("/chunked") {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            );
            true
        } else {
            crate::proxy::reply(s, "", &body)
        }
    });
    let gw = in_process(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1, h2c: true}}\nroutes:\n  \"/up/\": \"http://{}/\"\n",
        up.addr
    ));
    let base = format!("http://{}", gw.addrs()[0]);
    // A body larger than the client's window, streamed through as it arrives.
    let r = curl(&["--http2-prior-knowledge", &format!("{base}/up/big")]);
    assert_eq!((r.version.as_str(), r.status), ("HTTP/2", 200));
    assert!(r.body == big, "{} bytes arrived", r.body.len());
    // A chunked upstream body (no length): the stream ends with it.
    let r = curl(&["--http2-prior-knowledge", &format!("{base}/up/chunked")]);
    assert_eq!(r.body, b"hello world");
    assert!(r.header("transfer-encoding").is_none());
    // Cut short: RST_STREAM(INTERNAL_ERROR), never a clean end (curl: exit 92).
    let (code, err) = curl_fails(&format!("{base}/up/short"));
    assert_eq!(code, 92, "{err}");
    assert!(err.contains("INTERNAL_ERROR"), "{err}");
    gw.shutdown();
}

#[test]
fn the_rfc_9113_conformance_script_passes_with_only_the_known_h2_deviations() {
    let gw = in_process(
        "server: {listen: \"127.0.0.1:0\", workers: 1, h2c: true}\nroutes:\n  \"/\": \"*\"\n",
    );
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("timeout")
        .args(["300", "python3", "tests/h2_conformance.py"])
        .arg(gw.addrs()[0].to_string())
        .current_dir(&root)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(", 0 failed"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gw.shutdown();
}

#[test]
fn regression_a_get_ended_by_an_empty_data_frame_goes_up_without_a_body() {
    use std::io::{Read, Write};
    let up = crate::proxy::upstream(|_, s| crate::proxy::reply(s, "", b"up"));
    let gw = in_process(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1, h2c: true}}\nroutes:\n  \"/up/\": \"http://{}/\"\n",
        up.addr
    ));
    let mut c = std::net::TcpStream::connect(gw.addrs()[0]).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // GET /up/x, HEADERS without END_STREAM, then END_STREAM on an empty DATA frame, in
    // one write (HPACK: GET, http, a literal `:path`, `:authority: a`).
    let block = b"\x82\x86\x04\x05/up/x\x01\x01a";
    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0".to_vec();
    wire.extend_from_slice(&[0, 0, block.len() as u8, 1, 0x4, 0, 0, 0, 1]);
    wire.extend_from_slice(block);
    wire.extend_from_slice(&[0, 0, 0, 0, 0x1, 0, 0, 0, 1]);
    c.write_all(&wire).unwrap();
    let seen = up
        .seen
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the request reached the upstream");
    assert!(seen.fields("transfer-encoding").is_empty(), "{}", seen.head);
    assert!(seen.body.is_empty());
    // The answer comes back on stream 1 (a HEADERS frame).
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(5).any(|w| w[3] == 1 && w[4] & 0x4 != 0) {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    drop(c);
    gw.shutdown();
}

#[test]
fn expect_100_continue_over_h2_gets_its_interim_answer_before_the_body_goes() {
    let gw = in_process(
        "server: {listen: \"127.0.0.1:0\", workers: 1, h2c: true}\nroutes:\n  \"/echo\": \"*\"\n",
    );
    // curl waits for the `100` up to --expect100-timeout (30 s here) before it sends the
    // body: without the interim answer the exchange would pass --max-time.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--http2-prior-knowledge",
            "--max-time",
            "10",
            "--expect100-timeout",
            "30",
            "-H",
            "expect: 100-continue",
            "--data-binary",
            "waited body",
        ])
        .arg(format!("http://{}/echo", gw.addrs()[0]))
        .output()
        .expect("curl runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("< HTTP/2 100"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["body"], "waited body");
    gw.shutdown();
}
