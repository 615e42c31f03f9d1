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

use std::collections::HashMap;

use anygate_router::Router;
use anygate_router::dsl::{PathPattern, Segment, Tail};

use crate::codes;
use crate::model::Route;
use crate::source::Diagnostic;

/// The warnings for a built router whose rule values are indexes into `routes`.
pub fn warnings(router: &Router<usize>, routes: &[Route]) -> Vec<Diagnostic> {
    let mut by_shape: HashMap<String, Vec<(u64, usize)>> = HashMap::new();
    let mut out = Vec::new();
    for rule in router.rules() {
        let route = &routes[rule.value];
        let earlier = by_shape.entry(shape(&rule.head.path)).or_default();
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
    out
}

/// The path with param names erased: two rules with equal shapes match the same requests.
fn shape(p: &PathPattern) -> String {
    let mut s = String::new();
    for seg in &p.segments {
        s.push('/');
        match seg {
            Segment::Literal(l) => s.push_str(l),
            Segment::Param(_) => s.push(':'),
        }
    }
    s.push_str(match p.tail {
        Tail::Exact => "",
        Tail::Prefix => "/",
        Tail::Splat => "/*",
    });
    s
}
