//! TLS termination: the certificate store, the per-host policies, the handshake.
//!
//! [`TlsServer`] holds the current [`Snapshot`] in an `ArcSwap`: a reload (a signal, or a
//! certificate file that changed) builds a complete new one and swaps it in; a handshake
//! loads the snapshot once, so it never sees half a certificate set, and connections
//! already established keep the keys they were made with. The session ticket keys and the
//! session cache belong to the server, not to a snapshot: a reload does not stop clients
//! from resuming.
//!
//! The handshake starts with rustls' `Acceptor`, which reads the ClientHello before any
//! `ServerConfig` is chosen: the SNI name picks the host's policy (its client
//! authentication), then the certificate resolver picks the certificate (exact name, then
//! a wildcard one label deep, then the default).

use std::collections::HashMap;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use anygate_runtime::net::TcpStream;
use anygate_runtime::time;
use arc_swap::ArcSwap;
use rustls::server::{
    Acceptor, ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
    StoresServerSessions, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{Connection, HandshakeKind, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::acme::{ALPN_ACME_TLS, Managed};
use crate::stream::{SyncIo, TlsStream};
use crate::{Facts, Profile, provider, x509};

/// Sessions a server remembers for TLS 1.2 clients that resume by session id (TLS 1.3
/// and ticket-capable 1.2 clients resume from tickets, which the server does not store).
const SESSION_CACHE: usize = 4096;

/// Who must show a client certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuthMode {
    /// Nobody is asked.
    #[default]
    Off,
    /// Asked; a client without one is served (a route may still demand one).
    Optional,
    /// A client without a certificate from the CA fails the handshake.
    Required,
}

/// Client authentication for a listener or a host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientAuth {
    /// Who must show a certificate.
    pub mode: ClientAuthMode,
    /// The CA bundle (PEM) client certificates must chain to.
    pub ca: Option<PathBuf>,
}

/// One certificate and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// The chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// A DER OCSP response to staple, if any.
    pub ocsp: Option<PathBuf>,
}

/// Everything a TLS listener is built from (paths already resolved).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerSettings {
    /// Protocol versions.
    pub profile: Profile,
    /// The certificates; their names come from their subject alternative names.
    pub certificates: Vec<CertFiles>,
    /// The name whose certificate answers a ClientHello without SNI or with an unknown
    /// name (default: the first certificate).
    pub default_certificate: Option<String>,
    /// Client authentication for every host without its own.
    pub client_auth: ClientAuth,
    /// Hosts (exact or `*.`) with their own client authentication.
    pub hosts: Vec<(String, ClientAuth)>,
    /// ALPN protocols offered, in preference order.
    pub alpn: Vec<Vec<u8>>,
    /// ACME obtains certificates ([`TlsServer::managed`]): they are served before the
    /// configured ones, and `certificates` may be empty.
    pub acme: bool,
}

impl ServerSettings {
    /// Every file the settings read (to watch for changes).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for c in &self.certificates {
            files.push(c.cert.clone());
            files.push(c.key.clone());
            files.extend(c.ocsp.clone());
        }
        files.extend(self.client_auth.ca.clone());
        files.extend(self.hosts.iter().filter_map(|(_, a)| a.ca.clone()));
        files
    }
}

/// Which setting a [`Problem`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    /// `certificates[i].cert`.
    Cert(usize),
    /// `certificates[i].key`.
    Key(usize),
    /// `certificates[i].ocsp`.
    Ocsp(usize),
    /// `default_certificate`.
    DefaultCertificate,
    /// `client_auth` (the listener's).
    ClientAuth,
    /// `hosts[i].client_auth`.
    HostClientAuth(usize),
    /// `certificates` as a whole.
    Certificates,
}

/// Something wrong with the settings, or worth a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What it is about.
    pub at: Where,
    /// What is wrong, for a person.
    pub message: String,
    /// Only a warning (an expired certificate is served, and said so).
    pub warning: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A name → value table with `*.suffix` entries matching exactly one label.
#[derive(Debug)]
struct Names<V> {
    exact: HashMap<String, V>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, V>,
}

impl<V> Default for Names<V> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<V> Names<V> {
    fn insert(&mut self, name: &str, v: V) -> Option<V> {
        match name.strip_prefix("*.") {
            Some(suffix) => self.wildcard.insert(suffix.to_owned(), v),
            None => self.exact.insert(name.to_owned(), v),
        }
    }

    /// `name` must be lower case.
    fn get(&self, name: &str) -> Option<&V> {
        self.exact.get(name).or_else(|| {
            let (label, suffix) = name.split_once('.')?;
            (!label.is_empty())
                .then(|| self.wildcard.get(suffix))
                .flatten()
        })
    }
}

