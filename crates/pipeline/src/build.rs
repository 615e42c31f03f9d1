//! A validated configuration turned into actions: each rule's settings mapped onto its
//! action's options, and the upstream pools shared by the rules that name them.

use std::sync::Arc;

use anygate_actions::proxy::balance::{Balance, HashKey};
use anygate_actions::proxy::checker::{CheckKind, CheckSpec};
use anygate_actions::proxy::resilience::{BreakerPolicy, BudgetPolicy, OutlierPolicy, millis_of};
use anygate_actions::proxy::{Guards, Protocol, RetryOptions, TargetSpec, retry_on};
use anygate_actions::{
    Action, Echo, Fixed, HostMode, Proxy, ProxyOptions, Static, StaticOptions, Upstreams,
};
use anygate_config::{Config, Diagnostic, codes, model};
use anygate_router::dsl::{self, Scheme};
use anygate_tls::{ClientSettings, TlsClient};

/// The TLS client settings of a pool's `tls` (or the defaults, for `None`).
fn client_settings(t: Option<&anygate_config::UpstreamTls>) -> ClientSettings {
    client_settings_offering(t, vec![anygate_tls::ALPN_HTTP1.to_vec()])
}

/// [`client_settings`], offering `alpn`.
fn client_settings_offering(
    t: Option<&anygate_config::UpstreamTls>,
    alpn: Vec<Vec<u8>>,
) -> ClientSettings {
    ClientSettings {
        ca: t.and_then(|t| t.ca.clone()),
        server_name: t.and_then(|t| t.server_name.clone()),
        cert: t.and_then(|t| t.cert.clone()),
        key: t.and_then(|t| t.key.clone()),
        insecure_skip_verify: t.is_some_and(|t| t.insecure_skip_verify),
        alpn,
    }
}

/// A pool's guards, from its configuration.
fn guards(u: &model::Upstream) -> Guards {
    Guards {
        health: u.health.as_ref().map(|h| CheckSpec {
            kind: match h.kind {
                model::HealthKind::Http => CheckKind::Http {
                    path: h.path.as_str().into(),
                    expect: h.expect.clone().into(),
                },
                model::HealthKind::Tcp => CheckKind::Tcp,
                model::HealthKind::WebSocket => CheckKind::WebSocket {
                    path: h.path.as_str().into(),
                },
            },
            interval: h.interval,
            timeout: h.timeout,
            fall: h.fall,
            rise: h.rise,
        }),
        outlier: u.outlier.map(|o| OutlierPolicy {
            consecutive: o.consecutive_failures,
            base: millis_of(o.base_ejection),
            max_percent: o.max_ejected_percent,
        }),
        breaker: u.breaker.map(|b| BreakerPolicy {
            ratio_per_mille: b.failure_ratio_per_mille,
            min_requests: b.min_requests,
            window: b.window,
            open_for: millis_of(b.open_for),
        }),
        max_pending: u.breaker.map_or(0, |b| b.max_pending as usize),
        slow_start: u.slow_start,
    }
}

