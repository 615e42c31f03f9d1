//! ACME end to end against Pebble (Debian's `pebble` and `pebble-challtestsrv`, started
//! here on free loopback ports, the challenge server answering DNS with 127.0.0.1): the
//! real binary obtains, serves, renews and shares certificates.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::http::LIMIT;
use crate::support::{TempDir, spawn_serve};
use crate::tls::{Capture, Pki, client, named, request, tls};

/// A free loopback port (TCP and UDP) for a process started later (Pebble, the DNS, a
/// gateway whose ports Pebble must know beforehand). Taken from below Linux's ephemeral
/// range (32768–60999), where no `bind(…:0)` of another test and no outgoing connection
/// can land in the meantime, and never the same one twice in this process
/// (regression: a port picked by binding port 0 and released was taken by another test's
/// socket before the gateway bound it, and the gateway did not start).
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 500) as u16 * 20;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 12_000;
        let port = if port >= 32_768 { port - 12_000 } else { port };
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
}

/// A child killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and waits (bounded) for a line of its stdout or stderr containing `ready`.
fn start_until(mut cmd: Command, ready: &str) -> Killed {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?} (is Debian's `pebble` installed?): {e}"));
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    let child = Killed(child);
    loop {
        let line = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("{cmd:?} never said {ready:?}"));
        if line.contains(ready) {
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return child;
        }
    }
}

/// Pebble and its DNS, for one test.
struct Pebble {
    _dns: Killed,
    _ca: Killed,
    pub directory: String,
    /// Pebble's own HTTPS identity's CA (`acme.ca_bundle`).
    pub ca_bundle: PathBuf,
    management: SocketAddr,
    pki: Pki,
    _dir: TempDir,
}

impl Pebble {
    /// Validates HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`; certificates valid
    /// `validity` seconds; `nonce_reject` % of good nonces refused.
    fn start(http_port: u16, tls_port: u16, validity: u64, nonce_reject: u32) -> Self {
        let dir = TempDir::new("pebble");
        let pki = Pki::new("Pebble HTTPS test CA");
        let leaf = pki.server(&["localhost", "127.0.0.1"]);
        let (cert, key) = leaf.write(&dir, "pebble");
        let ca_bundle = pki.write_ca(&dir, "pebble-https-ca");
        let (dns_port, dns_mgmt, listen, management) =
            (free_port(), free_port(), free_port(), free_port());
        let mut dns = Command::new("pebble-challtestsrv");
        dns.args([
            "-management",
            &format!("127.0.0.1:{dns_mgmt}"),
            "-dns01",
            &format!("127.0.0.1:{dns_port}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
        ]);
        let dns = start_until(dns, "Starting management server");
        let config = dir.0.join("pebble.json");
        std::fs::write(
            &config,
            serde_json::json!({"pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": cert,
                "privateKey": key,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity,
            }})
            .to_string(),
        )
        .expect("pebble config");
        let mut ca = Command::new("pebble");
        ca.arg("-config")
            .arg(&config)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", nonce_reject.to_string())
            .env("PEBBLE_AUTHZREUSE", "0");
        let ca = start_until(ca, "ACME directory available");
        Self {
            _dns: dns,
            _ca: ca,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            ca_bundle,
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            pki,
            _dir: dir,
        }
    }

    /// The root Pebble issues under (new at each start), PEM.
    fn root_pem(&self) -> String {
        let mut s = tls(
            self.management,
            client(&self.pki, &[], None),
            ServerName::IpAddress(self.management.ip().into()),
        );
        let r = request(
            &mut s,
            "GET /roots/0 HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        );
        assert_eq!(r.status(), 200, "{}", r.head);
        r.body_str()
    }

    /// A rustls client trusting what Pebble issues.
    fn issued_client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.root_pem().as_bytes()).expect("root"))
            .expect("add");
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }
}

/// A gateway process with its stderr lines.
struct Gw {
    _child: Killed,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    seen: std::cell::RefCell<Vec<String>>,
    admin: SocketAddr,
    https: SocketAddr,
}