/// The certificate store, as rustls' resolver.
#[derive(Debug)]
struct Store {
    names: Names<Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// ACME's certificates (when `acme` is on), looked up first.
    managed: Option<Arc<Managed>>,
}

impl ResolvesServerCert for Store {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(str::to_ascii_lowercase);
        if let (Some(m), Some(n)) = (&self.managed, &name)
            && let Some(c) = m.certificate(n)
        {
            return Some(c);
        }
        name.and_then(|n| self.names.get(&n).cloned())
            .or_else(|| self.default.clone())
            .or_else(|| self.managed.as_ref().and_then(|m| m.any()))
    }
}

/// One certificate set and the configurations built on it.
#[derive(Debug)]
struct Snapshot {
    /// For hosts without a policy of their own.
    config: Arc<ServerConfig>,
    /// Hosts with their own client authentication.
    hosts: Names<Arc<ServerConfig>>,
    /// What each certificate of the set is, for metrics.
    served: Vec<Served>,
    /// ACME is on: `acme-tls/1` challenges are answered.
    acme: bool,
}

/// A certificate a TLS listener serves: its name and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// The certificate's first DNS name (its file name when it names none).
    pub name: String,
    /// `notAfter`, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// A certificate that expires within this many days gets a warning at every load.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// What outlives a snapshot: resumption state, ACME's certificates.
struct Shared {
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions + Send + Sync>,
    managed: Arc<Managed>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// A certificate set built by [`TlsServer::prepare`].
#[derive(Debug)]
pub struct Prepared {
    snapshot: Snapshot,
    warnings: Vec<Problem>,
}

impl Prepared {
    /// What is worth a warning in it (an expired certificate).
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }
}

/// A TLS listener's state: see the [module docs](self).
#[derive(Debug)]
pub struct TlsServer {
    shared: Shared,
    current: ArcSwap<Snapshot>,
    handshake_timeout: Duration,
}

impl TlsServer {
    /// Builds a server from `settings`, or says everything that is wrong with them. The
    /// warnings (expired certificates) come with it.
    pub fn new(
        settings: &ServerSettings,
        handshake_timeout: Duration,
    ) -> Result<(Self, Vec<Problem>), Vec<Problem>> {
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| {
            vec![Problem {
                at: Where::Certificates,
                message: format!("cannot make session ticket keys: {e}"),
                warning: false,
            }]
        })?;
        let shared = Shared {
            ticketer,
            cache: ServerSessionMemoryCache::new(SESSION_CACHE),
            managed: Arc::new(Managed::new()),
        };
        let (snapshot, warnings) = build(settings, &shared)?;
        Ok((
            Self {
                shared,
                current: ArcSwap::from_pointee(snapshot),
                handshake_timeout,
            },
            warnings,
        ))
    }

    /// Checks `settings` without keeping anything (what `anygate check` does).
    pub fn check(settings: &ServerSettings) -> Result<Vec<Problem>, Vec<Problem>> {
        Self::new(settings, Duration::ZERO).map(|(_, w)| w)
    }

    /// Serves `settings` to new connections from now on; on an error the current set
    /// stays. Established connections are not touched either way.
    pub fn reload(&self, settings: &ServerSettings) -> Result<Vec<Problem>, Vec<Problem>> {
        let prepared = self.prepare(settings)?;
        let warnings = prepared.warnings.clone();
        self.install(prepared);
        Ok(warnings)
    }

    /// Builds (and checks) a certificate set for [`TlsServer::install`], without serving
    /// it yet: a reload that must succeed as a whole prepares every part first.
    pub fn prepare(&self, settings: &ServerSettings) -> Result<Prepared, Vec<Problem>> {
        let (snapshot, warnings) = build(settings, &self.shared)?;
        Ok(Prepared { snapshot, warnings })
    }

    /// The certificates served now (`anygate_tls_certificate_expiry_seconds`), ACME's
    /// included.
    pub fn served(&self) -> Vec<Served> {
        let mut served = self.current.load().served.clone();
        served.extend(self.shared.managed.served());
        served
    }

    /// ACME's live state: the certificates it installs and the challenges it answers
    /// (read only when the settings say `acme`).
    pub fn managed(&self) -> &Arc<Managed> {
        &self.shared.managed
    }

    /// Serves a prepared set to new connections from now on.
    pub fn install(&self, prepared: Prepared) {
        self.current.store(Arc::new(prepared.snapshot));
    }

    /// Runs the server side of a handshake on `tcp`, within the handshake timeout.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<(TlsStream, Facts)> {
        match time::timeout(self.handshake_timeout, self.handshake(tcp)).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    async fn handshake(&self, tcp: TcpStream) -> io::Result<(TlsStream, Facts)> {
        let mut acceptor = Acceptor::default();
        let accepted = loop {
            let n = poll_fn(
                |cx| match acceptor.read_tls(&mut SyncIo { tcp: &tcp, cx }) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                    r => Poll::Ready(r),
                },
            )
            .await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => break accepted,
                Ok(None) => {}
                Err((e, alert)) => {
                    send_alert(&tcp, alert).await;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        };
        let hello = accepted.client_hello();
        let sni: Option<Box<str>> = hello.server_name().map(|n| n.to_ascii_lowercase().into());
        let snapshot = self.current.load();
        // TLS-ALPN-01 (RFC 8737): the CA offers `acme-tls/1` alone; a pending challenge
        // for the name is answered with its own certificate, and nothing else is served
        // on that connection. Without one, the normal configuration refuses the ALPN.
        let challenge = match &sni {
            Some(name) if snapshot.acme => match hello.alpn().map(|mut a| (a.next(), a.next())) {
                Some((Some(ALPN_ACME_TLS), None)) => self.shared.managed.alpn_challenge(name),
                _ => None,
            },
            _ => None,
        };
        let config = match challenge {
            Some(key) => {
                challenge_config(key).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            }
            None => sni
                .as_deref()
                .and_then(|n| snapshot.hosts.get(n))
                .unwrap_or(&snapshot.config)
                .clone(),
        };
        let conn = match accepted.into_connection(config) {
            Ok(c) => c,
            Err((e, alert)) => {
                send_alert(&tcp, alert).await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        };
        let mut stream = TlsStream::new(tcp, Connection::Server(conn));
        poll_fn(|cx| stream.poll_handshake(cx)).await?;
        let facts = Facts::of(stream.connection(), sni);
        Ok((stream, facts))
    }
}

