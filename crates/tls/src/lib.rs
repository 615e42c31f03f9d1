//! `anygate-tls`: TLS for AnyGate on rustls, over the runtime's sockets.
//!
//! # What is here
//! - [`TlsStream`]: a rustls connection over a runtime `TcpStream`, as the runtime's
//!   `Transport`, so the HTTP drivers, the upstream client and the tunnel run over it
//!   unchanged ([`stream`] has the I/O discipline).
//! - [`TlsServer`]: termination. The certificate store (names from each certificate's
//!   subject alternative names, `*.` one label deep, a default for no or unknown SNI),
//!   per-host client authentication chosen from the ClientHello, resumption (rotating
//!   ticket keys, a bounded session cache), OCSP stapling from a file, and an atomic swap
//!   of the whole set on reload.
//! - [`TlsClient`]: TLS to upstreams, verified against the system roots or a pool's CA,
//!   with an optional client certificate.
//! - [`x509`]: the certificate facts AnyGate reads itself (names, validity, subject).
//! - [`acme`]: what ACME puts on the data path: the certificates it obtained (served
//!   before the configured ones) and the answers to HTTP-01 and TLS-ALPN-01 challenges.
//!
//! # Design
//! - One crypto provider for the whole process, aws-lc-rs, passed explicitly everywhere
//!   ([`provider`]); no rustls type crosses this crate's API, so a rustls upgrade stays a
//!   local change.
//! - TLS 1.2 and 1.3 only ([`Profile`]), with the provider's suites: AEAD ciphers with
//!   forward-secret key exchange (X25519MLKEM768 first), nothing else.
//! - No 0-RTT (replayable).
//!
//! # Invariants
//! - A handshake never waits longer than its timeout, and a refused ClientHello gets its
//!   alert.
//! - A reload never leaves a half-built certificate set in service: it is built whole and
//!   swapped, or the old one stays.
//!
//! # Non-goals (here, for now)
//! kTLS, the ACME client itself (`anygate-acme`, a control-plane thread: [`acme`] is
//! what it installs here), OCSP fetching (Let's Encrypt no longer runs OCSP).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod acme;
mod client;
mod maybe;
mod server;
pub mod stream;
pub mod x509;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;

pub use acme::{ALPN_ACME_TLS, Certificate, Managed};
pub use client::{ClientSettings, TlsClient};
pub use maybe::MaybeTls;
pub use server::{
    CertFiles, ClientAuth, ClientAuthMode, EXPIRY_WARNING_DAYS, Prepared, Problem, Served,
    ServerSettings, TlsServer, Where,
};
pub use stream::TlsStream;

/// The ALPN id of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The ALPN id of HTTP/2 over TLS.
pub const ALPN_H2: &[u8] = b"h2";

/// The crypto provider of the whole process: aws-lc-rs with its default suites and key
/// exchange groups.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The system's CA bundle: `SSL_CERT_FILE`, or the first of the usual places that exists.
pub fn system_ca_bundle() -> Result<PathBuf, String> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    env.into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
                "/etc/ssl/ca-bundle.pem",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.exists())
        .ok_or_else(|| "no system CA bundle found (set SSL_CERT_FILE, or give a `ca`)".to_owned())
}

/// Every certificate of a PEM file, DER-encoded (at least one, or an error saying why).
pub fn pem_certificates(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    Ok(server::load_certs(path)?
        .into_iter()
        .map(|c| c.as_ref().to_vec())
        .collect())
}

/// Protocol versions offered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// TLS 1.3 only.
    Modern,
    /// TLS 1.2 and 1.3 (Mozilla's "intermediate").
    #[default]
    Intermediate,
}

impl Profile {
    pub(crate) fn versions(self) -> &'static [&'static SupportedProtocolVersion] {
        static MODERN: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        static INTERMEDIATE: [&SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        match self {
            Self::Modern => &MODERN,
            Self::Intermediate => &INTERMEDIATE,
        }
    }
}

/// What a handshake established.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The name the client asked for (SNI), lower-cased.
    pub server_name: Option<Box<str>>,
    /// The protocol agreed by ALPN.
    pub alpn: Option<Box<[u8]>>,
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The cipher suite (`TLS13_AES_128_GCM_SHA256`).
    pub cipher: &'static str,
    /// Whether the session was resumed.
    pub resumed: bool,
    /// The verified client certificate's subject (RFC 4514).
    pub client_subject: Option<Box<str>>,
}