impl Gw {
    /// Starts the binary on `config` (TLS on `https`, admin on `admin`), without waiting.
    fn spawn(config: &Path, https: u16, admin: u16) -> Self {
        let (child, lines) = spawn_serve(config, Stdio::null());
        Self {
            _child: Killed(child),
            lines,
            seen: Default::default(),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            https: SocketAddr::from(([127, 0, 0, 1], https)),
        }
    }

    /// Starts it and waits until it listens.
    fn start(config: &Path, https: u16, admin: u16) -> Self {
        let gw = Self::spawn(config, https, admin);
        gw.wait_line("listening on https://");
        gw
    }

    /// Waits for a stderr line containing `needle` (failing on one that says `panicked`).
    fn wait_line(&self, needle: &str) -> String {
        loop {
            let line = self.lines.recv_timeout(LIMIT).unwrap_or_else(|e| {
                panic!(
                    "no stderr line with {needle:?} ({e}); it said:\n{}",
                    self.seen.borrow().join("\n")
                )
            });
            assert!(!line.contains("panicked"), "{line}");
            self.seen.borrow_mut().push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Whether a stderr line read so far contains `needle`.
    fn saw(&self, needle: &str) -> bool {
        self.seen.borrow().iter().any(|l| l.contains(needle))
    }

    /// `/metrics` now.
    fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.admin).expect("admin");
        s.set_read_timeout(Some(LIMIT)).expect("timeout");
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
            .expect("write");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        text
    }

