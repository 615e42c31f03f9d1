//! Rules that can never match, and rules whose methods partly overlap.
//!
//! Two rules compete on equal terms only when their paths have the same shape (the same
//! literals, params in the same places, the same tail): otherwise specificity decides, and
//! each rule wins its own requests. Among same-shape rules, a rule that names methods is
//! answered before a rule for every method, and between two that name the same method the
//! earlier one wins. So:
//!
//! - a rule whose every named method is already named by earlier same-shape rules can never
//!   match (warning `AG-CFG-1201`);
//! - a rule that shares only some methods with earlier same-shape rules loses those methods
//!   to them (warning `AG-CFG-1202`).
//!
//! Same shape *and* same method set is a conflict, rejected when the router is built.
//!
//! Across shapes, the method tier comes before specificity: with `"GET /": "./dist/"` and
//! `"/api/": "http://api/"`, a `GET /api/x` goes to the static files. That is the rule, but
//! rarely the intent, so it gets `AG-CFG-1202` too, on the more specific rule that loses
//! (checked for tables of up to [`CROSS_TIER_LIMIT`] rules: the check is quadratic).
//!
//! Hosts: same-shape rules compete per host (a rule for two hosts is shadowed only when it
//! is in both). And the host tier comes before everything: with `"GET /api/": ...` and
//! `"shop.example.com/": ...`, `shop.example.com/api/x` goes to the shop, which gets
//! `AG-CFG-1202` on the rule for every host that loses it.

use std::collections::HashMap;

use anygate_router::dsl::{PathPattern, Segment};
use anygate_router::explain::{Outcome, explain};
use anygate_router::{HostKey, HostKind, HostPattern, Router};

/// Above this many rules the cross-tier check is skipped.
pub const CROSS_TIER_LIMIT: usize = 2_000;

use crate::codes;
use crate::model::Route;
use crate::source::Diagnostic;

/// The warnings for a built router whose rule values are indexes into `routes`.
pub fn warnings(router: &Router<usize>, routes: &[Route]) -> Vec<Diagnostic> {
    // Per host (`""`: every host) and path shape, the earlier rules naming methods.
    let mut by_shape: HashMap<(String, String), Vec<(u64, usize)>> = HashMap::new();
    let mut out = Vec::new();
    for rule in router.rules() {
        if rule.is_any_method() {
            continue;
        }
        let route = &routes[rule.value];
        let mask = rule.named_mask();
        let shape = rule.head.path.shape_key();
        let hosts: Vec<String> = if rule.head.hosts.is_empty() {
            vec![String::new()]
        } else {
            rule.head.hosts.iter().map(ToString::to_string).collect()
        };
        // Shadowed only when every host's earlier rules take every method.
        let mut free = 0u64;
        let mut taken_any = 0u64;
        let mut overlapping: Vec<usize> = Vec::new();
        for host in &hosts {
            let earlier = by_shape.entry((host.clone(), shape.clone())).or_default();
            let taken: u64 = earlier.iter().fold(0, |acc, (m, _)| acc | m);
            free |= mask & !taken;
            taken_any |= mask & taken;
            for &(m, i) in earlier.iter() {
                if m & mask != 0 && !overlapping.contains(&i) {
                    overlapping.push(i);
                }
            }
            earlier.push((mask, rule.value));
        }
        let names = router.methods().names(taken_any).join(" ");
        let same = if rule.head.hosts.is_empty() {
            "the same path"
        } else {
            "the same host and path"
        };
        if free == 0 {
            let mut d = Diagnostic::warning(
                codes::SHADOWED,
                route.key,
                format!(
                    "`{}` can never match: earlier rules with {same} take {names}",
                    route.label()
                ),
            );
            for i in overlapping {
                d = d.note(routes[i].key, format!("`{}`", routes[i].label()));
            }
            out.push(d.help("remove it, or move it above the rules that shadow it"));
        } else if taken_any != 0 {
            let mut d = Diagnostic::warning(
                codes::OVERLAP,
                route.key,
                format!(
                    "`{}` shares {names} with an earlier rule for {same}; \
                     the earlier rule answers {names}",
                    route.label()
                ),
            );
            for i in overlapping {
                d = d.note(routes[i].key, format!("`{}`", routes[i].label()));
            }
            out.push(d);
        }
    }
    cross_tier(router, routes, &mut out);
    cross_host(router, routes, &mut out);
    out.sort_by_key(|d| d.span.map(|s| s.sort_key()));
    out
}

/// A request host a pattern matches: `x.` before a wildcard's suffix.
fn sample_host(p: &HostPattern) -> (String, Option<u16>) {
    let name = match p.kind {
        HostKind::Exact => p.name.clone(),
        HostKind::OneLabel | HostKind::AnyDepth => format!("x.{}", p.name),
    };
    (name, p.port)
}