/// One action per rule, in the order of `config.routes`, and the upstreams they share; or
/// why a pool's TLS cannot be set up (a CA or client certificate that does not load), with
/// positions.
pub(crate) fn actions(config: &Config) -> Result<(Vec<Action>, Arc<Upstreams>), Vec<Diagnostic>> {
    let echo_body = usize::try_from(config.server.limits.echo_body).unwrap_or(usize::MAX);
    let retries = &config.proxy.retries;
    let mut upstreams = Upstreams::new(
        config.server.workers.count(),
        BudgetPolicy {
            per_mille: retries.budget_per_mille,
            min_per_s: retries.min_retries_per_s,
        },
    );
    let mut diags = Vec::new();
    for u in &config.upstreams {
        let targets: Vec<TargetSpec> = u
            .targets
            .iter()
            .map(|t| TargetSpec {
                host: t.host.clone(),
                port: t.port,
                weight: t.weight,
                backup: t.backup,
            })
            .collect();
        let balance = match &u.balance {
            model::Balance::RoundRobin => Balance::RoundRobin,
            model::Balance::Weighted => Balance::Weighted,
            model::Balance::LeastConn => Balance::LeastConn,
            model::Balance::Random => Balance::Random,
            model::Balance::Hash(k) => Balance::Hash(match k {
                model::HashKey::ClientIp => HashKey::ClientIp,
                model::HashKey::Path => HashKey::Path,
                model::HashKey::Header(h) => HashKey::Header(h.as_str().into()),
                model::HashKey::Cookie(c) => HashKey::Cookie(c.as_str().into()),
            }),
        };
        let protocol = match u.protocol {
            model::UpstreamProtocol::H1 => Protocol::H1,
            model::UpstreamProtocol::H2 => Protocol::H2,
            model::UpstreamProtocol::Auto => Protocol::Auto,
        };
        let h2_alpn = match protocol {
            Protocol::H1 => None,
            Protocol::H2 => Some(vec![anygate_tls::ALPN_H2.to_vec()]),
            Protocol::Auto => Some(vec![
                anygate_tls::ALPN_H2.to_vec(),
                anygate_tls::ALPN_HTTP1.to_vec(),
            ]),
        };
        let tls = u.tls.as_ref().and_then(|t| {
            let fail = |diags: &mut Vec<Diagnostic>, e: String| {
                diags.push(Diagnostic::error(
                    codes::VALUE,
                    t.span.unwrap_or(u.span),
                    format!("`proxy.upstreams.{}.tls`: {e}", u.name),
                ));
            };
            let h1 = TlsClient::new(&client_settings(Some(t)))
                .map_err(|e| fail(&mut diags, e))
                .ok()?;
            let h2 = match h2_alpn {
                None => None,
                Some(alpn) => Some(
                    TlsClient::new(&client_settings_offering(Some(t), alpn))
                        .map_err(|e| fail(&mut diags, e))
                        .ok()?,
                ),
            };
            Some((h1, h2))
        });
        upstreams.define(
            &u.name,
            &targets,
            balance,
            config.proxy.dns_ttl,
            tls,
            protocol,
            guards(u),
        );
    }
    for r in &config.routes {
        let dsl::Action::Proxy(t) = &r.action else {
            continue;
        };
        let pool_tls = t.port.is_none() && upstreams.pool_has_tls(&t.host);
        match t.scheme {
            Scheme::Http | Scheme::H2c if pool_tls => diags.push(Diagnostic::error(
                codes::VALUE,
                r.value,
                format!(
                    "pool `{}` speaks TLS (it has `tls`): write `https://{}/`",
                    t.host, t.host
                ),
            )),
            Scheme::Https
                if !pool_tls
                    && t.port.is_none()
                    && upstreams
                        .pool_protocol(&t.host)
                        .is_some_and(|p| p != Protocol::H1) =>
            {
                diags.push(Diagnostic::error(
                    codes::VALUE,
                    r.value,
                    format!(
                        "pool `{}` has `protocol` h2 or auto but no `tls`: give it `tls` for \
                         HTTP/2 over TLS, or write `http://{}/` for HTTP/2 with prior knowledge",
                        t.host, t.host
                    ),
                ));
            }
            Scheme::Https if !pool_tls && !upstreams.has_default_tls() => {
                match TlsClient::new(&client_settings(None)) {
                    Ok(c) => upstreams.set_default_tls(c),
                    Err(e) => diags.push(Diagnostic::error(codes::VALUE, r.value, e)),
                }
            }
            _ => {}
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let actions = config
        .routes
        .iter()
        .map(|r| match &r.action {
            dsl::Action::Fixed(f) => Action::Fixed(Fixed::new(f)),
            dsl::Action::Echo(status) => Action::Echo(Echo::new(*status, echo_body)),
            dsl::Action::Static(_) => match &r.static_root {
                Some(root) => Action::Static(Box::new(Static::new(
                    root,
                    static_options(&r.static_settings, r.spa, &config.static_settings),
                    &r.label(),
                ))),
                None => Action::Unavailable,
            },
            dsl::Action::Proxy(t) => Action::Proxy(Box::new(Proxy::new(
                t,
                &r.head.path,
                proxy_options(&r.proxy),
                &mut upstreams,
                &r.label(),
            ))),
        })
        .collect();
    Ok((actions, Arc::new(upstreams)))
}

/// The static action's options for a rule: its settings, with the memory bound taken from
/// the top level (the cache is shared by every rule of a worker).
fn static_options(
    s: &anygate_config::StaticSettings,
    spa: bool,
    top: &anygate_config::StaticSettings,
) -> StaticOptions {
    StaticOptions {
        index: s.index.clone(),
        spa,
        listing: s.listing,
        cache_html: s.cache.html.clone(),
        cache_fingerprinted: s.cache.fingerprinted.clone(),
        cache_default: s.cache.default.clone(),
        compress: s.compress,
        compress_min: s.compress_min,
        memory_file_max: s.memory_file_max,
        memory_total_max: top.memory_total_max,
        revalidate: s.revalidate,
    }
}

/// The proxy action's options for a rule.
fn proxy_options(p: &anygate_config::ProxySettings) -> ProxyOptions {
    ProxyOptions {
        connect_timeout: p.timeouts.connect,
        read_timeout: p.timeouts.read,
        write_timeout: p.timeouts.write,
        total_timeout: p.timeouts.total,
        host: match &p.host {
            anygate_config::HostHeader::Upstream => HostMode::Upstream,
            anygate_config::HostHeader::Client => HostMode::Client,
            anygate_config::HostHeader::Fixed(v) => HostMode::Fixed(v.as_str().into()),
        },
        via: p.via,
        max_idle: p.max_idle,
        max_conns: p.max_conns,
        idle_timeout: p.idle_timeout,
        dns_ttl: p.dns_ttl,
        allow_encoded_traversal: p.allow_encoded_traversal,
        client_cert_header: p.client_cert_header.as_deref().map(Box::from),
        retry: retry_options(&p.retries, p.retry_body_limit),
    }
}

/// `proxy.retries` of a rule.
fn retry_options(r: &anygate_config::Retries, body_limit: u64) -> RetryOptions {
    let on = r.on.iter().fold(0u8, |bits, c| {
        bits | match c {
            anygate_config::RetryOn::ConnectFailure => retry_on::CONNECT_FAILURE,
            anygate_config::RetryOn::Reset => retry_on::RESET,
            anygate_config::RetryOn::Timeout => retry_on::TIMEOUT,
            anygate_config::RetryOn::Status(502) => retry_on::S502,
            anygate_config::RetryOn::Status(503) => retry_on::S503,
            anygate_config::RetryOn::Status(_) => retry_on::S504,
        }
    });
    RetryOptions {
        attempts: r.attempts,
        on,
        backoff_base: r.backoff.0,
        backoff_max: r.backoff.1,
        non_idempotent: r.non_idempotent,
        body_limit,
    }
}