    /// `anygate_acme_orders_total{result}` as scraped now.
    fn orders(&self, result: &str) -> u64 {
        let text = self.metrics();
        let key = format!("anygate_acme_orders_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .trim()
            .parse()
            .expect("a count")
    }
}

/// What `openssl s_client` trusting `root` says of the certificate served for `name`:
/// whether it verified, and its serial.
fn openssl_verify(addr: SocketAddr, name: &str, root: &Path) -> (bool, String) {
    let script = format!(
        "openssl s_client -connect {addr} -servername {name} -CAfile {} -verify_return_error -verify_hostname {name} </dev/null 2>&1",
        root.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let verified = text.contains("Verify return code: 0 (ok)");
    let pem: String = {
        let start = text.find("-----BEGIN CERTIFICATE-----");
        let end = text.find("-----END CERTIFICATE-----");
        match (start, end) {
            (Some(s), Some(e)) => text[s..e + "-----END CERTIFICATE-----".len()].to_owned(),
            _ => return (false, format!("no certificate: {text}")),
        }
    };
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
    (verified, serial(&der))
}

/// A certificate's serial number, in hex (read with openssl from the DER).
fn serial(der: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl x509");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(der)
        .expect("der");
    let out = child.wait_with_output().expect("serial");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

struct Ports {
    http: u16,
    https: u16,
    admin: u16,
}

impl Ports {
    fn new() -> Self {
        Self {
            http: free_port(),
            https: free_port(),
            admin: free_port(),
        }
    }
}

/// Where a test's gateways keep their files, and the CA they use.
struct Site<'a> {
    dir: &'a TempDir,
    pebble: &'a Pebble,
    storage: &'a Path,
}

/// A gateway configuration for `names` on `site`; `extra` goes into `acme`.
fn config(
    site: &Site<'_>,
    file: &str,
    ports: &Ports,
    plain: bool,
    names: &[&str],
    extra: &str,
) -> PathBuf {
    let (dir, pebble, storage) = (site.dir, site.pebble, site.storage);
    let listen = if plain {
        format!("\"127.0.0.1:{}\"", ports.http)
    } else {
        "[]".to_owned()
    };
    let yaml = format!(
        "server: {{listen: {listen}, workers: 1}}\n\
         tls: {{listen: \"127.0.0.1:{https}\"}}\n\
         admin: {{listen: \"127.0.0.1:{admin}\"}}\n\
         acme:\n  directory: \"{dir_url}\"\n  ca_bundle: \"{ca}\"\n  storage: \"{storage}\"\n  domains: [{names}]\n  retry_min: 1s\n  retry_max: 2s\n{extra}\
         routes:\n  \"/\": \"OK through acme\"\n",
        https = ports.https,
        admin = ports.admin,
        dir_url = pebble.directory,
        ca = pebble.ca_bundle.display(),
        storage = storage.display(),
        names = names.join(", "),
    );
    let path = dir.0.join(file);
    std::fs::write(&path, yaml).expect("config");
    path
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn get(s: &mut impl crate::tls::ReadWrite, host: &str) -> crate::tls::Response {
    request(s, &format!("GET /x HTTP/1.1\r\nhost: {host}\r\n\r\n"))
}

/// A gateway for `name` under `pebble`, once its first certificate is installed: its
/// directory, storage, configuration file, the gateway, and Pebble's root written out.
struct Issued {
    dir: TempDir,
    storage: PathBuf,
    file: PathBuf,
    gw: Gw,
    root: PathBuf,
}

fn issued(
    tag: &str,
    ports: &Ports,
    pebble: &Pebble,
    plain: bool,
    name: &str,
    extra: &str,
) -> Issued {
    let dir = TempDir::new(tag);
    let storage = dir.0.join("acme");
    let site = Site {
        dir: &dir,
        pebble,
        storage: &storage,
    };
    let file = config(&site, "a.yml", ports, plain, &[name], extra);
    let gw = Gw::start(&file, ports.https, ports.admin);
    gw.wait_line(&format!("`{name}`: new certificate installed"));
    let root = dir.0.join("pebble-root.pem");
    std::fs::write(&root, pebble.root_pem()).expect("root");
    Issued {
        dir,
        storage,
        file,
        gw,
        root,
    }
}

#[test]
fn http_01_issues_a_certificate_that_a_client_trusting_the_ca_accepts_and_a_restart_reuses_it() {
    let ports = Ports::new();
    // 30 % of good nonces refused: instant-acme's badNonce retry and our order retry
    // absorb them.
    let pebble = Pebble::start(ports.http, ports.https, 3_600, 30);
    let Issued {
        dir,
        storage,
        file,
        gw,
        root,
    } = issued("acme-http01", &ports, &pebble, true, "a.acme.test", "");
    // Nothing pending now: an unknown token is a 404 on the plain listener, not a route.
    let plain = SocketAddr::from(([127, 0, 0, 1], ports.http));
    let r = crate::http::one(
        plain,
        b"GET /.well-known/acme-challenge/nope HTTP/1.1\r\nhost: a.acme.test\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 404, "{r:?}");
    let (verified, first) = openssl_verify(gw.https, "a.acme.test", &root);
    assert!(
        verified,
        "openssl did not verify the served certificate ({first})"
    );
    let mut s = tls(gw.https, pebble.issued_client(), named("a.acme.test"));
    let r = get(&mut s, "a.acme.test");
    assert_eq!(r.status(), 200, "{}", r.head);
    assert_eq!(r.body_str(), "through acme");
    assert_eq!(gw.orders("issued"), 1);
    assert!(gw.saw("acme: account created"));
    let expiry = r#"anygate_tls_certificate_expiry_seconds{name="a.acme.test"} "#;
    assert!(
        gw.metrics().contains(expiry),
        "the managed certificate's expiry is a metric"
    );

    // Persisted: the key and the account are the owner's alone.
    assert_eq!(
        mode(&storage.join("certificates/a.acme.test/key.pem")),
        0o600
    );
    let account = std::fs::read_dir(&storage)
        .expect("storage")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("account-"))
        .expect("an account file");
    assert_eq!(mode(&account.path()), 0o600);

    // A restart serves the stored certificate and orders nothing for it.
    drop(s);
    drop(gw);
    let gw = Gw::start(&file, ports.https, ports.admin);
    let (verified, again) = openssl_verify(gw.https, "a.acme.test", &root);
    assert!(verified);
    assert_eq!(again, first, "a restart must serve the stored certificate");
    assert_eq!(gw.orders("issued"), 0);
    assert_eq!(gw.orders("failed"), 0);

    // A name added later is ordered with the stored account: none is created.
    drop(gw);
    let site = Site {
        dir: &dir,
        pebble: &pebble,
        storage: &storage,
    };
    let file = config(
        &site,
        "a.yml",
        &ports,
        true,
        &["a.acme.test", "a2.acme.test"],
        "",
    );
    let gw = Gw::start(&file, ports.https, ports.admin);
    gw.wait_line("`a2.acme.test`: new certificate installed");
    assert!(!gw.saw("account created"), "the stored account is reused");
    assert_eq!(gw.orders("issued"), 1, "only the new name is ordered");
    let (verified, kept) = openssl_verify(gw.https, "a.acme.test", &root);
    assert!(verified);
    assert_eq!(kept, first);
}

#[test]
fn tls_alpn_01_issues_a_certificate_with_no_plain_listener() {
    let ports = Ports::new();
    let pebble = Pebble::start(free_port(), ports.https, 3_600, 0);
    let scene = issued(
        "acme-alpn",
        &ports,
        &pebble,
        false,
        "b.acme.test",
        "  challenge: tls-alpn-01\n",
    );
    let (gw, root) = (&scene.gw, &scene.root);
    let (verified, serial) = openssl_verify(gw.https, "b.acme.test", root);
    assert!(
        verified,
        "openssl did not verify the served certificate ({serial})"
    );
    // With no challenge pending, `acme-tls/1` is refused: it never reaches HTTP.
    let mut config = ClientConfig::clone(&pebble.issued_client());
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), named("b.acme.test")).expect("conn");
    let mut tcp = TcpStream::connect(gw.https).expect("connect");
    tcp.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut refused = None;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.expect("an acme-tls/1 handshake with no pending challenge must fail");
    assert!(
        refused.contains("NoApplicationProtocol"),
        "refused by ALPN, not otherwise: {refused}"
    );
}

#[test]
fn a_short_lived_certificate_is_renewed_without_a_restart_or_a_dropped_connection() {
    let ports = Ports::new();
    // 30 s certificates renewed 25 s before expiry: at a third of their life, ~10 s.
    let pebble = Pebble::start(ports.http, ports.https, 30, 0);
    let scene = issued(
        "acme-renew",
        &ports,
        &pebble,
        true,
        "c.acme.test",
        "  renew_before: 25s\n",
    );
    let (gw, root) = (&scene.gw, &scene.root);
    let (_, first) = openssl_verify(gw.https, "c.acme.test", root);
    let mut kept = tls(gw.https, pebble.issued_client(), named("c.acme.test"));
    assert_eq!(get(&mut kept, "c.acme.test").status(), 200);
    gw.wait_line("acme: renewing a certificate for `c.acme.test`");
    gw.wait_line("`c.acme.test`: new certificate installed");
    let (verified, second) = openssl_verify(gw.https, "c.acme.test", root);
    assert!(verified);
    assert_ne!(
        second, first,
        "a new connection gets the renewed certificate"
    );
    // The connection made with the old certificate goes on.
    let r = get(&mut kept, "c.acme.test");
    assert_eq!(r.status(), 200, "{}", r.head);
    assert!(gw.orders("issued") >= 2);
    // A certificate within 30 days of its expiry is warned about (once a day).
    assert!(gw.saw("acme: the certificate of `c.acme.test` expires in 0 days"));
}

#[test]
fn a_failed_validation_is_retried_with_backoff_and_reported() {
    let ports = Ports::new();
    // The CA validates HTTP-01 on a port nobody listens on.
    let pebble = Pebble::start(free_port(), ports.https, 3_600, 0);
    let dir = TempDir::new("acme-fail");
    let storage = dir.0.join("acme");
    let file = config(
        &Site {
            dir: &dir,
            pebble: &pebble,
            storage: &storage,
        },
        "a.yml",
        &ports,
        true,
        &["d.acme.test"],
        "",
    );
    let gw = Gw::start(&file, ports.https, ports.admin);
    let first = gw.wait_line("`d.acme.test`: the order failed");
    assert!(first.contains("the CA refused the order"), "{first}");
    gw.wait_line("`d.acme.test`: the order failed");
    assert_eq!(gw.orders("issued"), 0);
    assert!(gw.orders("failed") >= 2);
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(storage.join("certificates/d.acme.test/state.json")).expect("state"),
    )
    .expect("json");
    assert!(state["failures"].as_u64() >= Some(2), "{state}");
    assert!(
        state["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{state}"
    );
    // `diagnose` reads the storage directory.
    let out = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["diagnose", "-c"])
        .arg(&file)
        .output()
        .expect("diagnose");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("acme") && l.contains("d.acme.test:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("no certificate yet") && line.contains("last error:"),
        "{line}"
    );
}