/// Sends the alert rustls prepared for a refused ClientHello, without waiting long (the
/// handshake timeout bounds it).
async fn send_alert(tcp: &TcpStream, mut alert: rustls::server::AcceptedAlert) {
    loop {
        let r = poll_fn(|cx| match alert.write(&mut SyncIo { tcp, cx }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            r => Poll::Ready(r),
        })
        .await;
        if !matches!(r, Ok(n) if n > 0) {
            return;
        }
    }
}

impl Facts {
    pub(crate) fn of(conn: &Connection, server_name: Option<Box<str>>) -> Self {
        let client_subject = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| x509::facts(leaf).ok())
            .map(|f| f.subject.into_boxed_str());
        Self {
            server_name,
            alpn: conn.alpn_protocol().map(Box::from),
            version: match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "",
            },
            cipher: conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or(""),
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
            client_subject,
        }
    }
}

fn problem(at: Where, message: impl Into<String>) -> Problem {
    Problem {
        at,
        message: message.into(),
        warning: false,
    }
}

/// Reads every certificate of a PEM file.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read `{}`: {}", path.display(), pem_error(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`{}`: {}", path.display(), pem_error(&e)))?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no certificate", path.display()));
    }
    Ok(certs)
}

pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "cannot read a private key from `{}`: {}",
            path.display(),
            pem_error(&e)
        )
    })
}

pub(crate) fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of that kind in it".to_owned(),
        other => format!("{other:?}"),
    }
}

/// A certificate with its key, checked against each other.
pub(crate) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, String> {
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "the private key does not match the certificate".to_owned()
        }
        e => format!("the private key cannot be used: {e}"),
    })
}

