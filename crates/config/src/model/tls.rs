//! `tls`: listeners, certificates, client authentication; and a pool's `tls`.
//!
//! Only the shape is checked here (paths resolved against the config file's directory);
//! reading the files, matching keys and names is `anygate-tls`'s job, reported with these
//! spans by the binary.

use super::*;

/// `tls.profile`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsProfile {
    /// TLS 1.3 only.
    Modern,
    /// TLS 1.2 and 1.3 (default).
    #[default]
    Intermediate,
}

/// `client_auth.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuthMode {
    /// No client certificate asked for (default).
    #[default]
    Off,
    /// Asked for, not required.
    Optional,
    /// Required: the handshake fails without one from `ca`.
    Required,
}

/// `client_auth` (of the listener, or of a host).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientAuth {
    /// `mode`.
    pub mode: ClientAuthMode,
    /// `ca`, resolved.
    pub ca: Option<PathBuf>,
    /// Where the `client_auth` value is.
    pub span: Option<Span>,
}

/// One entry of `tls.certificates`.
#[derive(Clone, Debug)]
pub struct TlsCertificate {
    /// `cert`, resolved.
    pub cert: PathBuf,
    /// `key`, resolved.
    pub key: PathBuf,
    /// `ocsp`, resolved: a DER OCSP response to staple.
    pub ocsp: Option<PathBuf>,
    /// Where `cert`, `key` and `ocsp` are written.
    pub cert_span: Span,
    /// See `cert_span`.
    pub key_span: Span,
    /// See `cert_span`.
    pub ocsp_span: Option<Span>,
}

/// `tls.hosts.NAME`.
#[derive(Clone, Debug)]
pub struct TlsHost {
    /// The host (exact or `*.suffix`), lower-cased.
    pub name: String,
    /// Its client authentication.
    pub client_auth: ClientAuth,
}

/// `tls`.
#[derive(Clone, Debug)]
pub struct Tls {
    /// `tls.listen` (default `127.0.0.1:8443`).
    pub listen: Vec<Listen>,
    /// `tls.profile`.
    pub profile: TlsProfile,
    /// `tls.certificates` (may be empty when `acme` obtains them).
    pub certificates: Vec<TlsCertificate>,
    /// Where `tls.certificates` is (or the `tls` key).
    pub certificates_span: Span,
    /// `tls.default_certificate` and where it is.
    pub default_certificate: Option<(String, Span)>,
    /// `tls.client_auth`.
    pub client_auth: ClientAuth,
    /// `tls.hosts`.
    pub hosts: Vec<TlsHost>,
    /// `tls.redirect_http` (default false): the plain listeners answer every request with
    /// 308 to the same URL over `https://` (on the first TLS port).
    pub redirect_http: bool,
    /// `tls.handshake_timeout` (default 10s).
    pub handshake_timeout: Duration,
    /// Where the `tls` key is.
    pub span: Span,
}

/// `proxy.upstreams.NAME.tls`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// `ca`, resolved (default: the system's roots).
    pub ca: Option<PathBuf>,
    /// `server_name`: sent (SNI) and verified (default: the target's host).
    pub server_name: Option<String>,
    /// `cert`, resolved: a client certificate for mTLS.
    pub cert: Option<PathBuf>,
    /// `key`, resolved.
    pub key: Option<PathBuf>,
    /// `insecure_skip_verify` (default false).
    pub insecure_skip_verify: bool,
    /// Where the `tls` value is.
    pub span: Option<Span>,
}

