//! `anygate diagnose -c FILE`: what an operator checks first when something is wrong.
//!
//! ```text
//! configuration  ./anygate.yml: valid, 12 rules, 3 filters, 2 workers
//! listener       127.0.0.1:8080 (http)   held: another process listens (a running instance?)
//! listener       127.0.0.1:9901 (admin)  held
//! certificate    site.pem: example.com, www.example.com; expires in 61 days (2027-02-01)
//! acme           https://acme-v02.api.letsencrypt.org/directory (http-01), storage /var/lib/anygate/acme
//! acme           api.example.com: expires in 83 days, last order 604800s ago, 1 orders
//! upstream       users 10.0.0.1:8080     reachable (0.4 ms)
//! upstream       127.0.0.1:9             unreachable: connection refused
//! running        anygate 0.1.0, up 3 h 2 min, 12 rules; last reload: success 5 min ago
//! ```
//!
//! Each name ACME manages shows its stored certificate's expiry and its last order and
//! error, read from the storage directory. Each port is probed by binding it (free, or held by a process — a running instance, or
//! something else); each certificate's leaf is read for its names and expiry; each upstream
//! target (pool targets, and the `host:port` of every proxy rule) gets one TCP connect with
//! a 2 s timeout; when the admin port is held, its `/status` is asked for the running
//! instance's version, uptime and last reload. Exit status: 1 when the configuration is not
//! valid (its errors are printed as `check` prints them), 0 otherwise — the findings are
//! for a person to read.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anygate_config::Config;

use crate::args::Args;

/// How long one upstream connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `anygate diagnose -c FILE`.
pub fn run(args: &Args) -> ExitCode {
    let name = args.config.display().to_string();
    match crate::check::load(&args.config) {
        Ok(config) => {
            print!("{}", report(&name, &config));
            ExitCode::SUCCESS
        }
        Err(failure) => {
            crate::check::report_failure(&name, &failure);
            ExitCode::from(1)
        }
    }
}

fn line(out: &mut String, what: &str, text: &str) {
    let _ = writeln!(out, "{what:<14} {text}");
}

/// Whether `addr` can be bound now.
fn probe(addr: SocketAddr) -> String {
    if addr.port() == 0 {
        return "port 0: a free port is picked at start".to_owned();
    }
    match TcpListener::bind(addr) {
        Ok(_) => "free".to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            "held: another process listens (a running instance?)".to_owned()
        }
        Err(e) => format!("cannot bind: {e}"),
    }
}

/// The report for a valid configuration.
pub fn report(name: &str, config: &Config) -> String {
    let mut out = String::new();
    let workers = match config.server.workers {
        anygate_config::Workers::Auto => "auto".to_owned(),
        anygate_config::Workers::Count(n) => n.to_string(),
    };
    line(
        &mut out,
        "configuration",
        &format!(
            "{name}: valid, {} rules, {} filters, workers {workers}{}{}",
            config.routes.len(),
            config.plugins.len(),
            if config.tracing.is_some() {
                ", tracing on"
            } else {
                ""
            },
            if config.admin.is_some() {
                ", metrics on"
            } else {
                ""
            },
        ),
    );
    for l in &config.server.listen {
        line(
            &mut out,
            "listener",
            &format!("{:<22} (http)  {}", l.addr, probe(l.addr)),
        );
    }
    for l in config.tls.iter().flat_map(|t| t.listen.iter()) {
        line(
            &mut out,
            "listener",
            &format!("{:<22} (https) {}", l.addr, probe(l.addr)),
        );
    }
    let admin = config.admin.as_ref().map(|a| a.listen.addr);
    if let Some(addr) = admin {
        line(
            &mut out,
            "listener",
            &format!("{addr:<22} (admin) {}", probe(addr)),
        );
    }
    for c in config.tls.iter().flat_map(|t| t.certificates.iter()) {
        line(&mut out, "certificate", &certificate(&c.cert));
    }
    if let (Some(a), Some(t)) = (&config.acme, &config.tls) {
        let settings = crate::tls::settings(t, true, config.server.h2.enabled);
        let domains = config.acme_domains(&crate::acme::configured_names(&settings));
        line(
            &mut out,
            "acme",
            &format!(
                "{} ({}), storage {}",
                a.directory,
                a.challenge.as_str(),
                a.storage.display()
            ),
        );
        for s in crate::acme::status_lines(&a.storage, &domains) {
            line(&mut out, "acme", &s);
        }
    }
    for (label, addr) in upstreams(config) {
        line(
            &mut out,
            "upstream",
            &format!("{label:<28} {}", reach(&addr)),
        );
    }
    match admin.map(status) {
        Some(Some(s)) => line(&mut out, "running", &s),
        Some(None) => line(
            &mut out,
            "running",
            "no instance answers on the admin listener",
        ),
        None => line(
            &mut out,
            "running",
            "unknown: no `admin` section (add one to read a running instance's state)",
        ),
    }
    out
}