/// A root store from a PEM bundle.
pub(crate) fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("`{}`: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn build(
    settings: &ServerSettings,
    shared: &Shared,
) -> Result<(Snapshot, Vec<Problem>), Vec<Problem>> {
    let mut problems = Vec::new();
    let mut names: Names<(usize, Arc<CertifiedKey>)> = Names::default();
    let mut first = None;
    let mut served = Vec::with_capacity(settings.certificates.len());
    let now = now_unix();
    for (i, files) in settings.certificates.iter().enumerate() {
        let chain = match load_certs(&files.cert) {
            Ok(c) => c,
            Err(e) => {
                problems.push(problem(Where::Cert(i), e));
                continue;
            }
        };
        let facts = match x509::facts(&chain[0]) {
            Ok(f) => f,
            Err(e) => {
                problems.push(problem(
                    Where::Cert(i),
                    format!(
                        "`{}`: cannot read the certificate: {e}",
                        files.cert.display()
                    ),
                ));
                continue;
            }
        };
        let key = match load_key(&files.key) {
            Ok(k) => k,
            Err(e) => {
                problems.push(problem(Where::Key(i), e));
                continue;
            }
        };
        let mut certified = match certified_key(chain, key) {
            Ok(c) => c,
            Err(e) => {
                problems.push(problem(
                    Where::Key(i),
                    format!("`{}`: {e} `{}`", files.key.display(), files.cert.display()),
                ));
                continue;
            }
        };
        if let Some(ocsp) = &files.ocsp {
            match std::fs::read(ocsp) {
                Ok(bytes) if !bytes.is_empty() => certified.ocsp = Some(bytes),
                Ok(_) => problems.push(problem(
                    Where::Ocsp(i),
                    format!("`{}` is empty", ocsp.display()),
                )),
                Err(e) => problems.push(problem(
                    Where::Ocsp(i),
                    format!("cannot read `{}`: {e}", ocsp.display()),
                )),
            }
        }
        if facts.not_after < now {
            problems.push(Problem {
                at: Where::Cert(i),
                message: format!(
                    "`{}` expired {} days ago; clients will refuse it",
                    files.cert.display(),
                    (now - facts.not_after) / 86_400
                ),
                warning: true,
            });
        } else if facts.not_after - now < EXPIRY_WARNING_DAYS * 86_400 {
            problems.push(Problem {
                at: Where::Cert(i),
                message: format!(
                    "`{}` expires in {} days; renew it",
                    files.cert.display(),
                    (facts.not_after - now) / 86_400
                ),
                warning: true,
            });
        }
        if facts.dns_names.is_empty() {
            problems.push(problem(
                Where::Cert(i),
                format!(
                    "`{}` names no DNS name (subject alternative names): it cannot be chosen by SNI",
                    files.cert.display()
                ),
            ));
            continue;
        }
        let certified = Arc::new(certified);
        first.get_or_insert_with(|| certified.clone());
        served.push(Served {
            name: facts.dns_names.first().cloned().unwrap_or_else(|| {
                files
                    .cert
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            }),
            not_after: facts.not_after,
        });
        for name in &facts.dns_names {
            if let Some((j, _)) = names.insert(name, (i, certified.clone())) {
                problems.push(problem(
                    Where::Cert(i),
                    format!(
                        "`{name}` is served by two certificates: `{}` and `{}`",
                        settings.certificates[j].cert.display(),
                        files.cert.display()
                    ),
                ));
            }
        }
    }
    if settings.certificates.is_empty() && !settings.acme {
        problems.push(problem(
            Where::Certificates,
            "a TLS listener needs at least one certificate",
        ));
    }
    let default = match &settings.default_certificate {
        Some(name) => {
            let lower = name.to_ascii_lowercase();
            let found = match lower.strip_prefix("*.") {
                Some(suffix) => names.wildcard.get(suffix),
                None => names.get(&lower),
            };
            match found {
                Some((_, c)) => Some(c.clone()),
                None => {
                    problems.push(problem(
                        Where::DefaultCertificate,
                        format!("no certificate serves `{name}`"),
                    ));
                    None
                }
            }
        }
        None => first,
    };
    let store = Arc::new(Store {
        names: Names {
            exact: names.exact.into_iter().map(|(k, (_, c))| (k, c)).collect(),
            wildcard: names
                .wildcard
                .into_iter()
                .map(|(k, (_, c))| (k, c))
                .collect(),
        },
        default,
        managed: settings.acme.then(|| shared.managed.clone()),
    });
    let base = server_config(settings, &settings.client_auth, &store, shared)
        .map_err(|e| problems.push(problem(Where::ClientAuth, e)))
        .ok();
    let mut hosts = Names::default();
    for (i, (host, auth)) in settings.hosts.iter().enumerate() {
        match server_config(settings, auth, &store, shared) {
            Ok(c) => {
                hosts.insert(&host.to_ascii_lowercase(), c);
            }
            Err(e) => problems.push(problem(Where::HostClientAuth(i), e)),
        }
    }
    match base {
        Some(config) if problems.iter().all(|p| p.warning) => Ok((
            Snapshot {
                config,
                hosts,
                served,
                acme: settings.acme,
            },
            problems,
        )),
        _ => Err(problems.into_iter().filter(|p| !p.warning).collect()),
    }
}

/// The configuration of a TLS-ALPN-01 answer: the challenge certificate, ALPN
/// `acme-tls/1`, nothing to resume.
fn challenge_config(key: Arc<CertifiedKey>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(Profile::Intermediate.versions())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(key)));
    config.alpn_protocols = vec![ALPN_ACME_TLS.to_vec()];
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// One certificate for every ClientHello.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn server_config(
    settings: &ServerSettings,
    auth: &ClientAuth,
    store: &Arc<Store>,
    shared: &Shared,
) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(settings.profile.versions())
        .map_err(|e| e.to_string())?;
    let builder = match (auth.mode, &auth.ca) {
        (ClientAuthMode::Off, _) => builder.with_no_client_auth(),
        (_, None) => return Err("client authentication needs `ca`".to_owned()),
        (mode, Some(ca)) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if mode == ClientAuthMode::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
    };
    let mut config = builder.with_cert_resolver(store.clone());
    config.alpn_protocols = settings.alpn.clone();
    config.ticketer = shared.ticketer.clone();
    config.session_storage = shared.cache.clone();
    // No 0-RTT: early data can be replayed.
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}
