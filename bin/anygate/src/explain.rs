//! `anygate explain`: which rule answers a request, the candidates it beat and why, params,
//! splat, and for proxy rules the upstream URL.

use std::fmt::Write as _;
use std::process::ExitCode;

use anygate_actions::proxy::upstream_path_and_query;
use anygate_config::Config;
use anygate_router::dsl::Action;
use anygate_router::explain::{Outcome, explain, reason};
use anygate_router::method::is_token;
use anygate_router::path::normalize;
use anygate_router::status;

use crate::args::Args;
use crate::{check, describe};

/// `anygate explain -c FILE [--host NAME] METHOD [HOST]TARGET`.
pub fn run(args: &Args) -> ExitCode {
    let (method, target) = (&args.positional[0], &args.positional[1]);
    if !is_token(method) {
        eprintln!("anygate: `{method}` is not an HTTP method");
        return ExitCode::from(2);
    }
    let (authority, path_and_query) = split_target(target);
    if !path_and_query.starts_with('/') {
        eprintln!(
            "anygate: the request target is `/path`, `host/path` or an absolute URL \
             (`http://host/path`)"
        );
        return ExitCode::from(2);
    }
    let authority = args.host.clone().or(authority);
    match check::load(&args.config) {
        Ok(config) => {
            print!(
                "{}",
                report(&config, method, authority.as_deref(), &path_and_query)
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            check::report_failure(&args.config.display().to_string(), &failure);
            ExitCode::from(1)
        }
    }
}

/// The host tier a candidate matched in, in words.
fn host_tier(h: Option<&anygate_router::HostPattern>) -> String {
    match h {
        None => "every host (the rule names none)".to_owned(),
        Some(p) if p.kind == anygate_router::HostKind::Exact => format!("exact host `{p}`"),
        Some(p) => format!("wildcard host `{p}`"),
    }
}

/// A pool's targets and guards, with each target's live state when the gateway this
/// configuration describes answers on its admin listener.
fn pool_report(out: &mut String, config: &Config, pool: &anygate_config::Upstream) {
    let live = config
        .admin
        .as_ref()
        .and_then(|a| live_states(a.listen.addr));
    let state_of = |target: &str| -> String {
        let Some(live) = &live else {
            return String::new();
        };
        let found = live["pools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == pool.name.as_str())
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .find(|t| t["target"] == target);
        match found {
            Some(t) => {
                let detail = t["detail"].as_str().unwrap_or("");
                format!(
                    ": {}{}",
                    t["state"].as_str().unwrap_or("?"),
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(" ({detail})")
                    }
                )
            }
            None => ": not in the running configuration".to_owned(),
        }
    };
    for t in &pool.targets {
        let name = format!("{}:{}", t.host, t.port);
        let _ = writeln!(
            out,
            "  target {name} weight {}{}{}",
            t.weight,
            if t.backup { " (backup)" } else { "" },
            state_of(&name)
        );
    }
    match (&config.admin, &live) {
        (Some(a), None) => {
            let _ = writeln!(
                out,
                "  live state: unavailable (no gateway answers on {})",
                a.listen.addr
            );
        }
        (None, _) => {
            let _ = writeln!(
                out,
                "  live state: unavailable (no admin listener configured)"
            );
        }
        _ => {}
    }
    if let Some(h) = &pool.health {
        let _ = writeln!(
            out,
            "  health: {:?} {} every {:?} (timeout {:?}, fall {}, rise {})",
            h.kind, h.path, h.interval, h.timeout, h.fall, h.rise
        );
    }
    if let Some(o) = &pool.outlier {
        let _ = writeln!(
            out,
            "  outlier: eject after {} failures in a row for {:?} (growing), at most {}% of the pool",
            o.consecutive_failures, o.base_ejection, o.max_ejected_percent
        );
    }
    if let Some(b) = &pool.breaker {
        let _ = writeln!(
            out,
            "  breaker: open at {}% failures of at least {} requests in {:?}, for {:?}{}",
            f64::from(b.failure_ratio_per_mille) / 10.0,
            b.min_requests,
            b.window,
            b.open_for,
            if b.max_pending > 0 {
                format!("; at most {} requests in flight per target", b.max_pending)
            } else {
                String::new()
            }
        );
    }
    if !pool.slow_start.is_zero() {
        let _ = writeln!(out, "  slow start: {:?}", pool.slow_start);
    }
}

/// The running gateway's `/upstreams`, if one answers on `admin` within a second.
fn live_states(admin: std::net::SocketAddr) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut addr = admin;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let limit = std::time::Duration::from_secs(1);
    let mut s = std::net::TcpStream::connect_timeout(&addr, limit).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.set_write_timeout(Some(limit)).ok()?;
    s.write_all(b"GET /upstreams HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    s.take(1 << 20).read_to_end(&mut answer).ok()?;
    let at = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        return None;
    }
    serde_json::from_slice(&answer[at + 4..]).ok()
}

