//! What the pipeline tells `anygate_obs::metrics` about a finished request, and the error
//! catalog as the exposition names it.

use std::sync::OnceLock;

use anygate_config::Config;
use anygate_http::server::Ctx;
use anygate_http::{ErrorKind, Request};
use anygate_obs::metrics::{self, ErrorName, Sample, method_class};
use anygate_router::dsl::ProxyTarget;

use crate::Metric;

/// Records one finished request.
pub(crate) fn record(m: Metric, req: &Request<'_>, ctx: &Ctx) {
    // Untimed: a request the driver refused before routing.
    let elapsed = ctx
        .start
        .zip(ctx.end)
        .map(|(s, e)| e.saturating_duration_since(s));
    // A proxy rule's request reached for its upstream when it made an attempt, or failed
    // on the way there (a refused or timed-out connect counts no attempt).
    let reached = ctx.attempt > 0 || ctx.error.is_some_and(ErrorKind::is_upstream);
    let upstream = match m.upstream {
        Some(slot) if reached => Some((slot, upstream_result(ctx.error))),
        _ => None,
    };
    metrics::record(&Sample {
        route: m.route,
        method: method_class(req.method()),
        status: ctx.status,
        elapsed,
        rx: ctx.bytes_in,
        tx: ctx.bytes_out,
        upstream,
        error: ctx.error.and_then(error_index),
        statics: ctx.static_kinds,
        connect: ctx.connect,
    });
}

/// The index of `kind` in [`ErrorKind::ALL`] (and in [`error_names`]).
fn error_index(kind: ErrorKind) -> Option<usize> {
    ErrorKind::ALL.iter().position(|&k| k == kind)
}

/// The result of an upstream attempt, as an index of `metrics::UPSTREAM_RESULTS`.
fn upstream_result(error: Option<ErrorKind>) -> usize {
    let name = match error {
        None => "ok",
        Some(ErrorKind::UpstreamRefused) => "refused",
        Some(ErrorKind::UpstreamReset) => "reset",
        Some(ErrorKind::UpstreamInvalid) => "invalid_response",
        Some(ErrorKind::UpstreamUnresolved) => "unresolved",
        Some(ErrorKind::UpstreamBusy) => "busy",
        Some(ErrorKind::UpstreamCircuitOpen) => "circuit_open",
        Some(ErrorKind::UpstreamUnavailable) => "unavailable",
        Some(ErrorKind::UpstreamConnectTimeout) => "connect_timeout",
        Some(ErrorKind::UpstreamReadTimeout) => "read_timeout",
        Some(ErrorKind::UpstreamWriteTimeout) => "write_timeout",
        Some(ErrorKind::UpstreamTotalTimeout) => "total_timeout",
        Some(ErrorKind::UpstreamTls) => "tls",
        Some(ErrorKind::ClientClosed) => "client_closed",
        // An error of the gateway after the upstream answered (a bad path, …).
        Some(_) => "ok",
    };
    metrics::UPSTREAM_RESULTS
        .iter()
        .position(|&r| r == name)
        .unwrap_or(0)
}

/// The `upstream` label of a proxy rule: its pool's name, or `host:port`.
pub(crate) fn upstream_name(config: &Config, t: &ProxyTarget) -> Box<str> {
    if config.upstreams.iter().any(|u| u.name == t.host) {
        return t.host.as_str().into();
    }
    let port = t.port.unwrap_or(match t.scheme {
        anygate_router::dsl::Scheme::Https => 443,
        _ => 80,
    });
    format!("{}:{port}", t.host).into()
}

/// The error catalog as the exposition names it, by index: codes, statuses, and for a
/// filter's refusals the filter and the reason.
pub fn error_names() -> &'static [ErrorName] {
    static NAMES: OnceLock<Vec<ErrorName>> = OnceLock::new();
    NAMES.get_or_init(|| {
        ErrorKind::ALL
            .iter()
            .map(|&k| ErrorName {
                code: k.code(),
                status: k.status(),
                denial: match k {
                    ErrorKind::CorsDenied => Some(("cors", "origin")),
                    ErrorKind::IpDenied => Some(("ip", "address")),
                    ErrorKind::RateLimited => Some(("rate_limit", "limited")),
                    ErrorKind::Unauthorized => Some(("auth", "unauthenticated")),
                    ErrorKind::AuthForbidden => Some(("auth", "forbidden")),
                    ErrorKind::ClientCertRequired => Some(("tls", "client_certificate")),
                    _ => None,
                },
            })
            .collect()
    })
}
