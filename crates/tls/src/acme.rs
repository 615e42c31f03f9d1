//! What ACME puts on the data path: the certificates it obtained, and the answers to the
//! CA's challenges. The ACME client (`anygate-acme`, a control-plane thread) writes here;
//! handshakes and the plain listener's requests read.
//!
//! Each table is an `ArcSwap`ped map replaced whole by its one writer, so a reader takes no
//! lock and never sees half an update. Managed certificates outlive certificate reloads
//! (they belong to the [`Managed`] a [`TlsServer`](crate::TlsServer) was built with, not
//! to its snapshot).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::server::{Served, certified_key, pem_error};
use crate::{provider, x509};

/// The ALPN id of the TLS-ALPN-01 challenge (RFC 8737).
pub const ALPN_ACME_TLS: &[u8] = b"acme-tls/1";

/// A certificate ACME obtained, as served.
#[derive(Debug)]
struct Entry {
    key: Arc<CertifiedKey>,
    served: Served,
}

/// ACME's live state: see the [module docs](self).
#[derive(Debug, Default)]
pub struct Managed {
    /// By exact name (each certificate under every DNS name it holds).
    certs: ArcSwap<HashMap<String, Arc<Entry>>>,
    /// HTTP-01: token → key authorization.
    http01: ArcSwap<HashMap<String, Box<str>>>,
    /// TLS-ALPN-01: name → the challenge certificate.
    alpn: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

/// A certificate chain and key read from PEM and checked against each other.
#[derive(Debug)]
pub struct Certificate {
    key: Arc<CertifiedKey>,
    facts: x509::CertFacts,
}

impl Certificate {
    /// Parses a PEM chain (leaf first) and its PEM private key; says what is wrong.
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<Self, String> {
        let certs = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the certificate chain: {}", pem_error(&e)))?;
        let Some(leaf) = certs.first() else {
            return Err("the certificate chain holds no certificate".to_owned());
        };
        let facts = x509::facts(leaf).map_err(|e| format!("the certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| format!("the private key: {}", pem_error(&e)))?;
        Ok(Self {
            key: Arc::new(certified_key(certs, key)?),
            facts,
        })
    }

    /// What the certificate says of itself (names, validity).
    pub fn facts(&self) -> &x509::CertFacts {
        &self.facts
    }
}

impl Managed {
    /// An empty state (no certificate, no challenge).
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `cert` for `name` (and every other DNS name it holds) from the next
    /// handshake on; the certificate it replaces keeps the connections made with it.
    pub fn install(&self, name: &str, cert: &Certificate) {
        let entry = Arc::new(Entry {
            key: cert.key.clone(),
            served: Served {
                name: name.to_owned(),
                not_after: cert.facts.not_after,
            },
        });
        self.certs.rcu(|old| {
            let mut map = HashMap::clone(old);
            // A name moved to another certificate leaves the old one's other names.
            map.retain(|_, e| e.served.name != name);
            map.insert(name.to_owned(), entry.clone());
            for n in &cert.facts.dns_names {
                map.entry(n.to_ascii_lowercase())
                    .or_insert_with(|| entry.clone());
            }
            map
        });
    }

    /// The certificate for `name` (lower case), if ACME obtained one.
    pub(crate) fn certificate(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.certs.load().get(name).map(|e| e.key.clone())
    }

    /// Any certificate ACME obtained (for a ClientHello without SNI when no certificate
    /// is configured).
    pub(crate) fn any(&self) -> Option<Arc<CertifiedKey>> {
        let certs = self.certs.load();
        certs
            .values()
            .min_by(|a, b| a.served.name.cmp(&b.served.name))
            .map(|e| e.key.clone())
    }

    /// The certificates served, one per managed name.
    pub fn served(&self) -> Vec<Served> {
        let mut served: Vec<Served> = self
            .certs
            .load()
            .iter()
            .filter(|(n, e)| **n == e.served.name)
            .map(|(_, e)| e.served.clone())
            .collect();
        served.sort_by(|a, b| a.name.cmp(&b.name));
        served
    }

    /// Whether any certificate is installed.
    pub fn has_certificates(&self) -> bool {
        !self.certs.load().is_empty()
    }

    /// Replaces the HTTP-01 answers (token → key authorization).
    pub fn set_http01(&self, answers: HashMap<String, Box<str>>) {
        self.http01.store(Arc::new(answers));
    }

    /// The key authorization for an HTTP-01 `token`, if one is pending.
    pub fn http01(&self, token: &[u8]) -> Option<Box<str>> {
        let token = std::str::from_utf8(token).ok()?;
        self.http01.load().get(token).cloned()
    }

    /// Replaces the TLS-ALPN-01 answers: name → the SHA-256 digest of the key
    /// authorization. Each gets its challenge certificate (RFC 8737 §3); a name whose
    /// certificate cannot be made is left out and said.
    pub fn set_tls_alpn01(&self, answers: &[(String, [u8; 32])]) -> Result<(), String> {
        let mut map = HashMap::with_capacity(answers.len());
        let mut failed = None;
        for (name, digest) in answers {
            match challenge_certificate(name, digest) {
                Ok(key) => {
                    map.insert(name.clone(), Arc::new(key));
                }
                Err(e) => failed = Some(format!("`{name}`: {e}")),
            }
        }
        self.alpn.store(Arc::new(map));
        failed.map_or(Ok(()), Err)
    }

    /// The TLS-ALPN-01 challenge certificate for `name`, if one is pending.
    pub(crate) fn alpn_challenge(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn.load().get(name).cloned()
    }
}

/// The self-signed certificate that answers a TLS-ALPN-01 challenge: `name` as its only
/// subject alternative name and the critical acmeIdentifier extension holding `digest`.
///
/// Loaded without the consistency check of [`certified_key`]: webpki refuses to parse a
/// certificate with an unknown critical extension, which this one must have.
fn challenge_certificate(name: &str, digest: &[u8; 32]) -> Result<CertifiedKey, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(str::to_owned)?;
    let signer = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params");
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_serves_each_of_its_names_and_a_replacement_drops_the_old_names() {
        let m = Managed::new();
        let (c, k) = pem_pair(&["a.test", "www.a.test"]);
        let cert = Certificate::from_pem(c.as_bytes(), k.as_bytes()).expect("parses");
        m.install("a.test", &cert);
        assert!(m.certificate("a.test").is_some());
        assert!(m.certificate("www.a.test").is_some());
        assert_eq!(m.served().len(), 1);
        let (c, k) = pem_pair(&["a.test"]);
        m.install(
            "a.test",
            &Certificate::from_pem(c.as_bytes(), k.as_bytes()).expect("parses"),
        );
        assert!(m.certificate("www.a.test").is_none());
        assert_eq!(m.served()[0].name, "a.test");
    }

    #[test]
    fn a_key_that_does_not_match_or_garbage_is_refused() {
        let (c, _) = pem_pair(&["a.test"]);
        let (_, other) = pem_pair(&["a.test"]);
        let e = Certificate::from_pem(c.as_bytes(), other.as_bytes()).expect_err("mismatch");
        assert!(e.contains("does not match"), "{e}");
        let e = Certificate::from_pem(b"junk", other.as_bytes()).expect_err("no chain");
        assert!(e.contains("no certificate"), "{e}");
    }

    #[test]
    fn challenge_answers_are_replaced_whole() {
        let m = Managed::new();
        m.set_http01(HashMap::from([("tok".to_owned(), "tok.thumb".into())]));
        assert_eq!(m.http01(b"tok").as_deref(), Some("tok.thumb"));
        assert_eq!(m.http01(b"other"), None);
        m.set_http01(HashMap::new());
        assert_eq!(m.http01(b"tok"), None);
        m.set_tls_alpn01(&[("a.test".to_owned(), [7; 32])])
            .expect("made");
        assert!(m.alpn_challenge("a.test").is_some());
        assert!(m.alpn_challenge("b.test").is_none());
    }
}
