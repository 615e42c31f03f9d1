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
                    " (pool `{}`: {n} target{})",
                    pool.name,
                    if n == 1 { "" } else { "s" }
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

/// A filter chain: `none`, or its kinds in the order `pre` runs them
/// (`rate_limit → ip (group /admin)`); `post` runs them the other way.
pub fn chain(config: &Config, chain: &[usize]) -> String {
    if chain.is_empty() {
        return "none".to_owned();
    }
    let kinds: Vec<String> = chain
        .iter()
        .filter_map(|&i| config.plugins.get(i))
        .map(|p| match &p.group {
            Some(g) => format!("{} (group {g})", p.kind),
            None => p.kind.clone(),
        })
        .collect();
    kinds.join(" → ")
}

/// A rule's chain, for the route table: `filters: ...`.
pub fn route_chain(config: &Config, route: &Route) -> String {
    format!("filters: {}", chain(config, &route.plugins))
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