/// Writes the lease record of `name` in `storage` for `holder` (no flock: as an instance
/// on another NFS client would hold it).
fn hold_lease(storage: &Path, name: &str, holder: &str) {
    let locks = storage.join("locks");
    std::fs::create_dir_all(&locks).expect("locks");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    std::fs::write(
        locks.join(format!("{name}.lock")),
        serde_json::json!({"holder": holder, "expires": now + 120}).to_string(),
    )
    .expect("lease");
}

#[test]
fn two_gateways_sharing_one_storage_place_exactly_one_order_and_both_serve_it() {
    let (a, b) = (Ports::new(), Ports::new());
    // The CA validates on B's plain port, and A orders: B must answer A's challenge from
    // the shared storage.
    let pebble = Pebble::start(b.http, b.https, 3_600, 0);
    let dir = TempDir::new("acme-shared");
    let storage = dir.0.join("shared");
    let name = "e.acme.test";
    // Both wait while someone else holds the name; then the lease goes to A (by its
    // instance id), so which one orders is not a race.
    hold_lease(&storage, name, "someone-else");
    let site = Site {
        dir: &dir,
        pebble: &pebble,
        storage: &storage,
    };
    let fa = config(&site, "a.yml", &a, true, &[name], "");
    let fb = config(&site, "b.yml", &b, true, &[name], "");
    let ga = Gw::spawn(&fa, a.https, a.admin);
    let started = ga.wait_line("as instance ");
    let id = started
        .rsplit("as instance ")
        .next()
        .expect("id")
        .trim()
        .to_owned();
    ga.wait_line("listening on https://");
    let gb = Gw::start(&fb, b.https, b.admin);
    hold_lease(&storage, name, &id);
    ga.wait_line("`e.acme.test`: new certificate installed");
    gb.wait_line("serving the stored certificate of `e.acme.test`");
    assert_eq!(ga.orders("issued") + ga.orders("failed"), 1);
    assert_eq!(
        gb.orders("issued") + gb.orders("failed"),
        0,
        "B orders nothing"
    );
    let root = dir.0.join("pebble-root.pem");
    std::fs::write(&root, pebble.root_pem()).expect("root");
    let (va, sa) = openssl_verify(ga.https, name, &root);
    let (vb, sb) = openssl_verify(gb.https, name, &root);
    assert!(va && vb, "{sa} {sb}");
    assert_eq!(sa, sb, "both serve the one certificate");
}

