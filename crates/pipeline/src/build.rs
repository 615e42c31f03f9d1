//! A validated configuration turned into actions: each rule's settings mapped onto its
//! action's options, and the upstream pools shared by the rules that name them.

use anygate_actions::{
    Action, Echo, Fixed, HostMode, Proxy, ProxyOptions, Static, StaticOptions, Upstreams,
};
use anygate_config::Config;
use anygate_router::dsl::{self, Scheme};

/// One action per rule, in the order of `config.routes`.
pub(crate) fn actions(config: &Config) -> Vec<Action> {
    let echo_body = usize::try_from(config.server.limits.echo_body).unwrap_or(usize::MAX);
    let mut upstreams = Upstreams::default();
    for u in &config.upstreams {
        let targets: Vec<(String, u16)> =
            u.targets.iter().map(|t| (t.host.clone(), t.port)).collect();
        upstreams.define(&u.name, &targets, config.proxy.dns_ttl);
    }
    config
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
            dsl::Action::Proxy(t) if t.scheme == Scheme::Http => {
                Action::Proxy(Box::new(Proxy::new(
                    t,
                    &r.head.path,
                    proxy_options(&r.proxy),
                    &mut upstreams,
                    &r.label(),
                )))
            }
            dsl::Action::Proxy(_) => Action::Unavailable,
        })
        .collect()
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
    }
}