/// `http://host/x?y` → (`host`, `/x?y`), `http://host?y` → (`host`, `/?y`),
/// `host/x` → (`host`, `/x`), `/x` → (none, `/x`). A fragment is dropped.
fn split_target(target: &str) -> (Option<String>, String) {
    let target = target.split('#').next().unwrap_or(target);
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            let (authority, rest) = match rest.find(['/', '?']) {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = authority.rsplit('@').next().unwrap_or(authority);
            let path = if rest.starts_with('/') {
                rest.to_owned()
            } else {
                format!("/{rest}")
            };
            let port = if scheme == "https://" && !authority.contains(':') {
                ":443"
            } else {
                ""
            };
            return (Some(format!("{authority}{port}")), path);
        }
    }
    match target.find('/') {
        Some(0) | None => (None, target.to_owned()),
        Some(i) => (Some(target[..i].to_owned()), target[i..].to_owned()),
    }
}

/// The report printed by `explain` for `METHOD TARGET` with the `Host` `authority`.
pub fn report(config: &Config, method: &str, authority: Option<&str>, target: &str) -> String {
    let mut out = String::new();
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let _ = writeln!(out, "request: {method} {target}");
    let host = authority.and_then(|a| anygate_router::RequestHost::parse(a.as_bytes()));
    if let Some(a) = authority {
        if host.is_none() {
            let _ = writeln!(
                out,
                "host: {a} (not a host name: only rules for every host apply)"
            );
        } else {
            let _ = writeln!(out, "host: {a}");
        }
    }
    let key = host.as_ref().map(|h| h.key(80));
    let path = match normalize(raw_path.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "answer: 400 Bad Request ({e}); no rule is consulted");
            return out;
        }
    };
    if *path != *raw_path.as_bytes() {
        let _ = writeln!(out, "normalized path: {}", String::from_utf8_lossy(&path));
    }
    let e = explain(&config.router, method.as_bytes(), key, &path);
    let summaries = describe::summaries(config);
    match e.outcome {
        Outcome::Found(_) => {
            let winner = &e.candidates[0];
            let route = &config.routes[winner.rule.value];
            let _ = writeln!(
                out,
                "answer: rule `{}` at {}",
                route.label(),
                describe::location(config, route)
            );
            if config.router.has_hosts() {
                let _ = writeln!(out, "  host tier: {}", host_tier(winner.host));
            }
            let _ = writeln!(out, "  action: {}", describe::action(config, route));
            if let Action::Fixed(f) = &route.action
                && !f.body.is_empty()
            {
                let body: String = f.body.chars().take(120).collect();
                let more = if body.len() < f.body.len() {
                    " ..."
                } else {
                    ""
                };
                let _ = writeln!(out, "  body: {body:?}{more}");
            }
            if let Some(group) = &route.group {
                let _ = writeln!(out, "  group: {group}");
            }
            let _ = writeln!(
                out,
                "  filters: {}",
                describe::chain(config, &summaries, &route.plugins)
            );
            for (name, value) in &winner.params {
                let _ = writeln!(out, "  param {name} = {value:?}");
            }
            if let Some(splat) = &winner.splat {
                let _ = writeln!(out, "  splat = {splat:?}");
            }
            if let Action::Proxy(t) = &route.action {
                let pq = upstream_path_and_query(
                    t,
                    &route.head.path,
                    &path,
                    winner.splat.as_deref().map(str::as_bytes),
                    query.map(str::as_bytes),
                );
                let _ = writeln!(
                    out,
                    "  upstream URL: {}{}",
                    t.origin(),
                    String::from_utf8_lossy(&pq)
                );
                let r = &route.proxy.retries;
                let _ = writeln!(
                    out,
                    "  retries: {}",
                    if r.attempts <= 1 {
                        "off".to_owned()
                    } else {
                        format!(
                            "{} attempts on {}{}",
                            r.attempts,
                            r.on.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", "),
                            if r.non_idempotent {
                                ", every method"
                            } else {
                                ", idempotent methods only"
                            }
                        )
                    }
                );
                if let Some(pool) = config.upstream(&t.host) {
                    pool_report(&mut out, config, pool);
                }
            }
        }
        Outcome::MethodNotAllowed(mask) => {
            let _ = writeln!(
                out,
                "answer: 405 {} (Allow: {})",
                status::reason(405),
                config.router.allow_header(mask)
            );
            let global = describe::chain(config, &summaries, &config.global_plugins);
            let _ = writeln!(out, "  filters: {global}");
        }
        Outcome::NotFound => {
            let _ = writeln!(
                out,
                "answer: 404 {} (no rule's path matches)",
                status::reason(404)
            );
            let global = describe::chain(config, &summaries, &config.global_plugins);
            let _ = writeln!(out, "  filters: {global}");
        }
    }
    if e.candidates.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\ncandidates, best first:");
    let winner = matches!(e.outcome, Outcome::Found(_)).then(|| &e.candidates[0]);
    let mut table = String::new();
    for (i, c) in e.candidates.iter().enumerate() {
        let route = &config.routes[c.rule.value];
        let verdict = match winner {
            Some(_) if i == 0 => "wins".to_owned(),
            Some(w) => format!("loses: {}", reason(w, c, method)),
            None => format!("no: does not accept {method}"),
        };
        let _ = writeln!(
            table,
            "{}.\t{}\t{}\t{verdict}",
            i + 1,
            route.label(),
            describe::location(config, route)
        );
    }
    out.push_str(&describe::align(&table, "  "));
    out
}
