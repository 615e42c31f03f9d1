//! TLS listeners: the `tls` section turned into `anygate-tls` settings, its problems into
//! positioned diagnostics, the acceptor the HTTP driver calls, and the watcher that reloads
//! certificates when their files change.

use anygate_obs::log::{self, Level};
use anygate_obs::metrics::Counter;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use std::time::{Duration, SystemTime};

use anygate_config::{ClientAuthMode, Config, Diagnostic, Failure, Tls, TlsProfile, codes};
use anygate_http::Acceptor;
use anygate_http::server::{Accepted, Protocol, TlsInfo};
use anygate_runtime::net::TcpStream;
use anygate_tls::{ClientAuth, MaybeTls, Problem, ServerSettings, TlsServer, Where};

/// How often the watcher looks at the certificate files.
const WATCH_EVERY: Duration = Duration::from_secs(1);

fn client_auth(a: &anygate_config::ClientAuth) -> ClientAuth {
    ClientAuth {
        mode: match a.mode {
            ClientAuthMode::Off => anygate_tls::ClientAuthMode::Off,
            ClientAuthMode::Optional => anygate_tls::ClientAuthMode::Optional,
            ClientAuthMode::Required => anygate_tls::ClientAuthMode::Required,
        },
        ca: a.ca.clone(),
    }
}

/// The settings of the `tls` section (`acme`: an `acme` section obtains certificates;
/// `h2`: HTTP/2 is offered, `server.h2.enabled`).
pub fn settings(t: &Tls, acme: bool, h2: bool) -> ServerSettings {
    ServerSettings {
        profile: match t.profile {
            TlsProfile::Modern => anygate_tls::Profile::Modern,
            TlsProfile::Intermediate => anygate_tls::Profile::Intermediate,
        },
        certificates: t
            .certificates
            .iter()
            .map(|c| anygate_tls::CertFiles {
                cert: c.cert.clone(),
                key: c.key.clone(),
                ocsp: c.ocsp.clone(),
            })
            .collect(),
        default_certificate: t.default_certificate.as_ref().map(|(n, _)| n.clone()),
        client_auth: client_auth(&t.client_auth),
        hosts: t
            .hosts
            .iter()
            .map(|h| (h.name.clone(), client_auth(&h.client_auth)))
            .collect(),
        // rustls picks the first of this list that the client offers: h2 whenever the
        // client can speak it, as nginx and Caddy do (a client that wants a WebSocket
        // upgrade offers http/1.1 alone).
        alpn: if h2 {
            vec![
                anygate_tls::ALPN_H2.to_vec(),
                anygate_tls::ALPN_HTTP1.to_vec(),
            ]
        } else {
            vec![anygate_tls::ALPN_HTTP1.to_vec()]
        },
        acme,
    }
}

/// `problems` as diagnostics at the settings they are about.
pub fn diagnostics(t: &Tls, problems: &[Problem]) -> Vec<Diagnostic> {
    problems
        .iter()
        .map(|p| {
            let span = match p.at {
                Where::Cert(i) => t.certificates.get(i).map(|c| c.cert_span),
                Where::Key(i) => t.certificates.get(i).map(|c| c.key_span),
                Where::Ocsp(i) => t.certificates.get(i).and_then(|c| c.ocsp_span),
                Where::DefaultCertificate => t.default_certificate.as_ref().map(|(_, s)| *s),
                Where::ClientAuth => t.client_auth.span,
                Where::HostClientAuth(i) => t.hosts.get(i).and_then(|h| h.client_auth.span),
                Where::Certificates => Some(t.certificates_span),
            }
            .unwrap_or(t.span);
            if p.warning {
                Diagnostic::warning(codes::VALUE, span, &p.message)
            } else {
                Diagnostic::error(codes::VALUE, span, &p.message)
            }
        })
        .collect()
}

/// The TLS server of a `tls` section, with the settings it was built from.
pub type Built = (TlsServer, ServerSettings);

/// Builds the TLS server of `config`'s `tls` section (none without one), checking every
/// file; warnings (an expired certificate) are printed. On an error, the configuration's
/// sources come back in the failure for rendering.
pub fn build(config: Config) -> Result<(Config, Option<Built>), Failure> {
    let Some(t) = &config.tls else {
        return Ok((config, None));
    };
    let settings = settings(t, config.acme.is_some(), config.server.h2.enabled);
    if let Some(acme) = crate::acme::settings(&config, &settings) {
        for d in crate::acme::warnings(&config, &acme.domains) {
            log::server(Level::Warn, &d.render(&config.sources));
        }
    }
    let Some(t) = &config.tls else {
        return Ok((config, None));
    };
    match TlsServer::new(&settings, t.handshake_timeout) {
        Ok((server, warnings)) => {
            for d in diagnostics(t, &warnings) {
                log::server(Level::Warn, &d.render(&config.sources));
            }
            Ok((config, Some((server, settings))))
        }
        Err(problems) => Err(Failure {
            diagnostics: diagnostics(t, &problems),
            sources: config.sources,
        }),
    }
}

