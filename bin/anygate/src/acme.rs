//! The `acme` section turned into the ACME client's settings, and the warnings `check` and
//! the start give about it.

use std::path::Path;

use anygate_config::{AcmeChallenge, Config, Diagnostic, codes};
use anygate_tls::ServerSettings;

/// Every DNS name the configured certificates of `tls` serve (those that load).
pub fn configured_names(tls: &ServerSettings) -> Vec<String> {
    let mut names = Vec::new();
    for c in &tls.certificates {
        if let Ok(chain) = anygate_tls::pem_certificates(&c.cert)
            && let Some(leaf) = chain.first()
            && let Ok(facts) = anygate_tls::x509::facts(leaf)
        {
            names.extend(facts.dns_names.into_iter().map(|n| n.to_ascii_lowercase()));
        }
    }
    names
}

/// The client's settings (`None` without `acme`).
pub fn settings(config: &Config, tls: &ServerSettings) -> Option<anygate_acme::Settings> {
    let a = config.acme.as_ref()?;
    Some(anygate_acme::Settings {
        directory: a.directory.clone(),
        email: a.email.clone(),
        ca_bundle: a.ca_bundle.clone(),
        challenge: match a.challenge {
            AcmeChallenge::Http01 => anygate_acme::Challenge::Http01,
            AcmeChallenge::TlsAlpn01 => anygate_acme::Challenge::TlsAlpn01,
        },
        storage: a.storage.clone(),
        domains: config.acme_domains(&configured_names(tls)),
        renew_before: a.renew_before,
        retry_min: a.retry_min,
        retry_max: a.retry_max,
    })
}

/// `app`, answering HTTP-01 challenges from `tls`'s ACME state when `acme` runs with
/// that challenge (with TLS-ALPN-01 the path stays the routes').
pub fn answering(
    app: anygate_pipeline::App,
    tls: Option<&anygate_tls::TlsServer>,
    acme: Option<&anygate_acme::Settings>,
) -> anygate_pipeline::App {
    match (tls, acme) {
        (Some(tls), Some(a)) if a.challenge == anygate_acme::Challenge::Http01 => {
            app.with_acme(tls.managed().clone())
        }
        _ => app,
    }
}

/// What is worth a warning: a managed name no route serves, HTTP-01 without a plain
/// listener on port 80, TLS-ALPN-01 without a TLS listener on 443, nothing to manage.
pub fn warnings(config: &Config, domains: &[String]) -> Vec<Diagnostic> {
    let Some(a) = &config.acme else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if domains.is_empty() {
        out.push(Diagnostic::warning(
            codes::VALUE,
            a.span,
            "`acme` has no name to obtain a certificate for: list `acme.domains`, or route exact hosts (`\"example.com/\": …`)",
        ));
    }
    if let Some(listed) = &a.domains {
        for (name, span) in listed {
            let routed = config.routes.iter().any(|r| {
                r.head.hosts.is_empty()
                    || r.head
                        .hosts
                        .iter()
                        .any(|h| h.matches(name.as_bytes(), None))
            });
            if !routed {
                out.push(Diagnostic::warning(
                    codes::VALUE,
                    *span,
                    format!("no route serves `{name}`: its certificate would only answer 404s"),
                ));
            }
        }
    }
    match a.challenge {
        AcmeChallenge::Http01 => {
            if !config.server.listen.iter().any(|l| l.addr.port() == 80) {
                out.push(Diagnostic::warning(
                    codes::VALUE,
                    a.span,
                    "`acme.challenge: http-01` needs a plain listener on port 80 (the CA connects there); none is configured (use `tls-alpn-01` for a 443-only gateway)",
                ));
            }
        }
        AcmeChallenge::TlsAlpn01 => {
            let on_443 = config
                .tls
                .iter()
                .flat_map(|t| t.listen.iter())
                .any(|l| l.addr.port() == 443);
            if !on_443 {
                out.push(Diagnostic::warning(
                    codes::VALUE,
                    a.span,
                    "`acme.challenge: tls-alpn-01` needs a TLS listener on port 443 (the CA connects there); none is configured",
                ));
            }
        }
    }
    out
}

/// A storage directory's state per managed name, for `diagnose`.
pub fn status_lines(storage: &Path, domains: &[String]) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    domains
        .iter()
        .map(|name| {
            let (state, not_after) = anygate_acme::status(storage, name);
            let expiry = match not_after {
                Some(t) if t > now => format!("expires in {} days", t.saturating_sub(now) / 86_400),
                Some(t) => format!("EXPIRED {} days ago", now.saturating_sub(t) / 86_400),
                None => "no certificate yet".to_owned(),
            };
            let attempt = match state.last_attempt {
                Some(t) => format!("last order {}s ago", now.saturating_sub(t).max(0)),
                None => "no order yet".to_owned(),
            };
            let error = match &state.last_error {
                Some(e) => format!(", last error: {e} ({} failures in a row)", state.failures),
                None => String::new(),
            };
            format!(
                "{name}: {expiry}, {attempt}, {} orders{error}",
                state.orders
            )
        })
        .collect()
}