fn certificate(path: &std::path::Path) -> String {
    let file = path.display();
    match anygate_tls::x509::leaf_facts(path) {
        Ok(f) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let days = (f.not_after - now).div_euclid(86_400);
            let when = if f.not_after < now {
                format!("EXPIRED {} days ago", -days)
            } else if days < 30 {
                format!("expires in {days} days: renew it")
            } else {
                format!("expires in {days} days")
            };
            format!("{file}: {}; {when}", f.dns_names.join(", "))
        }
        Err(e) => format!("{file}: unreadable: {e}"),
    }
}

/// Every upstream target: each pool's, and each proxy rule's own `host:port`.
fn upstreams(config: &Config) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for u in &config.upstreams {
        for t in &u.targets {
            out.push((
                format!("{} {}:{}", u.name, t.host, t.port),
                format!("{}:{}", t.host, t.port),
            ));
        }
    }
    for r in &config.routes {
        if let anygate_router::dsl::Action::Proxy(t) = &r.action {
            if config.upstream(&t.host).is_some() {
                continue;
            }
            let port = t.port.unwrap_or(match t.scheme {
                anygate_router::dsl::Scheme::Https => 443,
                _ => 80,
            });
            let addr = format!("{}:{port}", t.host);
            if !out.iter().any(|(_, a)| *a == addr) {
                out.push((addr.clone(), addr));
            }
        }
    }
    out
}

/// One TCP connect to `addr` (resolved), timed.
fn reach(addr: &str) -> String {
    let resolved: Vec<SocketAddr> = match addr.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return format!("unresolved: {e}"),
    };
    let mut last = String::from("no address");
    for a in resolved {
        let start = anygate_runtime::time::precise_now();
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(_) => {
                return format!(
                    "reachable at {a} ({:.1} ms)",
                    start.elapsed().as_secs_f64() * 1e3
                );
            }
            Err(e) => last = format!("unreachable at {a}: {e}"),
        }
    }
    last
}

/// The running instance's `/status`, summarised.
fn status(admin: SocketAddr) -> Option<String> {
    let target = if admin.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), admin.port())
    } else {
        admin
    };
    let mut conn = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).ok()?;
    conn.set_read_timeout(Some(CONNECT_TIMEOUT)).ok()?;
    conn.write_all(b"GET /status HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    conn.take(1 << 20).read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ago = |t: u64| {
        let s = now.saturating_sub(t);
        match s {
            0..60 => format!("{s} s"),
            60..3600 => format!("{} min", s / 60),
            _ => format!("{} h {} min", s / 3600, s / 60 % 60),
        }
    };
    let mut s = format!(
        "anygate {}, up {}, {} rules",
        v["version"].as_str().unwrap_or("?"),
        ago(v["started_unix"].as_u64().unwrap_or(now)),
        v["rules"]
    );
    let r = &v["last_reload"];
    match r.is_object() {
        true => {
            let _ = write!(
                s,
                "; last reload: {} {} ago",
                r["result"].as_str().unwrap_or("?"),
                ago(r["at_unix"].as_u64().unwrap_or(now))
            );
            if let Some(d) = r["detail"]["diagnostics"].as_array() {
                for d in d.iter().take(3) {
                    let _ = write!(
                        s,
                        "\n{:<14} {}:{}:{}: {}",
                        "",
                        d["file"].as_str().unwrap_or("?"),
                        d["line"],
                        d["column"],
                        d["message"].as_str().unwrap_or("")
                    );
                }
            }
        }
        false => s.push_str("; no reload since the start"),
    }
    if v["draining"] == true {
        s.push_str("; DRAINING");
    }
    Some(s)
}