impl Decoder<'_> {
    pub(super) fn path(&mut self, n: &Node, what: &str) -> Option<PathBuf> {
        let s = self.string(n, what)?;
        if s.is_empty() {
            self.value_error(n.span, format!("`{what}` must not be empty"));
            return None;
        }
        Some(self.base_dir.join(s))
    }

    pub(super) fn client_auth(&mut self, n: &Node, what: &str) -> ClientAuth {
        let mut auth = ClientAuth {
            span: Some(n.span),
            ..ClientAuth::default()
        };
        let mut f = Fields::new(self.diags, n, what);
        if let Some(n) = f.take("mode")
            && let Some(m) = self.string(n, &format!("{what}.mode"))
        {
            auth.mode = match m {
                "off" => ClientAuthMode::Off,
                "optional" => ClientAuthMode::Optional,
                "required" => ClientAuthMode::Required,
                _ => {
                    self.value_error(
                        n.span,
                        format!("`{what}.mode` must be `off`, `optional` or `required`"),
                    );
                    ClientAuthMode::Off
                }
            };
        }
        if let Some(n) = f.take("ca") {
            auth.ca = self.path(n, &format!("{what}.ca"));
        }
        f.finish(self.diags, &["mode", "ca"]);
        if auth.mode != ClientAuthMode::Off && auth.ca.is_none() {
            self.value_error(
                n.span,
                format!("`{what}` needs `ca` (the CA client certificates must chain to)"),
            );
        }
        auth
    }

    /// `acme`: whether an `acme` section gets certificates (then `certificates` may be
    /// left out).
    pub(super) fn tls(&mut self, key: &Node, node: &Node, acme: bool) -> Tls {
        let mut tls = Tls {
            listen: vec![Listen {
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443),
                span: None,
            }],
            profile: TlsProfile::default(),
            certificates: Vec::new(),
            certificates_span: key.span,
            default_certificate: None,
            client_auth: ClientAuth::default(),
            hosts: Vec::new(),
            redirect_http: false,
            handshake_timeout: Duration::from_secs(10),
            span: key.span,
        };
        let mut f = Fields::new(self.diags, node, "tls");
        if let Some(n) = f.take("listen") {
            tls.listen = self.listen_list(n, "tls.listen");
        }
        if let Some(n) = f.take("profile")
            && let Some(p) = self.string(n, "tls.profile")
        {
            tls.profile = match p {
                "modern" => TlsProfile::Modern,
                "intermediate" => TlsProfile::Intermediate,
                _ => {
                    self.value_error(n.span, "`tls.profile` must be `modern` (TLS 1.3) or `intermediate` (TLS 1.2 and 1.3)");
                    TlsProfile::default()
                }
            };
        }
        match f.take("certificates") {
            Some(n) => {
                tls.certificates_span = n.span;
                match &n.kind {
                    Kind::Seq(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if let Some(c) = self.tls_certificate(item, i) {
                                tls.certificates.push(c);
                            }
                        }
                        if items.is_empty() {
                            self.value_error(
                                n.span,
                                "`tls.certificates` needs at least one certificate",
                            );
                        }
                    }
                    _ => self.type_error(n, "tls.certificates", "a list of `{ cert, key }` maps"),
                }
            }
            None if acme => {}
            None => self.value_error(
                key.span,
                "`tls` needs `certificates` (or an `acme` section to obtain them)",
            ),
        }
        if let Some(n) = f.take("default_certificate")
            && let Some(s) = self.string(n, "tls.default_certificate")
        {
            tls.default_certificate = Some((s.to_ascii_lowercase(), n.span));
        }
        if let Some(n) = f.take("client_auth") {
            tls.client_auth = self.client_auth(n, "tls.client_auth");
        }
        if let Some(n) = f.take("hosts") {
            let mut hosts = Fields::new(self.diags, n, "tls.hosts");
            for (k, v) in hosts.unique_entries() {
                let Some(name) = k.as_str() else { continue };
                let name = name.to_ascii_lowercase();
                let bare = name.strip_prefix("*.").unwrap_or(&name);
                if bare.is_empty()
                    || !bare
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                {
                    self.value_error(
                        k.span,
                        format!("`{name}` is not a host name (a wildcard is `*.example.com`)"),
                    );
                    continue;
                }
                let what = format!("tls.hosts.{name}");
                let mut h = Fields::new(self.diags, v, &what);
                let client_auth = match h.take("client_auth") {
                    Some(n) => self.client_auth(n, &format!("{what}.client_auth")),
                    None => ClientAuth::default(),
                };
                h.finish(self.diags, &["client_auth"]);
                tls.hosts.push(TlsHost { name, client_auth });
            }
        }
        if let Some(n) = f.take("redirect_http") {
            tls.redirect_http = self.bool(n, "tls.redirect_http").unwrap_or(false);
        }
        if let Some(n) = f.take("handshake_timeout") {
            self.positive_duration(n, "tls.handshake_timeout", &mut tls.handshake_timeout);
        }
        f.finish(
            self.diags,
            &[
                "listen",
                "profile",
                "certificates",
                "default_certificate",
                "client_auth",
                "hosts",
                "redirect_http",
                "handshake_timeout",
            ],
        );
        tls
    }

    fn tls_certificate(&mut self, n: &Node, i: usize) -> Option<TlsCertificate> {
        let what = format!("tls.certificates[{i}]");
        let mut f = Fields::new(self.diags, n, &what);
        let cert = f.take("cert");
        let key = f.take("key");
        let ocsp = f.take("ocsp");
        f.finish(self.diags, &["cert", "key", "ocsp"]);
        let (Some(cert_node), Some(key_node)) = (cert, key) else {
            self.value_error(n.span, format!("`{what}` needs `cert` and `key`"));
            return None;
        };
        let cert = self.path(cert_node, &format!("{what}.cert"));
        let key = self.path(key_node, &format!("{what}.key"));
        let ocsp_path = match ocsp {
            Some(o) => Some(self.path(o, &format!("{what}.ocsp"))?),
            None => None,
        };
        Some(TlsCertificate {
            cert: cert?,
            key: key?,
            ocsp: ocsp_path,
            cert_span: cert_node.span,
            key_span: key_node.span,
            ocsp_span: ocsp.map(|o| o.span),
        })
    }

    pub(super) fn upstream_tls(&mut self, n: &Node, what: &str) -> UpstreamTls {
        let mut t = UpstreamTls {
            span: Some(n.span),
            ..UpstreamTls::default()
        };
        let mut f = Fields::new(self.diags, n, what);
        for (key, slot) in [
            ("ca", &mut t.ca),
            ("cert", &mut t.cert),
            ("key", &mut t.key),
        ] {
            if let Some(n) = f.take(key) {
                *slot = self.path(n, &format!("{what}.{key}"));
            }
        }
        if let Some(n) = f.take("server_name")
            && let Some(s) = self.string(n, &format!("{what}.server_name"))
        {
            t.server_name = Some(s.to_owned());
        }
        if let Some(n) = f.take("insecure_skip_verify") {
            t.insecure_skip_verify = self
                .bool(n, &format!("{what}.insecure_skip_verify"))
                .unwrap_or(false);
        }
        f.finish(
            self.diags,
            &["ca", "server_name", "cert", "key", "insecure_skip_verify"],
        );
        if t.cert.is_some() != t.key.is_some() {
            self.value_error(
                n.span,
                format!("`{what}` needs both `cert` and `key` for a client certificate"),
            );
        }
        t
    }
}