/// The handshake, as the HTTP driver's acceptor.
#[derive(Debug)]
pub struct TlsAcceptor(pub Arc<TlsServer>);

impl Acceptor for TlsAcceptor {
    type Stream = MaybeTls;

    async fn accept(&self, tcp: TcpStream, _peer: SocketAddr) -> io::Result<Accepted<MaybeTls>> {
        let (stream, facts) = match self.0.accept(tcp).await {
            Ok(done) => done,
            Err(e) => {
                anygate_obs::metrics::count(Counter::TlsFailed);
                return Err(e);
            }
        };
        if facts.alpn.as_deref() == Some(anygate_tls::ALPN_ACME_TLS) {
            // A TLS-ALPN-01 validation: the handshake was the answer; no HTTP follows.
            let mut stream = stream;
            let close = std::future::poll_fn(|cx| {
                anygate_runtime::transport::Transport::poll_shutdown(&mut stream, cx)
            });
            let _ = anygate_runtime::time::timeout(Duration::from_secs(1), close).await;
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "TLS-ALPN-01 challenge answered",
            ));
        }
        anygate_obs::metrics::count(Counter::TlsHandshake);
        if facts.resumed {
            anygate_obs::metrics::count(Counter::TlsResumed);
        }
        let protocol = if facts.alpn.as_deref() == Some(anygate_tls::ALPN_H2) {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        Ok(Accepted {
            stream: MaybeTls::Tls(Box::new(stream)),
            protocol,
            tls: Some(Arc::new(TlsInfo {
                server_name: facts.server_name,
                alpn: facts.alpn,
                version: facts.version,
                cipher: facts.cipher,
                resumed: facts.resumed,
                client_subject: facts.client_subject,
            })),
        })
    }
}

/// Plain TCP as a [`MaybeTls`]: plain and TLS listeners serve one stream type, so the
/// connection driver is compiled once (see `anygate_tls::MaybeTls`).
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainAcceptor;

impl Acceptor for PlainAcceptor {
    type Stream = MaybeTls;

    async fn accept(&self, tcp: TcpStream, _peer: SocketAddr) -> io::Result<Accepted<MaybeTls>> {
        Ok(Accepted {
            stream: MaybeTls::Plain(tcp),
            protocol: Protocol::Http1,
            tls: None,
        })
    }
}

/// What a file looked like: changes to any of these count.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Reloads the certificate set when a file of it changes: polled once a second, and
/// reloaded once the files have stayed the same for one more look (a certificate and its
/// key are usually written one after the other). A bad new set keeps the old one, said
/// on stderr.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching the files of `settings` (replaced by a reload) for `server`.
    pub fn start(
        server: Arc<TlsServer>,
        settings: Arc<ArcSwap<ServerSettings>>,
    ) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // Born with SIGHUP blocked (regression: a plain thread took the SIGHUP meant for
        // the reload and the process died of it).
        let thread = anygate_runtime::signal::spawn_side_thread("anygate-cert-watch", move || {
            let stamps =
                |s: &ServerSettings| -> Vec<Stamp> { s.files().iter().map(stamp).collect() };
            let mut served = stamps(&settings.load());
            let mut seen = served.clone();
            while !flag.load(Ordering::Acquire) {
                std::thread::park_timeout(WATCH_EVERY);
                let s = settings.load_full();
                let now = stamps(&s);
                if now != served && now == seen {
                    match server.reload(&s) {
                        Ok(warnings) => {
                            log::server(
                                Level::Info,
                                "certificate files changed: reloaded the TLS certificates",
                            );
                            for w in warnings {
                                log::server(Level::Warn, &format!("warning: {w}"));
                            }
                        }
                        Err(problems) => {
                            for p in problems {
                                log::server(Level::Error, &p.to_string());
                            }
                            log::server(
                                Level::Error,
                                "certificate files changed, but the new set is not valid; \
                                 still serving the previous one",
                            );
                        }
                    }
                    served = now.clone();
                }
                seen = now;
            }
        })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops watching (and waits for the thread).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}