#[test]
fn the_acme_example_checks_and_check_warns_about_a_missing_challenge_port_and_an_unrouted_name() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/acme/anygate.yml"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["check", "-c", example])
        .output()
        .expect("check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("(http-01) for example.com, www.example.com"),
        "{stdout}"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = TempDir::new("acme-check");
    let file = dir.0.join("a.yml");
    std::fs::write(
        &file,
        "server: {listen: []}\ntls: {listen: \"127.0.0.1:8443\"}\nacme: {challenge: tls-alpn-01, domains: [a.example.com, b.example.com]}\nroutes:\n  \"a.example.com/\": OK\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("needs a TLS listener on port 443"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no route serves `b.example.com`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("no route serves `a.example.com`"),
        "{stderr}"
    );
}

/// A gateway whose CA is unreachable, answering the challenges another instance left in
/// the shared storage: `(gateway, storage, its plain port)`.
fn with_published_challenges(challenge: &str, dir: &TempDir) -> (Gw, PathBuf, u16) {
    let ports = Ports::new();
    let storage = dir.0.join("acme");
    let digest: String = (0u8..32).map(|b| format!("{:02x}", b * 7)).collect();
    for (sub, file, text) in [
        ("http-01", "tok-EN_1", "tok-EN_1.thumbprint"),
        ("tls-alpn-01", "x.acme.test", digest.as_str()),
    ] {
        let d = storage.join("challenges").join(sub);
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::write(d.join(file), text).expect("challenge");
    }
    // Roots of its own, so that nothing depends on the system's bundle.
    let ca = Pki::new("unused CA").write_ca(dir, "ca");
    let file = dir.0.join("a.yml");
    std::fs::write(
        &file,
        format!(
            "server: {{listen: \"127.0.0.1:{}\", workers: 1}}\ntls: {{listen: \"127.0.0.1:{}\"}}\nadmin: {{listen: \"127.0.0.1:{}\"}}\nacme: {{directory: \"https://127.0.0.1:1/dir\", ca_bundle: \"{}\", storage: \"{}\", domains: [x.acme.test], challenge: {challenge}, retry_min: 1h}}\nroutes: {{\"/\": \"OK routed\"}}\n",
            ports.http,
            ports.https,
            ports.admin,
            ca.display(),
            storage.display()
        ),
    )
    .expect("config");
    let gw = Gw::start(&file, ports.https, ports.admin);
    // The first order fails (no CA): by then the loop has mirrored the storage.
    gw.wait_line("`x.acme.test`: the order failed");
    (gw, storage, ports.http)
}

