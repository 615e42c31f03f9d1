//! One-line descriptions of rules and actions, shared by `check` and `explain`.

use anygate_config::{Config, Route};
use anygate_router::dsl::Action;
use anygate_router::status;

/// What the rule does: `proxy http://users/ (pool: 2 targets)`, `fixed 200 OK, json, 7 B`.
pub fn action(config: &Config, route: &Route) -> String {
    match &route.action {
        Action::Proxy(t) => {
            let mut s = format!(
                "proxy {}{}",
                t.origin(),
                if t.has_path { &t.path } else { "" }
            );
            if let Some(pool) = config.upstream(&t.host) {
                let n = pool.targets.len();
                s.push_str(&format!(
                    " (pool `{}`: {n} target{}, {})",
                    pool.name,
                    if n == 1 { "" } else { "s" },
                    pool.balance
                ));
            }
            s
        }
        Action::Static(dir) => {
            let mut s = format!("static {dir}");
            if route.spa {
                s.push_str(" (spa)");
            }
            s
        }
        Action::Fixed(f) => {
            let code = format!("{} {}", f.status, status::reason(f.status));
            match (&f.location, f.body_type.content_type()) {
                (Some(loc), _) => format!("redirect {code} -> {loc}"),
                (None, Some(ct)) => {
                    let kind = if ct.starts_with("application/json") {
                        "json"
                    } else {
                        "text"
                    };
                    format!("fixed {code}, {kind}, {} B", f.body.len())
                }
                (None, None) => format!("fixed {code}"),
            }
        }
        Action::Echo(s) => format!("echo {s} {}", status::reason(*s)),
    }
}

/// Each `plugins` entry's one-line summary, in the order of `config.plugins` (compiled
/// once, with the kinds this build has; an entry that does not compile reads as its kind).
pub fn summaries(config: &Config) -> Vec<String> {
    let registry = anygate_plugins::Registry::builtin();
    config
        .plugins
        .iter()
        .map(|spec| {
            registry
                .compile(spec)
                .map(|f| f.summary())
                .unwrap_or_default()
        })
        .collect()
}

/// A filter chain: `none`, or its kinds in the order `pre` runs them, each with what it
/// does (`rate_limit [100/s, burst 200, per ip] → ip (group /admin) [allow 1 range(s)]`);
/// `post` runs them the other way.
pub fn chain(config: &Config, summaries: &[String], chain: &[usize]) -> String {
    if chain.is_empty() {
        return "none".to_owned();
    }
    let kinds: Vec<String> = chain
        .iter()
        .filter_map(|&i| Some((config.plugins.get(i)?, summaries.get(i))))
        .map(|(p, summary)| {
            let mut s = p.kind.clone();
            if let Some(g) = &p.group {
                s.push_str(&format!(" (group {g})"));
            }
            if let Some(sum) = summary.filter(|s| !s.is_empty()) {
                s.push_str(&format!(" [{sum}]"));
            }
            s
        })
        .collect();
    kinds.join(" → ")
}

/// A rule's chain, for the route table: `filters: ...`.
pub fn route_chain(config: &Config, summaries: &[String], route: &Route) -> String {
    format!("filters: {}", chain(config, summaries, &route.plugins))
}

/// `file:line:column` of the rule's key.
pub fn location(config: &Config, route: &Route) -> String {
    config.sources.location(route.key)
}

/// Aligns the tab-separated columns of `text`, two spaces apart.
pub fn align(text: &str, indent: &str) -> String {
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split('\t').map(str::trim_end).collect())
        .collect();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A refused configuration's diagnostics as JSON (what `POST /reload` answers): each with
/// its severity, code, message, `file`, `line`, `column` and help.
pub fn diagnostics_json(failure: &anygate_config::Failure) -> serde_json::Value {
    let list: Vec<serde_json::Value> = failure
        .diagnostics
        .iter()
        .map(|d| {
            let (file, line, column) = match d.span {
                Some(span) => {
                    let src = failure.sources.get(span.src);
                    let (line, column) = src.line_col(span.start);
                    (Some(src.name().to_owned()), Some(line), Some(column))
                }
                None => (None, None, None),
            };
            serde_json::json!({
                "severity": match d.severity {
                    anygate_config::Severity::Error => "error",
                    anygate_config::Severity::Warning => "warning",
                },
                "code": d.code,
                "message": d.message,
                "file": file,
                "line": line,
                "column": column,
                "help": d.help.as_deref(),
            })
        })
        .collect();
    serde_json::Value::Array(list)
}
