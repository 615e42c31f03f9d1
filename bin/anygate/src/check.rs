//! `anygate check`: validate, then print the compiled route table.

use std::process::ExitCode;

use anygate_config::{Config, Failure, Workers};
use anygate_plugins::Registry;

use crate::args::Args;
use crate::describe;

/// `anygate check -c FILE`.
pub fn run(args: &Args) -> ExitCode {
    match load(&args.config) {
        Ok(config) => {
            for w in &config.warnings {
                eprint!("{}", w.render(&config.sources));
            }
            print!("{}", report(&args.config.display().to_string(), &config));
            ExitCode::SUCCESS
        }
        Err(failure) => {
            report_failure(&args.config.display().to_string(), &failure);
            ExitCode::from(1)
        }
    }
}

/// Loads and validates `path` completely: the configuration, then its filter chains with
/// the kinds this build has.
pub fn load(path: &std::path::Path) -> Result<Config, Failure> {
    let config = anygate_config::load(path, &anygate_config::env_overrides())?;
    let (config, _) = crate::tls::build(config)?;
    if let Err(diagnostics) = anygate_pipeline::App::validate(&config) {
        return Err(Failure {
            sources: config.sources,
            diagnostics,
        });
    }
    match anygate_plugins::compile(&config, &Registry::builtin()) {
        Ok(_) => Ok(config),
        Err(diagnostics) => Err(Failure {
            sources: config.sources,
            diagnostics,
        }),
    }
}

/// Prints every diagnostic and a count to stderr.
pub fn report_failure(name: &str, failure: &Failure) {
    eprint!("{failure}");
    let n = failure.errors().count();
    eprintln!(
        "{name}: {n} error{}; the configuration is not valid",
        if n == 1 { "" } else { "s" }
    );
}

/// The report printed by `check` for a valid configuration.
pub fn report(name: &str, config: &Config) -> String {
    let n = config.routes.len();
    let w = config.warnings.len();
    let mut out = format!(
        "{name}: valid, {n} rule{}{}\n",
        if n == 1 { "" } else { "s" },
        match w {
            0 => String::new(),
            1 => ", 1 warning".to_owned(),
            w => format!(", {w} warnings"),
        }
    );
    let listen: Vec<String> = config
        .server
        .listen
        .iter()
        .map(|l| l.addr.to_string())
        .collect();
    out.push_str(&format!("listen: {}\n", listen.join(", ")));
    if let Some(t) = &config.tls {
        let addrs: Vec<String> = t.listen.iter().map(|l| l.addr.to_string()).collect();
        let n = t.certificates.len();
        out.push_str(&format!(
            "tls: {} ({}, {n} certificate{}{})\n",
            addrs.join(", "),
            match t.profile {
                anygate_config::TlsProfile::Modern => "TLS 1.3",
                anygate_config::TlsProfile::Intermediate => "TLS 1.2 and 1.3",
            },
            if n == 1 { "" } else { "s" },
            if t.redirect_http {
                ", plain HTTP redirected"
            } else {
                ""
            }
        ));
    }
    if let (Some(a), Some(t)) = (&config.acme, &config.tls) {
        let settings = crate::tls::settings(t, true, config.server.h2.enabled);
        let domains = config.acme_domains(&crate::acme::configured_names(&settings));
        out.push_str(&format!(
            "acme: {} ({}) for {}\n",
            a.directory,
            a.challenge.as_str(),
            if domains.is_empty() {
                "no name".to_owned()
            } else {
                domains.join(", ")
            }
        ));
    }
    out.push_str(&match config.server.workers {
        Workers::Auto => "workers: auto (one per CPU)\n".to_owned(),
        Workers::Count(n) => format!("workers: {n}\n"),
    });
    for u in &config.upstreams {
        let targets: Vec<String> = u
            .targets
            .iter()
            .map(|t| format!("{}:{}", t.host, t.port))
            .collect();
        out.push_str(&format!("upstream {}: {}\n", u.name, targets.join(", ")));
    }
    let summaries = describe::summaries(config);
    out.push_str(&format!(
        "filters (global): {}\n",
        describe::chain(config, &summaries, &config.global_plugins)
    ));
    for p in &config.profiles {
        out.push_str(&format!(
            "profile {} (group {}, {}):\n",
            p.profile.name(),
            p.group.as_deref().unwrap_or("without prefix"),
            config.sources.location(p.span)
        ));
        for item in &p.expanded {
            out.push_str(&format!("  {item}\n"));
        }
    }
    out.push_str("\nroutes, in the order the router tries them:\n");
    let mut rows = String::new();
    for (host, rule) in config.router.in_priority_order() {
        let route = &config.routes[rule.value];
        rows.push_str(&format!(
            "{}{}\t{}\t{}\t{}\t{}\n",
            host.map(ToString::to_string).unwrap_or_default(),
            route.head.path.display(),
            route.methods_label(),
            describe::action(config, route),
            describe::location(config, route),
            describe::route_chain(config, &summaries, route),
        ));
    }
    out.push_str(&describe::align(&rows, "  "));
    out
}