#[test]
fn a_published_tls_alpn_01_challenge_is_answered_with_its_certificate_and_the_connection_closes() {
    let dir = TempDir::new("acme-alpn-answer");
    let (gw, _, _) = with_published_challenges("tls-alpn-01", &dir);
    let capture = Arc::new(Capture(Default::default(), Default::default(), true));
    let mut config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .dangerous()
    .with_custom_certificate_verifier(capture.clone())
    .with_no_client_auth();
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let mut s = tls(gw.https, Arc::new(config), named("x.acme.test"));
    assert_eq!(s.conn.alpn_protocol(), Some(&b"acme-tls/1"[..]));
    let cert = capture
        .0
        .lock()
        .expect("lock")
        .take()
        .expect("a certificate");
    // RFC 8737: the acmeIdentifier extension (1.3.6.1.5.5.7.1.31, critical) holds the
    // digest as an OCTET STRING, and the name is the only SAN.
    let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
    let at = cert
        .windows(oid.len())
        .position(|w| w == oid)
        .expect("the acmeIdentifier extension");
    let digest: Vec<u8> = (0u8..32).map(|b| b * 7).collect();
    let mut octets = vec![0x04, 0x20];
    octets.extend_from_slice(&digest);
    assert!(
        cert[at..]
            .windows(octets.len())
            .any(|w| w == octets.as_slice()),
        "the digest is in the extension"
    );
    assert!(cert.windows(11).any(|w| w == b"x.acme.test"));
    // No HTTP on that connection: the gateway closes it after the handshake.
    let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x.acme.test\r\n\r\n");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn a_published_http_01_challenge_is_answered_on_the_plain_listener_before_any_route() {
    let dir = TempDir::new("acme-http-answer");
    let (_gw, _, http) = with_published_challenges("http-01", &dir);
    let plain = SocketAddr::from(([127, 0, 0, 1], http));
    let r = crate::http::one(
        plain,
        b"GET /.well-known/acme-challenge/tok-EN_1 HTTP/1.1\r\nhost: x.acme.test\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"tok-EN_1.thumbprint");
    let r = crate::http::one(
        plain,
        b"POST /.well-known/acme-challenge/tok-EN_1 HTTP/1.1\r\nhost: x.acme.test\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405, "{r:?}");
    // Any other path is the routes' (`/` answers OK).
    let r = crate::http::one(
        plain,
        b"GET /.well-known/other HTTP/1.1\r\nhost: x.acme.test\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"routed");
}

#[test]
fn nonce_rejections_are_retried_and_reported() {
    let ports = Ports::new();
    // Every good nonce refused: instant-acme's three badNonce retries fail, the order
    // fails with the CA's reason, and it is tried again after the backoff.
    let pebble = Pebble::start(ports.http, ports.https, 3_600, 100);
    let dir = TempDir::new("acme-nonce");
    let storage = dir.0.join("acme");
    let site = Site {
        dir: &dir,
        pebble: &pebble,
        storage: &storage,
    };
    let file = config(&site, "a.yml", &ports, true, &["f.acme.test"], "");
    let gw = Gw::start(&file, ports.https, ports.admin);
    for _ in 0..2 {
        let line = gw.wait_line("`f.acme.test`: the order failed");
        assert!(line.contains("badNonce"), "{line}");
    }
    assert!(gw.orders("failed") >= 2);
    assert_eq!(gw.orders("issued"), 0);
}
