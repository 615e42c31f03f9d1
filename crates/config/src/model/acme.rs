//! `acme`: automatic certificates (the client runs in `anygate-acme`).

use super::*;

/// `acme.challenge`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// HTTP-01: the CA fetches `/.well-known/acme-challenge/TOKEN` over plain HTTP on
    /// port 80 (default).
    #[default]
    Http01,
    /// TLS-ALPN-01: the CA connects to port 443 with ALPN `acme-tls/1` (no plain
    /// listener needed).
    TlsAlpn01,
}

impl AcmeChallenge {
    /// The name written in the configuration and in RFC 8555.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `acme`.
#[derive(Clone, Debug)]
pub struct Acme {
    /// `acme.email`: the account's contact, if any.
    pub email: Option<String>,
    /// `acme.directory` as a URL (`production` and `staging` are Let's Encrypt's).
    pub directory: String,
    /// `acme.ca_bundle`, resolved: the roots the CA's own HTTPS is verified against
    /// (default: the system's).
    pub ca_bundle: Option<PathBuf>,
    /// `acme.challenge`.
    pub challenge: AcmeChallenge,
    /// `acme.storage`, resolved (default `/var/lib/anygate/acme`).
    pub storage: PathBuf,
    /// `acme.domains` with their positions; `None`: every exact host the routes name that
    /// no configured certificate serves.
    pub domains: Option<Vec<(String, Span)>>,
    /// `acme.renew_before` (default 30 days).
    pub renew_before: Duration,
    /// `acme.retry_min` (default 1m): the first wait after a failed order, doubled at
    /// each failure up to `retry_max`.
    pub retry_min: Duration,
    /// `acme.retry_max` (default 1d).
    pub retry_max: Duration,
    /// Where the `acme` key is.
    pub span: Span,
}

/// Whether `name` is a DNS name a CA can issue for by HTTP-01 or TLS-ALPN-01: labels of
/// letters, digits and inner hyphens, at least two of them, no wildcard, not an IP.
pub fn acme_name_problem(name: &str) -> Option<String> {
    if name.starts_with("*.") {
        return Some(format!(
            "`{name}`: a wildcard certificate needs the DNS-01 challenge, which AnyGate does not run; name each host"
        ));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Some(format!(
            "`{name}` is an IP address: ACME certificates here are for DNS names"
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) {
        return Some(format!(
            "`{name}` is not a DNS name a CA can issue for (letters, digits and hyphens, two labels or more)"
        ));
    }
    None
}

impl Decoder<'_> {
    pub(super) fn acme(&mut self, key: &Node, node: &Node) -> Acme {
        let mut acme = Acme {
            email: None,
            directory: LETS_ENCRYPT.to_owned(),
            ca_bundle: None,
            challenge: AcmeChallenge::default(),
            storage: PathBuf::from("/var/lib/anygate/acme"),
            domains: None,
            renew_before: Duration::from_secs(30 * 86_400),
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(86_400),
            span: key.span,
        };
        let mut f = Fields::new(self.diags, node, "acme");
        if let Some(n) = f.take("email")
            && let Some(s) = self.string(n, "acme.email")
        {
            let at = s.find('@');
            if at.is_none_or(|i| i == 0 || i + 1 == s.len()) || s.bytes().any(|b| b <= b' ') {
                self.value_error(n.span, format!("`{s}` is not an email address"));
            } else {
                acme.email = Some(s.to_owned());
            }
        }
        if let Some(n) = f.take("directory")
            && let Some(s) = self.string(n, "acme.directory")
        {
            match s {
                "production" => acme.directory = LETS_ENCRYPT.to_owned(),
                "staging" => acme.directory = LETS_ENCRYPT_STAGING.to_owned(),
                url if url.starts_with("https://") && url.len() > "https://".len() => {
                    acme.directory = url.to_owned();
                }
                _ => self.value_error(
                    n.span,
                    "`acme.directory` must be `production`, `staging` or the CA's directory URL (`https://…`)",
                ),
            }
        }
        if let Some(n) = f.take("ca_bundle") {
            acme.ca_bundle = self.path(n, "acme.ca_bundle");
        }
        if let Some(n) = f.take("challenge")
            && let Some(s) = self.string(n, "acme.challenge")
        {
            acme.challenge = match s {
                "http-01" => AcmeChallenge::Http01,
                "tls-alpn-01" => AcmeChallenge::TlsAlpn01,
                _ => {
                    self.value_error(
                        n.span,
                        "`acme.challenge` must be `http-01` or `tls-alpn-01`",
                    );
                    AcmeChallenge::default()
                }
            };
        }
        if let Some(n) = f.take("storage")
            && let Some(p) = self.path(n, "acme.storage")
        {
            acme.storage = p;
        }
        if let Some(n) = f.take("domains") {
            let mut domains: Vec<(String, Span)> = Vec::new();
            for (s, item) in self.strings(n, "acme.domains") {
                let name = s.trim_end_matches('.').to_ascii_lowercase();
                if let Some(problem) = acme_name_problem(&name) {
                    self.value_error(item.span, problem);
                } else if domains.iter().any(|(d, _)| *d == name) {
                    self.value_error(item.span, format!("`{name}` is listed twice"));
                } else {
                    domains.push((name, item.span));
                }
            }
            if domains.is_empty() && matches!(&n.kind, Kind::Seq(items) if items.is_empty()) {
                self.value_error(
                    n.span,
                    "`acme.domains` is empty: name the hosts, or leave it out to take every exact host of the routes",
                );
            }
            acme.domains = Some(domains);
        }
        for (name, slot) in [
            ("renew_before", &mut acme.renew_before),
            ("retry_min", &mut acme.retry_min),
            ("retry_max", &mut acme.retry_max),
        ] {
            if let Some(n) = f.take(name) {
                self.positive_duration(n, &format!("acme.{name}"), slot);
            }
        }
        if acme.retry_max < acme.retry_min {
            self.value_error(
                key.span,
                "`acme.retry_max` must not be less than `acme.retry_min`",
            );
        }
        f.finish(
            self.diags,
            &[
                "email",
                "directory",
                "ca_bundle",
                "challenge",
                "storage",
                "domains",
                "renew_before",
                "retry_min",
                "retry_max",
            ],
        );
        acme
    }
}

#[cfg(test)]
mod tests {
    use super::acme_name_problem;

    #[test]
    fn names_a_ca_can_issue_for() {
        assert_eq!(acme_name_problem("example.com"), None);
        assert_eq!(acme_name_problem("a-b.x1.example.com"), None);
        for bad in [
            "*.example.com",
            "127.0.0.1",
            "::1",
            "localhost",
            "a..example.com",
            "-a.example.com",
            "a_b.example.com",
            "",
        ] {
            assert!(acme_name_problem(bad).is_some(), "{bad}");
        }
    }
}