/// Rules for every host that lose a host's requests to a less specific rule naming that
/// host: `"GET /api/": ...` and `"shop.example.com/": ...` send `shop.example.com/api/x`
/// to the shop. That is the rule (the host tier first), rarely the intent.
fn cross_host(router: &Router<usize>, routes: &[Route], out: &mut Vec<Diagnostic>) {
    let rules = router.rules();
    let mut hosts: Vec<&HostPattern> = Vec::new();
    for r in rules {
        for h in &r.head.hosts {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    if hosts.is_empty() || rules.len().saturating_mul(hosts.len()) > CROSS_TIER_LIMIT * 4 {
        return;
    }
    for rule in rules.iter().filter(|r| r.head.hosts.is_empty()) {
        let path = sample(&rule.head.path);
        let method = match &rule.head.methods {
            anygate_router::dsl::Methods::Named(m) => m[0].clone(),
            anygate_router::dsl::Methods::Any => "GET".to_owned(),
        };
        // (winner's declaration index, the hosts it takes)
        let mut lost: Vec<(usize, Vec<&HostPattern>)> = Vec::new();
        for h in &hosts {
            let (name, port) = sample_host(h);
            let key = HostKey {
                name: name.as_bytes(),
                port: port.or(Some(80)),
            };
            let e = explain(router, method.as_bytes(), Some(key), path.as_bytes());
            let (Outcome::Found(w), Some(winner)) = (e.outcome, e.candidates.first()) else {
                continue;
            };
            let Some(me) = e.candidates.iter().find(|c| c.rule.index == rule.index) else {
                continue;
            };
            if w == rule.index || winner.host.is_none() || me.ranks >= winner.ranks {
                continue;
            }
            match lost.iter_mut().find(|(i, _)| *i == w) {
                Some((_, hs)) => hs.push(h),
                None => lost.push((w, vec![h])),
            }
        }
        for (w, hs) in lost {
            let (loser, winner) = (&routes[rule.value], &routes[rules[w].value]);
            let names: Vec<String> = hs.iter().map(|h| format!("`{h}`")).collect();
            out.push(
                Diagnostic::warning(
                    codes::OVERLAP,
                    loser.key,
                    format!(
                        "requests for {} under `{}` go to `{}`: a rule that names the host \
                         beats a rule for every host, even a more specific one",
                        names.join(", "),
                        rule.head.path.display(),
                        winner.label()
                    ),
                )
                .note(winner.key, format!("`{}`", winner.label()))
                .help(format!(
                    "if those hosts should have it too, give them a rule for `{}`",
                    rule.head.path.display()
                )),
            );
        }
    }
}

/// Rules for every method that lose some methods to a less specific rule naming them.
fn cross_tier(router: &Router<usize>, routes: &[Route], out: &mut Vec<Diagnostic>) {
    let rules = router.rules();
    if rules.len() > CROSS_TIER_LIMIT {
        return;
    }
    // Every method some rule names, with the HEAD that GET rules answer.
    let named = rules.iter().fold(0u64, |m, r| m | r.method_mask());
    let methods = router.methods().names(named);
    for any in rules.iter().filter(|r| r.is_any_method()) {
        let path = sample(&any.head.path);
        // (winner's declaration index, the methods it takes)
        let mut lost: Vec<(usize, Vec<&str>)> = Vec::new();
        for m in &methods {
            let host = any.head.hosts.first().map(sample_host);
            let key = host.as_ref().map(|(n, p)| HostKey {
                name: n.as_bytes(),
                port: p.or(Some(80)),
            });
            let e = explain(router, m.as_bytes(), key, path.as_bytes());
            let (Outcome::Found(w), Some(winner)) = (e.outcome, e.candidates.first()) else {
                continue;
            };
            let Some(me) = e.candidates.iter().find(|c| c.rule.index == any.index) else {
                continue;
            };
            if w != any.index && winner.tier != Some(2) && me.ranks < winner.ranks {
                match lost.iter_mut().find(|(i, _)| *i == w) {
                    Some((_, ms)) => ms.push(m),
                    None => lost.push((w, vec![m])),
                }
            }
        }
        for (w, ms) in lost {
            let (loser, winner) = (&routes[any.value], &routes[rules[w].value]);
            out.push(
                Diagnostic::warning(
                    codes::OVERLAP,
                    loser.key,
                    format!(
                        "{} requests under `{}` go to `{}`: a rule that names the method \
                         beats a rule for every method, even a more specific one",
                        ms.join(" "),
                        any.head.path.display(),
                        winner.label()
                    ),
                )
                .note(winner.key, format!("`{}`", winner.label()))
                .help(format!(
                    "name the methods on this rule too (`{} {}`), or narrow `{}`",
                    ms.join(" "),
                    any.head.path.display(),
                    winner.label()
                )),
            );
        }
    }
}

/// A request path that a pattern matches: params as `x`, nothing after a prefix or splat.
fn sample(p: &PathPattern) -> String {
    let mut s = String::new();
    for seg in &p.segments {
        s.push('/');
        match seg {
            Segment::Literal(l) => s.push_str(l),
            Segment::Param(_) => s.push('x'),
        }
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}
