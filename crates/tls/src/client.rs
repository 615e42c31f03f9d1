//! TLS to upstreams: [`TlsClient`] is one pool's client configuration (its roots, its
//! client certificate, the name it verifies), shared by every connection the pool opens.
//!
//! Roots are the pool's own CA bundle when it names one, else the system's
//! (`SSL_CERT_FILE`, or the usual bundle paths of Debian, Red Hat, Alpine and SUSE),
//! read once per process. rustls' client session cache (256 sessions) makes reconnects
//! resume.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anygate_runtime::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{
    ClientConfig, ClientConnection, Connection, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::server::{certified_key, load_certs, load_key, load_roots};
use crate::stream::TlsStream;
use crate::{Facts, provider};

/// How a pool talks TLS to its targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// The CA bundle (PEM) the upstream's certificate must chain to; `None` = system roots.
    pub ca: Option<PathBuf>,
    /// The name to send (SNI) and verify; `None` = the target's host.
    pub server_name: Option<String>,
    /// A client certificate chain (PEM) for mTLS, with `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's key.
    pub key: Option<PathBuf>,
    /// Accept any certificate (still checking the handshake's signatures). For tests and
    /// broken internal setups only: anyone on the path can impersonate the upstream.
    pub insecure_skip_verify: bool,
    /// ALPN protocols offered.
    pub alpn: Vec<Vec<u8>>,
}

/// One client configuration (see the [module docs](self)).
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The system's CA bundle, read once.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let path = crate::system_ca_bundle()?;
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(load_certs(&path)?);
            if added == 0 {
                return Err(format!(
                    "`{}` holds no usable CA certificate",
                    path.display()
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

impl TlsClient {
    /// Builds a client configuration, or says what is wrong.
    pub fn new(settings: &ClientSettings) -> Result<Self, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(crate::Profile::Intermediate.versions())
            .map_err(|e| e.to_string())?;
        let builder = if settings.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate))
        } else {
            let roots = match &settings.ca {
                Some(ca) => Arc::new(load_roots(ca)?),
                None => system_roots()?,
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match (&settings.cert, &settings.key) {
            (Some(cert), Some(key)) => {
                let (chain, key_der) = (load_certs(cert)?, load_key(key)?);
                // Checked against each other first, for a clear error.
                certified_key(chain.clone(), key_der.clone_key())
                    .map_err(|e| format!("`{}`: {e} `{}`", key.display(), cert.display()))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| e.to_string())?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("a client certificate needs both `cert` and `key`".to_owned()),
        };
        config.alpn_protocols = settings.alpn.clone();
        let server_name = match &settings.server_name {
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|_| format!("`{n}` is not a valid server name"))?,
            ),
            None => None,
        };
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// Runs the client side of a handshake over `tcp` to `host` (the name sent and
    /// verified, unless the settings name another). The caller bounds it in time.
    pub async fn connect(&self, tcp: TcpStream, host: &str) -> io::Result<(TlsStream, Facts)> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.to_owned()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("`{host}` is not a valid server name"),
                )
            })?,
        };
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut stream = TlsStream::new(tcp, Connection::Client(conn));
        poll_fn(|cx| stream.poll_handshake(cx)).await?;
        let facts = Facts::of(stream.connection(), None);
        Ok((stream, facts))
    }
}

/// `insecure_skip_verify`: every certificate is accepted; the handshake signatures are
/// still checked, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
