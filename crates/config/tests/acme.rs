//! The `acme` section: defaults, the domains it derives, and bad values with positions.

use std::path::Path;
use std::time::Duration;

use anygate_config::{AcmeChallenge, Config, Failure, Format, LETS_ENCRYPT_STAGING, load_str};

fn yaml(text: &str) -> Result<Config, Failure> {
    load_str("t.yml", text, Format::Yaml, Path::new("/etc/ag"), &[])
}

#[test]
fn an_acme_section_needs_no_certificates_and_has_defaults() {
    let c = yaml(
        "tls: {}\nacme: {email: ops@example.com, directory: staging}\nroutes:\n  \"example.com/\": OK\n  \"www.example.com/\": OK\n  \"*.example.com/\": OK\n  \"localhost/\": OK\n  \"/\": OK\n",
    )
    .unwrap_or_else(|f| panic!("{}", f));
    let a = c.acme.as_ref().expect("acme");
    assert_eq!(a.directory, LETS_ENCRYPT_STAGING);
    assert_eq!(a.challenge, AcmeChallenge::Http01);
    assert_eq!(a.renew_before, Duration::from_secs(30 * 86_400));
    assert_eq!(a.storage, Path::new("/var/lib/anygate/acme"));
    assert!(c.tls.as_ref().expect("tls").certificates.is_empty());
    // Exact hosts a CA can issue for, without the wildcard and `localhost`; a name a
    // configured certificate serves is left to it.
    assert_eq!(c.acme_domains(&[]), ["example.com", "www.example.com"]);
    assert_eq!(
        c.acme_domains(&["*.example.com".to_owned()]),
        ["example.com"]
    );
    assert_eq!(
        c.acme_domains(&["example.com".to_owned()]),
        ["www.example.com"]
    );
}

#[test]
fn written_domains_win_and_relative_paths_resolve_against_the_config() {
    let c = yaml(
        "tls: {}\nacme: {domains: [A.example.com., b.example.com], storage: acme, ca_bundle: ca.pem, challenge: tls-alpn-01, renew_before: 1d12h, retry_min: 1s, retry_max: 10s, directory: \"https://127.0.0.1:14000/dir\"}\nroutes: {\"c.example.com/\": OK}\n",
    )
    .unwrap_or_else(|f| panic!("{}", f));
    let a = c.acme.as_ref().expect("acme");
    assert_eq!(c.acme_domains(&[]), ["a.example.com", "b.example.com"]);
    assert_eq!(a.storage, Path::new("/etc/ag/acme"));
    assert_eq!(a.ca_bundle.as_deref(), Some(Path::new("/etc/ag/ca.pem")));
    assert_eq!(a.challenge, AcmeChallenge::TlsAlpn01);
    assert_eq!(a.renew_before, Duration::from_secs(36 * 3_600));
    assert_eq!(a.directory, "https://127.0.0.1:14000/dir");
}

#[test]
fn bad_acme_settings_are_refused_with_their_position() {
    let cases = [
        ("acme: {}", "1:1", "needs a `tls` section"),
        (
            "tls: {}\nacme: {email: nobody}",
            "2:15",
            "not an email address",
        ),
        (
            "tls: {}\nacme: {directory: http://ca/dir}",
            "2:19",
            "must be `production`",
        ),
        (
            "tls: {}\nacme: {challenge: dns-01}",
            "2:19",
            "`http-01` or `tls-alpn-01`",
        ),
        (
            "tls: {}\nacme: {domains: [\"*.example.com\"]}",
            "2:18",
            "DNS-01",
        ),
        ("tls: {}\nacme: {domains: [10.0.0.1]}", "2:18", "IP address"),
        (
            "tls: {}\nacme: {domains: [a.test, a.test]}",
            "2:26",
            "listed twice",
        ),
        (
            "tls: {}\nacme: {domains: []}",
            "2:17",
            "`acme.domains` is empty",
        ),
        (
            "tls: {}\nacme: {renew_before: \"30\"}",
            "2:22",
            "has no unit",
        ),
        (
            "tls: {}\nacme: {retry_min: 1m, retry_max: 1s}",
            "2:1",
            "retry_max",
        ),
        ("tls: {}\nacme: {renew: 30d}", "2:8", "renew"),
        (
            "tls: {}\nacme: {storage: \"\"}",
            "2:17",
            "must not be empty",
        ),
    ];
    for (section, at, why) in cases {
        let text = format!("{section}\nroutes: {{\"/\": OK}}\n");
        let f = yaml(&text).expect_err(section);
        let errors: Vec<_> = f.errors().collect();
        assert_eq!(errors.len(), 1, "{section}: {}", f);
        let d = errors[0];
        let loc = d.span.map(|s| f.sources.location(s)).unwrap_or_default();
        assert_eq!(loc, format!("t.yml:{at}"), "{section}: {}", d.message);
        assert!(d.message.contains(why), "{section}: {}", d.message);
    }
}

#[test]
fn tls_without_certificates_still_needs_acme() {
    let f = yaml("tls: {}\nroutes: {\"/\": OK}\n").expect_err("refused");
    let d = f.errors().next().expect("an error");
    assert!(d.message.contains("or an `acme` section"), "{}", d.message);
}
