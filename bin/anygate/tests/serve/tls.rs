//! TLS end to end: certificates made here with rcgen, a rustls client over real sockets.

// Test clients, not the data path: a lock in a certificate-capturing verifier, and the
// wall clock for deadlines.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::http::LIMIT;
use crate::support::{Gateway, TempDir, in_process};

/// A test certificate authority.
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    pub ca_pem: String,
}

/// A certificate and its key, in PEM, and the certificate's DER.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Leaf {
    /// Writes `NAME.pem` and `NAME.key` into `dir`.
    pub fn write(&self, dir: &TempDir, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.0.join(format!("{name}.pem")),
            dir.0.join(format!("{name}.key")),
        );
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            ca_pem,
        }
    }

    /// Issues a certificate: its subject is `params`' own names, then `CN=cn` (so it reads
    /// `CN=cn,...` in RFC 4514's most-specific-first order).
    fn issue(
        &self,
        mut params: CertificateParams,
        cn: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> Leaf {
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A server certificate for `names`.
    pub fn server(&self, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        self.issue(params, names[0], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with common name `cn`, organization "AnyGate Test".
    pub fn client(&self, cn: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "AnyGate Test");
        self.issue(params, cn, ExtendedKeyUsagePurpose::ClientAuth)
    }

    pub fn write_ca(&self, dir: &TempDir, name: &str) -> PathBuf {
        let path = dir.0.join(format!("{name}.pem"));
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        roots
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client trusting `pki`, offering `alpn`, with an optional client certificate.
pub fn client(pki: &Pki, alpn: &[&[u8]], cert: Option<&Leaf>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(pki.roots());
    let mut config = match cert {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(c.der.clone())],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Accepts any certificate and remembers the one it saw (to tell which one was served),
/// and the OCSP response stapled to it. With the third field set, handshake signatures
/// are not checked either (a TLS-ALPN-01 certificate's critical extension stops webpki
/// from parsing it at all).
#[derive(Debug, Default)]
pub struct Capture(pub Mutex<Option<Vec<u8>>>, pub Mutex<Vec<u8>>, pub bool);

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        ocsp: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
        *self.1.lock().unwrap() = ocsp.to_vec();
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.2 {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.2 {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The certificate served for `sni` (`None`: no SNI at all).
fn served_cert(addr: SocketAddr, sni: Option<&str>) -> Vec<u8> {
    served(addr, sni).0
}

/// The certificate served for `sni`, and the OCSP response stapled to it (empty: none).
fn served(addr: SocketAddr, sni: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let capture = Arc::new(Capture::default());
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(sni.unwrap_or("127.0.0.1").to_owned()).unwrap();
    let mut s = tls(addr, Arc::new(config), name);
    let r = request(
        &mut s,
        "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(r.head.starts_with("HTTP/1.1 200"), "{}", r.head);
    let cert = capture
        .0
        .lock()
        .unwrap()
        .take()
        .expect("a certificate was seen");
    let ocsp = std::mem::take(&mut *capture.1.lock().unwrap());
    (cert, ocsp)
}

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr`, handshake done.
pub fn tls(addr: SocketAddr, config: Arc<ClientConfig>, name: ServerName<'static>) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let mut conn = ClientConnection::new(config, name).unwrap();
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    StreamOwned::new(conn, tcp)
}

pub fn named(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

pub struct Response {
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn status(&self) -> u16 {
        self.head[9..12].parse().unwrap()
    }
}

/// Sends `raw` and reads one response (framed by `content-length`, or to the close).
pub fn request(s: &mut impl ReadWrite, raw: &str) -> Response {
    s.write_all(raw.as_bytes()).unwrap();
    s.flush().unwrap();
    read_response(s).expect("a response")
}

pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

pub fn read_response(s: &mut impl Read) -> std::io::Result<Response> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let length = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length: ")
            .map(|v| v.trim().parse::<usize>().unwrap())
    });
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            s.read_exact(&mut body)?;
        }
        None if head.starts_with("HTTP/1.1 101") || head.starts_with("HTTP/1.1 308") => {}
        None => {
            let _ = s.read_to_end(&mut body);
        }
    }
    Ok(Response { head, body })
}

/// A gateway with a TLS listener: `tls` is the body of the `tls` section (indented two
/// spaces), `routes` the rules.
fn tls_gateway(tls: &str, routes: &str) -> anygate::serve::Server {
    in_process(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\ntls:\n  listen: \"127.0.0.1:0\"\n{tls}routes:\n{routes}"
    ))
}

fn certs_yaml(files: &[(PathBuf, PathBuf)]) -> String {
    let mut out = "  certificates:\n".to_owned();
    for (c, k) in files {
        out.push_str(&format!(
            "    - {{cert: \"{}\", key: \"{}\"}}\n",
            c.display(),
            k.display()
        ));
    }
    out
}

#[test]
fn sni_picks_the_exact_then_the_wildcard_then_the_default_certificate() {
    let dir = TempDir::new("tls-sni");
    let pki = Pki::new("Test CA");
    let exact = pki.server(&["a.example.com"]);
    let wild = pki.server(&["*.example.com"]);
    let default = pki.server(&["default.test"]);
    let files = [
        exact.write(&dir, "exact"),
        wild.write(&dir, "wild"),
        default.write(&dir, "default"),
    ];
    let s = tls_gateway(
        &format!(
            "{}  default_certificate: default.test\n",
            certs_yaml(&files)
        ),
        "  \"/\": \"OK\"\n",
    );
    let addr = s.tls_addrs()[0];
    assert_eq!(served_cert(addr, Some("a.example.com")), exact.der);
    assert_eq!(served_cert(addr, Some("A.Example.COM")), exact.der);
    assert_eq!(served_cert(addr, Some("b.example.com")), wild.der);
    // One label deep only.
    assert_eq!(served_cert(addr, Some("x.b.example.com")), default.der);
    assert_eq!(served_cert(addr, Some("example.com")), default.der);
    assert_eq!(served_cert(addr, Some("unknown.test")), default.der);
    assert_eq!(served_cert(addr, None), default.der);
    s.shutdown();
}

#[test]
fn a_verifying_client_gets_http1_by_alpn_and_the_tls_facts_reach_echo() {
    let dir = TempDir::new("tls-alpn");
    let pki = Pki::new("Test CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let s = tls_gateway(&certs_yaml(&files), "  \"/echo\": \"*\"\n");
    let addr = s.tls_addrs()[0];
    let mut c = tls(addr, client(&pki, &[b"http/1.1"], None), named("localhost"));
    assert_eq!(c.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let r = request(&mut c, "GET /echo HTTP/1.1\r\nhost: localhost\r\n\r\n");
    assert_eq!(r.status(), 200, "{}", r.head);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["tls"]["sni"], "localhost");
    assert_eq!(v["tls"]["alpn"], "http/1.1");
    assert_eq!(v["tls"]["version"], "TLSv1.3");
    assert!(
        v["tls"]["cipher"].as_str().unwrap().starts_with("TLS13_"),
        "{v}"
    );
    assert_eq!(v["tls"]["client_subject"], serde_json::Value::Null);
    // The same connection serves the next request (keep-alive over TLS).
    let r = request(&mut c, "GET /echo HTTP/1.1\r\nhost: localhost\r\n\r\n");
    assert_eq!(r.status(), 200);
    // A client offering h2 and http/1.1 gets h2 (the server's preference).
    let c = tls(
        addr,
        client(&pki, &[b"h2", b"http/1.1"], None),
        named("localhost"),
    );
    assert_eq!(c.conn.alpn_protocol(), Some(&b"h2"[..]));
    // A client offering only a protocol this build does not speak is refused.
    let mut conn = ClientConnection::new(client(&pki, &[b"h3"], None), named("localhost")).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let refused = (0..10).any(|_| conn.complete_io(&mut tcp).is_err());
    assert!(refused, "ALPN h3 alone must fail the handshake");
    s.shutdown();
}

/// A ClientHello that offers only `version` (no supported_versions extension).
fn legacy_client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    // ECDHE-ECDSA-AES128-GCM-SHA256 (which the server has), ECDHE-RSA-AES128-SHA.
    body.extend_from_slice(&[0, 4, 0xc0, 0x2b, 0xc0, 0x13]);
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
    record.extend_from_slice(&hs);
    record
}

#[test]
fn tls_1_0_and_1_1_client_hellos_get_a_protocol_version_alert() {
    let dir = TempDir::new("tls-old");
    let pki = Pki::new("Test CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let s = tls_gateway(&certs_yaml(&files), "  \"/\": \"OK\"\n");
    for version in [[3, 1], [3, 2]] {
        let mut tcp = TcpStream::connect(s.tls_addrs()[0]).unwrap();
        tcp.set_read_timeout(Some(LIMIT)).unwrap();
        tcp.write_all(&legacy_client_hello(version)).unwrap();
        let mut reply = Vec::new();
        let _ = tcp.read_to_end(&mut reply);
        // An alert record, fatal (2): protocol_version (70) or handshake_failure (40), and
        // nothing else (no ServerHello).
        assert_eq!(reply.len(), 7, "{version:?}: {reply:?}");
        assert_eq!(reply[0], 0x15, "{version:?}: not an alert: {reply:?}");
        assert_eq!(reply[5], 2, "{version:?}: {reply:?}");
        assert!(matches!(reply[6], 40 | 70), "{version:?}: {reply:?}");
    }
    s.shutdown();
}

#[test]
fn a_second_connection_resumes_the_session() {
    let dir = TempDir::new("tls-resume");
    let pki = Pki::new("Test CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    for profile in ["intermediate", "modern"] {
        let s = tls_gateway(
            &format!("  profile: {profile}\n{}", certs_yaml(&files)),
            "  \"/echo\": \"*\"\n",
        );
        let config = client(&pki, &[], None);
        let mut resumed = Vec::new();
        for _ in 0..2 {
            let mut c = tls(s.tls_addrs()[0], config.clone(), named("localhost"));
            let r = request(&mut c, "GET /echo HTTP/1.1\r\nhost: localhost\r\n\r\n");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            resumed.push((c.conn.handshake_kind(), v["tls"]["resumed"].clone()));
        }
        assert_eq!(
            resumed[0],
            (Some(rustls::HandshakeKind::Full), false.into()),
            "{profile}"
        );
        assert_eq!(
            resumed[1],
            (Some(rustls::HandshakeKind::Resumed), true.into()),
            "{profile}"
        );
        s.shutdown();
    }
}

#[test]
fn a_tls_1_2_client_is_served_by_intermediate_and_refused_by_modern() {
    let dir = TempDir::new("tls-12");
    let pki = Pki::new("Test CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let tls12 = {
        let mut c = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(pki.roots())
            .with_no_client_auth();
        c.alpn_protocols = vec![];
        Arc::new(c)
    };
    let s = tls_gateway(&certs_yaml(&files), "  \"/echo\": \"*\"\n");
    let mut c = tls(s.tls_addrs()[0], tls12.clone(), named("localhost"));
    let r = request(&mut c, "GET /echo HTTP/1.1\r\nhost: localhost\r\n\r\n");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["tls"]["version"], "TLSv1.2");
    assert!(
        v["tls"]["cipher"]
            .as_str()
            .unwrap()
            .starts_with("TLS_ECDHE_ECDSA_WITH_"),
        "{v}"
    );
    s.shutdown();
    let s = tls_gateway(
        &format!("  profile: modern\n{}", certs_yaml(&files)),
        "  \"/\": \"OK\"\n",
    );
    let mut conn = ClientConnection::new(tls12, named("localhost")).unwrap();
    let mut tcp = TcpStream::connect(s.tls_addrs()[0]).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    assert!(
        (0..10).any(|_| conn.complete_io(&mut tcp).is_err()),
        "modern must refuse TLS 1.2"
    );
    s.shutdown();
}

/// Whether a request over a connection made with `config` gets a response at all.
fn answered(addr: SocketAddr, config: Arc<ClientConfig>) -> Option<u16> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let mut tcp = tcp;
    let mut conn = ClientConnection::new(config, named("localhost")).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).ok()?;
    }
    let mut s = StreamOwned::new(conn, tcp);
    s.write_all(b"GET /echo HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .ok()?;
    read_response(&mut s).ok().map(|r| r.status())
}

#[test]
fn required_client_auth_refuses_no_certificate_and_an_untrusted_one() {
    let dir = TempDir::new("tls-mtls");
    let pki = Pki::new("Test CA");
    let clients = Pki::new("Clients CA");
    let other = Pki::new("Other CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let ca = clients.write_ca(&dir, "clients-ca");
    let s = tls_gateway(
        &format!(
            "{}  client_auth: {{mode: required, ca: \"{}\"}}\n",
            certs_yaml(&files),
            ca.display()
        ),
        "  \"/echo\": \"*\"\n",
    );
    let addr = s.tls_addrs()[0];
    assert_eq!(
        answered(addr, client(&pki, &[], None)),
        None,
        "no certificate"
    );
    let stranger = other.client("stranger");
    assert_eq!(
        answered(addr, client(&pki, &[], Some(&stranger))),
        None,
        "untrusted CA"
    );
    let good = clients.client("client one");
    let mut c = tls(addr, client(&pki, &[], Some(&good)), named("localhost"));
    let r = request(&mut c, "GET /echo HTTP/1.1\r\nhost: localhost\r\n\r\n");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["tls"]["client_subject"], "CN=client one,O=AnyGate Test");
    s.shutdown();
}

#[test]
fn a_group_requiring_a_client_certificate_answers_403_without_one() {
    let dir = TempDir::new("tls-route");
    let pki = Pki::new("Test CA");
    let clients = Pki::new("Clients CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let ca = clients.write_ca(&dir, "clients-ca");
    let yaml = format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\ntls:\n  listen: \"127.0.0.1:0\"\n{}  client_auth: {{mode: optional, ca: \"{}\"}}\nroutes:\n  \"/open\": \"OK\"\ngroups:\n  - prefix: /admin\n    require_client_cert: true\n    routes: {{\"/echo\": \"*\"}}\n",
        certs_yaml(&files),
        ca.display()
    );
    let s = in_process(&yaml);
    let addr = s.tls_addrs()[0];
    let mut anon = tls(addr, client(&pki, &[], None), named("localhost"));
    assert_eq!(
        request(&mut anon, "GET /open HTTP/1.1\r\nhost: localhost\r\n\r\n").status(),
        200
    );
    let r = request(
        &mut anon,
        "GET /admin/echo HTTP/1.1\r\nhost: localhost\r\n\r\n",
    );
    assert_eq!(r.status(), 403, "{}", r.head);
    assert!(r.body_str().contains("AG-SEC-6004"), "{}", r.body_str());
    // Over plain HTTP there is no certificate either.
    let plain = crate::http::one(
        s.addrs()[0],
        b"GET /admin/echo HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(plain.status, 403);
    let good = clients.client("admin");
    let mut c = tls(addr, client(&pki, &[], Some(&good)), named("localhost"));
    let r = request(
        &mut c,
        "GET /admin/echo HTTP/1.1\r\nhost: localhost\r\n\r\n",
    );
    assert_eq!(r.status(), 200, "{}", r.head);
    s.shutdown();
}

#[test]
fn a_host_with_its_own_client_auth_is_not_reachable_through_another_server_name() {
    let dir = TempDir::new("tls-421");
    let pki = Pki::new("Test CA");
    let clients = Pki::new("Clients CA");
    let files = [pki
        .server(&["www.example.com", "api.example.com"])
        .write(&dir, "srv")];
    let ca = clients.write_ca(&dir, "clients-ca");
    let s = tls_gateway(
        &format!(
            "{}  hosts:\n    api.example.com: {{client_auth: {{mode: required, ca: \"{}\"}}}}\n",
            certs_yaml(&files),
            ca.display()
        ),
        "  \"/\": \"OK\"\n",
    );
    let addr = s.tls_addrs()[0];
    let mut www = tls(addr, client(&pki, &[], None), named("www.example.com"));
    assert_eq!(
        request(&mut www, "GET / HTTP/1.1\r\nhost: www.example.com\r\n\r\n").status(),
        200
    );
    let r = request(&mut www, "GET / HTTP/1.1\r\nhost: api.example.com\r\n\r\n");
    assert_eq!(r.status(), 421, "{}", r.head);
    assert!(r.body_str().contains("AG-HTTP-4210"));
    // Through its own name, the host's policy applies: no certificate, no handshake.
    let no_cert = ClientConnection::new(client(&pki, &[], None), named("api.example.com")).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let mut s2 = StreamOwned::new(no_cert, tcp);
    let _ = s2.write_all(b"GET / HTTP/1.1\r\nhost: api.example.com\r\n\r\n");
    assert!(read_response(&mut s2).is_err());
    let good = clients.client("api client");
    let mut api = tls(
        addr,
        client(&pki, &[], Some(&good)),
        named("api.example.com"),
    );
    assert_eq!(
        request(&mut api, "GET / HTTP/1.1\r\nhost: api.example.com\r\n\r\n").status(),
        200
    );
    s.shutdown();
}

#[test]
fn redirect_http_answers_308_to_https_except_acme_challenges() {
    let dir = TempDir::new("tls-redirect");
    let pki = Pki::new("Test CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let s = tls_gateway(
        &format!("{}  redirect_http: true\n", certs_yaml(&files)),
        "  \"/\": \"OK\"\n",
    );
    let port = s.tls_addrs()[0].port();
    let r = crate::http::one(
        s.addrs()[0],
        b"GET /a/b?x=1 HTTP/1.1\r\nhost: example.com:8080\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://example.com:{port}/a/b?x=1").as_str())
    );
    let r = crate::http::one(
        s.addrs()[0],
        b"GET /.well-known/acme-challenge/token HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "challenge paths are served, not redirected");
    let mut c = tls(
        s.tls_addrs()[0],
        client(&pki, &[], None),
        named("localhost"),
    );
    assert_eq!(
        request(&mut c, "GET /a HTTP/1.1\r\nhost: localhost\r\n\r\n").status(),
        200
    );
    s.shutdown();
}

#[test]
fn regression_review_tls_redirects_and_client_certificate_refusals_are_logged() {
    let dir = TempDir::new("tls-logged");
    let pki = Pki::new("Test CA");
    let clients = Pki::new("Clients CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let ca = clients.write_ca(&dir, "clients-ca");
    let log = dir.0.join("access.log");
    let yaml = format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\nplugins: [{{kind: log, args: {{to: \"{}\"}}}}]\ntls:\n  listen: \"127.0.0.1:0\"\n{}  redirect_http: true\n  client_auth: {{mode: optional, ca: \"{}\"}}\nroutes:\n  \"/open\": \"OK\"\ngroups:\n  - prefix: /admin\n    require_client_cert: true\n    routes: {{\"/echo\": \"*\"}}\n",
        log.display(),
        certs_yaml(&files),
        ca.display()
    );
    let s = in_process(&yaml);
    let r = crate::http::one(
        s.addrs()[0],
        b"GET /open HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 308);
    let mut anon = tls(
        s.tls_addrs()[0],
        client(&pki, &[], None),
        named("localhost"),
    );
    let r = request(
        &mut anon,
        "GET /admin/echo HTTP/1.1\r\nhost: localhost\r\n\r\n",
    );
    assert_eq!(r.status(), 403);
    let lines = crate::observability::lines_of(&log, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        (first["status"].as_u64(), first["path"].as_str()),
        (Some(308), Some("/open"))
    );
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["status"], 403);
    assert_eq!(second["code"], "AG-SEC-6004");
    assert_eq!(second["route"], "* /admin/echo");
    s.shutdown();
}

/// The certificate the server at `addr` serves to `name` now.
fn current_cert(addr: SocketAddr, name: &str) -> Vec<u8> {
    served_cert(addr, Some(name))
}

#[test]
fn a_certificate_replaced_on_disk_is_served_to_new_connections_while_old_ones_keep_working() {
    let dir = TempDir::new("tls-hot");
    let pki = Pki::new("Test CA");
    let first = pki.server(&["localhost"]);
    let files = [first.write(&dir, "srv")];
    let s = tls_gateway(&certs_yaml(&files), "  \"/\": \"OK\"\n");
    let addr = s.tls_addrs()[0];
    let mut old = tls(addr, client(&pki, &[], None), named("localhost"));
    assert_eq!(
        request(&mut old, "GET / HTTP/1.1\r\nhost: localhost\r\n\r\n").status(),
        200
    );
    assert_eq!(current_cert(addr, "localhost"), first.der);
    let second = pki.server(&["localhost"]);
    // Written aside and renamed in, as certbot and cert-manager do.
    let (cert, key) = second.write(&dir, "next");
    std::fs::rename(&key, &files[0].1).unwrap();
    std::fs::rename(&cert, &files[0].0).unwrap();
    let deadline = Instant::now() + LIMIT;
    while current_cert(addr, "localhost") != second.der {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The connection made with the first certificate still serves requests.
    assert_eq!(
        request(&mut old, "GET / HTTP/1.1\r\nhost: localhost\r\n\r\n").status(),
        200
    );
    s.shutdown();
}

#[test]
fn a_bad_certificate_change_keeps_the_old_set_and_sighup_installs_a_good_one() {
    let dir = TempDir::new("tls-bad");
    let pki = Pki::new("Test CA");
    let first = pki.server(&["localhost"]);
    let (cert, key) = first.write(&dir, "srv");
    let g = Gateway::start(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\ntls:\n  listen: \"127.0.0.1:0\"\n{}routes:\n  \"/\": \"OK\"\n",
        certs_yaml(&[(cert.clone(), key.clone())])
    ));
    let tls_addr: SocketAddr = loop {
        let line = g.lines.recv_timeout(LIMIT).expect("no https listener line");
        if let Some(rest) = line.strip_prefix("anygate: listening on https://") {
            break rest.trim().parse().unwrap();
        }
    };
    assert_eq!(current_cert(tls_addr, "localhost"), first.der);
    // A key that does not match the certificate.
    let other = pki.server(&["localhost"]);
    std::fs::write(&key, &other.key_pem).unwrap();
    loop {
        let line = g
            .lines
            .recv_timeout(LIMIT)
            .expect("the bad change was not reported");
        if line.contains("still serving the previous one") {
            break;
        }
        assert!(!line.contains("reloaded the TLS certificates"), "{line}");
    }
    assert_eq!(current_cert(tls_addr, "localhost"), first.der);
    // The matching certificate completes the change: the watcher installs it.
    std::fs::write(&cert, &other.cert_pem).unwrap();
    loop {
        let line = g
            .lines
            .recv_timeout(LIMIT)
            .expect("the good change was not reported");
        if line.contains("reloaded the TLS certificates") {
            break;
        }
    }
    assert_eq!(current_cert(tls_addr, "localhost"), other.der);
    // SIGHUP with a configuration naming another certificate.
    let third = pki.server(&["localhost"]);
    let (cert3, key3) = third.write(&dir, "third");
    std::fs::write(
        &g.config,
        format!(
            "server: {{listen: \"{}\", workers: 1}}\ntls:\n  listen: \"{tls_addr}\"\n{}routes:\n  \"/\": \"OK\"\n",
            g.addr,
            certs_yaml(&[(cert3, key3)])
        ),
    )
    .unwrap();
    g.signal("HUP");
    loop {
        let line = g.lines.recv_timeout(LIMIT).expect("no reload line");
        if line.contains("reloaded") && line.contains("rules") {
            break;
        }
    }
    assert_eq!(current_cert(tls_addr, "localhost"), third.der);
}

#[test]
fn every_action_works_over_tls() {
    let dir = TempDir::new("tls-actions");
    let pki = Pki::new("Test CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let site = TempDir::new("tls-site");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.0.join("big.bin"), &big).unwrap();
    // A plain upstream that echoes what it was sent.
    let backend =
        in_process("server: {listen: \"127.0.0.1:0\", workers: 1}\nroutes:\n  \"/\": \"*\"\n");
    let ws = crate::proxy::raw_upgrade_echo();
    let s = tls_gateway(
        &certs_yaml(&files),
        &format!(
            "  \"GET /fixed\": 'OK {{\"a\":1}}'\n  \"/echo\": \"*\"\n  \"/files/\": \"{}/\"\n  \"/up/\": \"http://{}/\"\n  \"/ws/\": \"http://{}/\"\n",
            site.0.display(),
            backend.addrs()[0],
            ws.addr
        ),
    );
    let mut c = tls(
        s.tls_addrs()[0],
        client(&pki, &[], None),
        named("localhost"),
    );
    let r = request(&mut c, "GET /fixed HTTP/1.1\r\nhost: localhost\r\n\r\n");
    assert_eq!((r.status(), r.body_str().as_str()), (200, "{\"a\":1}"));
    let r = request(
        &mut c,
        "POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\n\r\nhello",
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["body"], "hello");
    let r = request(
        &mut c,
        "GET /files/big.bin HTTP/1.1\r\nhost: localhost\r\n\r\n",
    );
    assert_eq!(r.status(), 200);
    assert!(
        r.body == big,
        "the file body arrived changed ({} bytes)",
        r.body.len()
    );
    let r = request(
        &mut c,
        "GET /files/big.bin HTTP/1.1\r\nhost: localhost\r\nrange: bytes=1000-1999\r\n\r\n",
    );
    assert_eq!(r.status(), 206);
    assert!(r.body == big[1000..2000]);
    let r = request(
        &mut c,
        "GET /up/x HTTP/1.1\r\nhost: localhost\r\nx-forwarded-proto: http\r\nx-client-subject: forged\r\n\r\n",
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["headers"]["x-forwarded-proto"], "https", "{v}");
    assert!(
        v["headers"]["forwarded"]
            .as_str()
            .unwrap()
            .ends_with(";proto=https"),
        "{v}"
    );
    // WebSocket-style upgrade through the tunnel, over TLS.
    c.write_all(
        b"GET /ws/t HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\nupgrade: raw\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut c).unwrap();
    assert!(r.head.starts_with("HTTP/1.1 101"), "{}", r.head);
    let mut first = [0u8; 5];
    c.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"first");
    c.write_all(b"ping over tls").unwrap();
    let mut echoed = [0u8; 13];
    c.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping over tls");
    s.shutdown();
    backend.shutdown();
}

/// A TLS backend (an echo gateway) and a gateway proxying to it with `pool_tls`.
fn through_tls_upstream(
    backend_tls: &str,
    pool_tls: &str,
    path: &str,
) -> (Response, anygate::serve::Server, anygate::serve::Server) {
    let backend = tls_gateway(backend_tls, "  \"/\": \"*\"\n");
    let front = in_process(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\nproxy:\n  client_cert_header: x-client-subject\n  upstreams:\n    secure:\n      targets: [\"localhost:{}\"]\n      tls: {{{pool_tls}}}\nroutes:\n  \"/\": \"https://secure/\"\n",
        backend.tls_addrs()[0].port()
    ));
    let raw = format!("GET {path} HTTP/1.1\r\nhost: front\r\nconnection: close\r\n\r\n");
    let r = crate::http::one(front.addrs()[0], raw.as_bytes());
    let response = Response {
        head: format!("HTTP/1.1 {} x\r\n", r.status),
        body: r.body.clone(),
    };
    (response, backend, front)
}

#[test]
fn an_upstream_over_tls_is_verified_by_name_and_ca_and_can_take_a_client_certificate() {
    let dir = TempDir::new("tls-up");
    let pki = Pki::new("Upstream CA");
    let clients = Pki::new("Clients CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let ca = pki.write_ca(&dir, "upstream-ca");
    let certs = certs_yaml(&files);
    // The right CA and the target's own name: verified.
    let (r, b, f) = through_tls_upstream(&certs, &format!("ca: \"{}\"", ca.display()), "/x");
    assert_eq!(r.status(), 200, "{}", r.body_str());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["tls"]["sni"], "localhost");
    assert_eq!(v["headers"]["x-forwarded-proto"], "http");
    drop((b, f));
    // A name the certificate does not carry: 502, AG-UPS-5025.
    let (r, b, f) = through_tls_upstream(
        &certs,
        &format!("ca: \"{}\", server_name: wrong.example", ca.display()),
        "/x",
    );
    assert_eq!(r.status(), 502);
    assert!(r.body_str().contains("AG-UPS-5025"), "{}", r.body_str());
    drop((b, f));
    // The system roots do not know the test CA.
    let (r, b, f) = through_tls_upstream(&certs, "server_name: localhost", "/x");
    assert_eq!(r.status(), 502);
    drop((b, f));
    // mTLS: the backend requires a client certificate from `clients`.
    let clients_ca = clients.write_ca(&dir, "clients-ca");
    let backend_tls = format!(
        "{certs}  client_auth: {{mode: required, ca: \"{}\"}}\n",
        clients_ca.display()
    );
    let (r, b, f) = through_tls_upstream(&backend_tls, &format!("ca: \"{}\"", ca.display()), "/x");
    assert_eq!(
        r.status(),
        502,
        "no client certificate: refused by the backend"
    );
    drop((b, f));
    let (cert, key) = clients.client("gateway").write(&dir, "gw");
    let (r, b, f) = through_tls_upstream(
        &backend_tls,
        &format!(
            "ca: \"{}\", cert: \"{}\", key: \"{}\"",
            ca.display(),
            cert.display(),
            key.display()
        ),
        "/x",
    );
    assert_eq!(r.status(), 200, "{}", r.body_str());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["tls"]["client_subject"], "CN=gateway,O=AnyGate Test");
    drop((b, f));
}

#[test]
fn upstream_tls_connections_are_pooled_and_the_client_subject_goes_up_in_the_configured_header() {
    let dir = TempDir::new("tls-pool");
    let pki = Pki::new("Test CA");
    let clients = Pki::new("Clients CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let ca = pki.write_ca(&dir, "ca");
    let clients_ca = clients.write_ca(&dir, "clients-ca");
    let backend = tls_gateway(&certs_yaml(&files), "  \"/\": \"*\"\n");
    let front = tls_gateway(
        &format!(
            "{}  client_auth: {{mode: optional, ca: \"{}\"}}\nproxy:\n  client_cert_header: x-client-subject\n  upstreams:\n    secure:\n      targets: [\"localhost:{}\"]\n      tls: {{ca: \"{}\"}}\n",
            certs_yaml(&files),
            clients_ca.display(),
            backend.tls_addrs()[0].port(),
            ca.display()
        ),
        "  \"/\": \"https://secure/\"\n",
    );
    let me = clients.client("alice");
    let mut c = tls(
        front.tls_addrs()[0],
        client(&pki, &[], Some(&me)),
        named("localhost"),
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = request(
            &mut c,
            "GET /a HTTP/1.1\r\nhost: localhost\r\nx-client-subject: forged\r\n\r\n",
        );
        assert_eq!(r.status(), 200, "{}", r.body_str());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v["headers"]["x-client-subject"], "CN=alice,O=AnyGate Test",
            "{v}"
        );
        assert_eq!(v["headers"]["x-forwarded-proto"], "https", "{v}");
        seen.push(v["tls"]["resumed"].clone());
    }
    // One upstream connection served all three: only the first made a handshake at the
    // backend, and nothing resumed since no second connection was needed.
    assert_eq!(seen, vec![serde_json::Value::Bool(false); 3]);
    front.shutdown();
    backend.shutdown();
}

/// `anygate check -c FILE` on `yaml`: (success, stderr).
fn check(dir: &TempDir, yaml: &str) -> (bool, String) {
    let path = dir.0.join("check.yml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn certificate_problems_are_reported_at_their_setting() {
    let dir = TempDir::new("tls-check");
    let pki = Pki::new("Test CA");
    let a = pki.server(&["a.example.com"]);
    let b = pki.server(&["b.example.com", "a.example.com"]);
    let (a_cert, a_key) = a.write(&dir, "a");
    let (b_cert, b_key) = b.write(&dir, "b");
    let yaml = |certs: &str, extra: &str| {
        format!("tls:\n  certificates:\n{certs}{extra}routes:\n  \"/\": \"OK\"\n")
    };
    let entry = |c: &PathBuf, k: &PathBuf| {
        format!(
            "    - {{cert: \"{}\", key: \"{}\"}}\n",
            c.display(),
            k.display()
        )
    };
    // A key that does not match its certificate: at the key, line 3.
    let (ok, err) = check(&dir, &yaml(&entry(&a_cert, &b_key), ""));
    assert!(!ok);
    assert!(
        err.contains("check.yml:3:") && err.contains("does not match the certificate"),
        "{err}"
    );
    // An unreadable file.
    let missing = dir.0.join("missing.pem");
    let (ok, err) = check(&dir, &yaml(&entry(&missing, &a_key), ""));
    assert!(!ok);
    assert!(
        err.contains("check.yml:3:") && err.contains("missing.pem"),
        "{err}"
    );
    // A name served by two certificates.
    let two = format!("{}{}", entry(&a_cert, &a_key), entry(&b_cert, &b_key));
    let (ok, err) = check(&dir, &yaml(&two, ""));
    assert!(!ok);
    assert!(
        err.contains("check.yml:4:")
            && err.contains("`a.example.com` is served by two certificates"),
        "{err}"
    );
    // An unknown default certificate.
    let (ok, err) = check(
        &dir,
        &yaml(
            &entry(&a_cert, &a_key),
            "  default_certificate: c.example.com\n",
        ),
    );
    assert!(!ok);
    assert!(
        err.contains("check.yml:4:") && err.contains("no certificate serves `c.example.com`"),
        "{err}"
    );
    // An expired certificate: a warning, and the configuration is still valid.
    let mut params = CertificateParams::new(vec!["old.example.com".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let old = pki.issue(
        params,
        "old.example.com",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (o_cert, o_key) = old.write(&dir, "old");
    let (ok, err) = check(&dir, &yaml(&entry(&o_cert, &o_key), ""));
    assert!(ok, "{err}");
    assert!(
        err.contains("check.yml:3:") && err.contains("warning") && err.contains("expired"),
        "{err}"
    );
    // A pool's TLS CA that cannot be read, and an http:// rule naming a TLS pool.
    let (ok, err) = check(
        &dir,
        "proxy:\n  upstreams:\n    u: {targets: [\"a:1\"], tls: {ca: missing-ca.pem}}\nroutes:\n  \"/a\": \"https://u/\"\n  \"/b\": \"http://u/\"\n",
    );
    assert!(!ok);
    assert!(
        err.contains("check.yml:3:") && err.contains("missing-ca.pem"),
        "{err}"
    );
}

#[test]
fn the_tls_example_runs_with_the_certificates_its_script_makes() {
    let dir = TempDir::new("tls-example");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tls");
    let made = std::process::Command::new("bash")
        .arg(format!("{example}/make-certs.sh"))
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let yaml = std::fs::read_to_string(format!("{example}/anygate.yml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:8443", "127.0.0.1:0");
    let g = Gateway::start_in(&dir, &yaml);
    let tls_addr: SocketAddr = loop {
        let line = g.lines.recv_timeout(LIMIT).expect("no https listener line");
        if let Some(rest) = line.strip_prefix("anygate: listening on https://") {
            break rest.trim().parse().unwrap();
        }
    };
    let ca = std::fs::read(dir.0.join("certs/ca.pem")).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let config = |cert: bool| {
        let b = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone());
        Arc::new(if cert {
            let chain = CertificateDer::pem_file_iter(dir.0.join("certs/client.pem"))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(dir.0.join("certs/client.key")).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        } else {
            b.with_no_client_auth()
        })
    };
    let mut c = tls(tls_addr, config(false), named("localhost"));
    let r = request(&mut c, "GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n");
    assert_eq!(r.body_str(), "{\"hello\":\"over TLS\"}");
    let r = request(
        &mut c,
        "GET /admin/whoami HTTP/1.1\r\nhost: localhost\r\n\r\n",
    );
    assert_eq!(r.status(), 403);
    let mut c = tls(tls_addr, config(true), named("localhost"));
    let r = request(
        &mut c,
        "GET /admin/whoami HTTP/1.1\r\nhost: localhost\r\n\r\n",
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["tls"]["client_subject"],
        "CN=example client,O=AnyGate example"
    );
    let r = crate::http::one(
        g.addr,
        b"GET /hello HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://localhost:{}/hello", tls_addr.port()).as_str())
    );
}

#[test]
fn an_ocsp_response_from_a_file_is_stapled_and_reread_on_reload() {
    let dir = TempDir::new("tls-ocsp");
    let pki = Pki::new("Test CA");
    let (a_cert, a_key) = pki.server(&["a.example.com"]).write(&dir, "a");
    let (b_cert, b_key) = pki.server(&["b.example.com"]).write(&dir, "b");
    let ocsp = dir.0.join("a.ocsp");
    // rustls staples the bytes as they are; a real file is a DER OCSPResponse.
    std::fs::write(&ocsp, b"first ocsp response").unwrap();
    let yaml = format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\ntls:\n  listen: \"127.0.0.1:0\"\n  certificates:\n    - {{cert: \"{}\", key: \"{}\", ocsp: \"{}\"}}\n    - {{cert: \"{}\", key: \"{}\"}}\nroutes:\n  \"/\": \"OK\"\n",
        a_cert.display(),
        a_key.display(),
        ocsp.display(),
        b_cert.display(),
        b_key.display()
    );
    let s = in_process(&yaml);
    let addr = s.tls_addrs()[0];
    assert_eq!(
        served(addr, Some("a.example.com")).1,
        b"first ocsp response"
    );
    assert_eq!(served(addr, Some("b.example.com")).1, b"");
    std::fs::write(&ocsp, b"second ocsp response").unwrap();
    let config = anygate_config::load_str(
        "test.yml",
        &yaml,
        anygate_config::Format::Yaml,
        std::path::Path::new("."),
        &[],
    )
    .unwrap();
    s.reload(config).unwrap();
    assert_eq!(
        served(addr, Some("a.example.com")).1,
        b"second ocsp response"
    );
    s.shutdown();
}

#[test]
fn a_real_websocket_echo_passes_through_the_tunnel_over_tls_beside_http2_on_the_same_listener() {
    let dir = TempDir::new("tls-wss");
    let pki = Pki::new("Test CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let ca = pki.write_ca(&dir, "ca");
    let (_server, port) = crate::proxy::ws_echo_server();
    let s = tls_gateway(
        &certs_yaml(&files),
        &format!("  \"/ws/\": \"http://127.0.0.1:{port}/\"\n  \"GET /fixed\": \"OK\"\n"),
    );
    let tls_port = s.tls_addrs()[0].port();
    let url = format!("wss://localhost:{tls_port}/ws/echo");
    crate::proxy::ws_echo_client(&url, &[("WS_CA", &ca)]);
    // The same listener speaks HTTP/2 to a client that offers it (ALPN), beside the
    // WebSocket over HTTP/1.1.
    let r = crate::http2::curl(&[
        "--http2",
        "--cacert",
        &ca.display().to_string(),
        "--resolve",
        &format!("localhost:{tls_port}:127.0.0.1"),
        &format!("https://localhost:{tls_port}/fixed"),
    ]);
    assert_eq!((r.version.as_str(), r.status), ("HTTP/2", 200));
    crate::proxy::ws_echo_client(&url, &[("WS_CA", &ca)]);
    s.shutdown();
}

#[test]
fn a_handshake_that_never_completes_is_dropped_at_the_handshake_timeout() {
    let dir = TempDir::new("tls-slow");
    let pki = Pki::new("Test CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let s = tls_gateway(
        &format!("{}  handshake_timeout: 300ms\n", certs_yaml(&files)),
        "  \"/\": \"OK\"\n",
    );
    let addr = s.tls_addrs()[0];
    // Nothing at all, and half a ClientHello: both are closed by the server, with nothing
    // sent (no alert for a hello that never arrived whole).
    let hello = legacy_client_hello([3, 3]);
    for sent in [&[][..], &hello[..hello.len() / 2]] {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(LIMIT)).unwrap();
        tcp.write_all(sent).unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let read = tcp.read_to_end(&mut rest);
        assert!(
            read.is_ok(),
            "the server must close, not the read timeout: {read:?}"
        );
        assert!(rest.is_empty(), "{rest:?}");
        assert!(started.elapsed() < LIMIT);
    }
    // A client that completes its handshake is served as usual.
    let mut c = tls(addr, client(&pki, &[], None), named("localhost"));
    assert_eq!(
        request(&mut c, "GET / HTTP/1.1\r\nhost: localhost\r\n\r\n").status(),
        200
    );
    s.shutdown();
}

#[test]
fn regression_two_names_on_one_address_do_not_share_a_tls_connection() {
    // A pool's two targets name one address: `localhost`, which the backend's certificate
    // carries, and `127.0.0.1`, which it does not. The idle pool was keyed by address and
    // TLS setup only, so the second request reused the connection verified for
    // `localhost` (and sent with its SNI).
    let dir = TempDir::new("tls-poolkey");
    let pki = Pki::new("Test CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let ca = pki.write_ca(&dir, "ca");
    let backend = tls_gateway(&certs_yaml(&files), "  \"/\": \"*\"\n");
    let port = backend.tls_addrs()[0].port();
    let front = in_process(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\nproxy:\n  retries: {{attempts: 1}}\n  upstreams:\n    two:\n      targets: [\"localhost:{port}\", \"127.0.0.1:{port}\"]\n      tls: {{ca: \"{}\"}}\nroutes:\n  \"/\": \"https://two/\"\n",
        ca.display()
    ));
    let mut c = crate::http::Reader::new(crate::http::connect(front.addrs()[0]));
    c.send(b"GET /a HTTP/1.1\r\nhost: front\r\n\r\n");
    let first = c.response(false).unwrap();
    assert_eq!(first.status, 200, "{}", first.body_str());
    c.send(b"GET /b HTTP/1.1\r\nhost: front\r\n\r\n");
    let second = c.response(false).unwrap();
    assert_eq!(second.status, 502, "{}", second.body_str());
    assert!(
        second.body_str().contains("AG-UPS-5025"),
        "{}",
        second.body_str()
    );
    front.shutdown();
    backend.shutdown();
}

#[test]
fn regression_an_exempt_host_cannot_reach_a_host_that_requires_a_certificate() {
    // `tls.client_auth: required` with `public.example.com` exempted (`mode: off`): the
    // exempt host was left out of the SNI/Host check, so its certificate-less connection
    // could ask for any other host.
    let dir = TempDir::new("tls-exempt");
    let pki = Pki::new("Test CA");
    let clients = Pki::new("Clients CA");
    let files = [pki
        .server(&["public.example.com", "private.example.com"])
        .write(&dir, "srv")];
    let ca = clients.write_ca(&dir, "clients-ca");
    let s = tls_gateway(
        &format!(
            "{}  client_auth: {{mode: required, ca: \"{}\"}}\n  hosts:\n    public.example.com: {{client_auth: {{mode: off}}}}\n",
            certs_yaml(&files),
            ca.display()
        ),
        "  \"/\": \"OK\"\n",
    );
    let addr = s.tls_addrs()[0];
    let mut public = tls(addr, client(&pki, &[], None), named("public.example.com"));
    assert_eq!(
        request(
            &mut public,
            "GET / HTTP/1.1\r\nhost: public.example.com\r\n\r\n"
        )
        .status(),
        200
    );
    let r = request(
        &mut public,
        "GET / HTTP/1.1\r\nhost: private.example.com\r\n\r\n",
    );
    assert_eq!(r.status(), 421, "{}", r.head);
    let mut public = tls(addr, client(&pki, &[], None), named("public.example.com"));
    let r = request(
        &mut public,
        "GET / HTTP/1.1\r\nhost: private.example.com.\r\n\r\n",
    );
    assert_eq!(r.status(), 421, "a trailing dot: {}", r.head);
    s.shutdown();
}

#[test]
fn the_security_preset_sends_hsts_over_tls_only_on_fixed_rules_too() {
    // The fixed rule's head is finished at load, once per scheme: both must be right.
    let dir = TempDir::new("tls-hsts");
    let pki = Pki::new("Test CA");
    let files = [pki.server(&["localhost"]).write(&dir, "srv")];
    let s = in_process(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\ntls:\n  listen: \"127.0.0.1:0\"\n{}\
         plugins: [ {{ kind: headers, args: {{ preset: security }} }} ]\nroutes:\n  \"/f\": OK\n",
        certs_yaml(&files)
    ));
    let mut c = tls(
        s.tls_addrs()[0],
        client(&pki, &[b"http/1.1"], None),
        named("localhost"),
    );
    let r = request(&mut c, "GET /f HTTP/1.1\r\nhost: localhost\r\n\r\n");
    assert_eq!(r.status(), 200);
    let head = r.head.to_ascii_lowercase();
    assert!(
        head.contains("strict-transport-security: max-age=31536000; includesubdomains\r\n"),
        "{head}"
    );
    assert!(
        head.contains("x-content-type-options: nosniff\r\n"),
        "{head}"
    );
    let plain = crate::http::one(s.addrs()[0], b"GET /f HTTP/1.1\r\nhost: localhost\r\n\r\n");
    assert_eq!(plain.header("strict-transport-security"), None);
    assert_eq!(plain.header("x-content-type-options"), Some("nosniff"));
    s.shutdown();
}

/// Year, month, day of `days` since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

#[test]
fn each_served_certificate_s_expiry_is_a_metric_and_one_due_within_30_days_a_warning() {
    let dir = TempDir::new("tls-expiry");
    let pki = Pki::new("Test CA");
    let today = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as i64;
    // Expires at midnight UTC ten days from now; the other one in 4096 (rcgen's default).
    let mut params = CertificateParams::new(vec!["soon.example.com".to_owned()]).unwrap();
    let (y, m, d) = civil(today + 10);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let soon = pki.issue(
        params,
        "soon.example.com",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let later = pki.server(&["later.example.com"]);
    let files = [soon.write(&dir, "soon"), later.write(&dir, "later")];
    let certs = certs_yaml(&files);
    // `check` warns about the one due soon, and the configuration stays valid.
    let (ok, err) = check(
        &dir,
        &format!(
            "server: {{listen: \"127.0.0.1:0\"}}\ntls:\n  listen: \"127.0.0.1:0\"\n{certs}routes: {{\"/\": OK}}\n"
        ),
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("warning") && err.contains("soon.pem` expires in 9 days; renew it"),
        "{err}"
    );
    assert!(!err.contains("later.pem"), "{err}");
    // The admin listener's /metrics has both expiries, by name.
    let gw = in_process(&format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1}}\nadmin: {{listen: \"127.0.0.1:0\"}}\ntls:\n  listen: \"127.0.0.1:0\"\n{certs}routes:\n  \"/\": OK\n"
    ));
    let mut s = TcpStream::connect(gw.admin_addr().unwrap()).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let want = format!(
        "anygate_tls_certificate_expiry_seconds{{name=\"soon.example.com\"}} {}\n",
        (today + 10) * 86_400
    );
    assert!(text.contains(&want), "{want}\n{text}");
    let want = format!(
        "anygate_tls_certificate_expiry_seconds{{name=\"later.example.com\"}} {}\n",
        anygate_tls::x509::facts(&later.der).unwrap().not_after
    );
    assert!(text.contains(&want), "{want}\n{text}");
}
