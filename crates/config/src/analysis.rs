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

use std::collections::HashMap;

use anygate_router::Router;
use anygate_router::dsl::{PathPattern, Segment};
use anygate_router::explain::{Outcome, explain};

/// Above this many rules the cross-tier check is skipped.
pub const CROSS_TIER_LIMIT: usize = 2_000;

use crate::codes;
use crate::model::Route;
use crate::source::Diagnostic;

/// The warnings for a built router whose rule values are indexes into `routes`.
pub fn warnings(router: &Router<usize>, routes: &[Route]) -> Vec<Diagnostic> {
    let mut by_shape: HashMap<String, Vec<(u64, usize)>> = HashMap::new();
    let mut out = Vec::new();
    for rule in router.rules() {
        let route = &routes[rule.value];
        let earlier = by_shape.entry(rule.head.path.shape_key()).or_default();
        if !rule.is_any_method() {
            let mask = rule.named_mask();
            let taken: u64 = earlier.iter().fold(0, |acc, (m, _)| acc | m);
            let overlapping: Vec<usize> = earlier
                .iter()
                .filter(|(m, _)| m & mask != 0)
                .map(|&(_, i)| i)
                .collect();
            let names = router.methods().names(mask & taken).join(" ");
            if mask & !taken == 0 {
                let mut d = Diagnostic::warning(
                    codes::SHADOWED,
                    route.key,
                    format!(
                        "`{}` can never match: earlier rules with the same path take {names}",
                        route.label()
                    ),
                );
                for i in overlapping {
                    d = d.note(routes[i].key, format!("`{}`", routes[i].label()));
                }
                out.push(d.help("remove it, or move it above the rules that shadow it"));
            } else if mask & taken != 0 {
                let mut d = Diagnostic::warning(
                    codes::OVERLAP,
                    route.key,
                    format!(
                        "`{}` shares {names} with an earlier rule for the same path; \
                         the earlier rule answers {names}",
                        route.label()
                    ),
                );
                for i in overlapping {
                    d = d.note(routes[i].key, format!("`{}`", routes[i].label()));
                }
                out.push(d);
            }
            earlier.push((mask, rule.value));
        }
    }
    cross_tier(router, routes, &mut out);
    out.sort_by_key(|d| d.span.map(|s| s.sort_key()));
    out
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
            let e = explain(router, m.as_bytes(), path.as_bytes());
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
