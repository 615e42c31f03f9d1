//! Why a rule wins: every rule scored on its own, the slow and obvious way.
//!
//! Each rule whose host and path match gets a key `(host rank, tier, ranks, declaration
//! index)`: the host rank of [`crate::host::rank`] (exact host, then wildcards, then every
//! host), the tier of [`crate::tree`] (0 names the method, 1 is `GET` answering `HEAD`, 2 is
//! every method), and one rank per path position (0 literal, 1 `:param`, 2 prefix/splat;
//! after the last segment 0 for an exact end). The smallest key wins. `anygate explain` prints this; the
//! property tests check that the trie's answer is always this one.

use crate::dsl::{Segment, Tail};
use crate::host::{HostPattern, rank};
use crate::tree::{HostKey, Router, Rule};

/// A rule whose path matches the request.
#[derive(Debug)]
pub struct Candidate<'r, T> {
    /// The rule.
    pub rule: &'r Rule<T>,
    /// The rule's host pattern that matched the request (`None`: a rule for every host).
    pub host: Option<&'r HostPattern>,
    /// `Some(tier)` when the rule accepts the method, `None` when it does not.
    pub tier: Option<u8>,
    /// Specificity ranks, one per path position.
    pub ranks: Vec<u8>,
    /// `:name` params.
    pub params: Vec<(String, String)>,
    /// The rest of the path, for prefix and splat rules.
    pub splat: Option<String>,
}

/// What the request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The rule with this declaration index answers.
    Found(usize),
    /// 405 with these methods.
    MethodNotAllowed(u64),
    /// 404.
    NotFound,
}

/// Every matching rule, the winner first, then the others in priority order, then the rules
/// whose path matches but whose methods do not.
#[derive(Debug)]
pub struct Explanation<'r, T> {
    /// The candidates, ordered as described.
    pub candidates: Vec<Candidate<'r, T>>,
    /// The outcome.
    pub outcome: Outcome,
}

/// Scores every rule of `router` for `method`, the request's `host` and a normalised
/// `path`.
pub fn explain<'r, T>(
    router: &'r Router<T>,
    method: &[u8],
    host: Option<HostKey<'_>>,
    path: &[u8],
) -> Explanation<'r, T> {
    let bit = router.methods().bit(method);
    let mut candidates: Vec<Candidate<'r, T>> = Vec::new();
    for rule in router.rules() {
        let matched_host = if rule.head.hosts.is_empty() {
            None
        } else {
            let Some(h) = host else { continue };
            let best = rule
                .head
                .hosts
                .iter()
                .filter(|p| p.matches(h.name, h.port))
                .min_by_key(|p| rank(Some(p)));
            match best {
                Some(p) => Some(p),
                None => continue,
            }
        };
        let Some((ranks, values, splat)) = match_pattern(rule, path) else {
            continue;
        };
        let tier = rule.tier(bit);
        let params = rule
            .param_names()
            .iter()
            .zip(values)
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        candidates.push(Candidate {
            rule,
            host: matched_host,
            tier,
            ranks,
            params,
            splat: splat.map(|s| String::from_utf8_lossy(s).into_owned()),
        });
    }
    candidates.sort_by(|a, b| {
        let key = |c: &Candidate<'r, T>| {
            (
                c.tier.is_none(),
                rank(c.host),
                c.tier,
                c.ranks.clone(),
                c.rule.index,
            )
        };
        key(a).cmp(&key(b))
    });
    let outcome = match candidates.first() {
        Some(c) if c.tier.is_some() => Outcome::Found(c.rule.index),
        Some(_) => {
            Outcome::MethodNotAllowed(candidates.iter().fold(0, |m, c| m | c.rule.method_mask()))
        }
        None => Outcome::NotFound,
    };
    Explanation {
        candidates,
        outcome,
    }
}

type Matched<'p> = (Vec<u8>, Vec<&'p [u8]>, Option<&'p [u8]>);

/// Whether `rule`'s pattern matches `path`, with its ranks, param values and splat.
fn match_pattern<'p, T>(rule: &Rule<T>, path: &'p [u8]) -> Option<Matched<'p>> {
    let rest = path.strip_prefix(b"/")?;
    let segs: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
    let pattern = &rule.head.path;
    let k = pattern.segments.len();
    if segs.len() < k {
        return None;
    }
    let mut ranks = Vec::with_capacity(k + 1);
    let mut values = Vec::new();
    for (seg, pat) in segs.iter().zip(&pattern.segments) {
        match pat {
            Segment::Literal(l) if l.as_bytes() == *seg => ranks.push(0),
            Segment::Param(_) if !seg.is_empty() => {
                ranks.push(1);
                values.push(*seg);
            }
            _ => return None,
        }
    }
    match pattern.tail {
        Tail::Exact => {
            if segs.len() != k || (k == 0) {
                return None;
            }
            ranks.push(0);
            Some((ranks, values, None))
        }
        Tail::Prefix | Tail::Splat => {
            // The rest after the k matched segments: the bytes after the k-th '/'.
            let splat: &[u8] = if segs.len() == k {
                b""
            } else {
                let consumed: usize = segs[..k].iter().map(|s| s.len() + 1).sum();
                &rest[consumed..]
            };
            ranks.push(2);
            Some((ranks, values, Some(splat)))
        }
    }
}

/// Why `loser` did not win against `winner`, in words.
pub fn reason<T>(winner: &Candidate<'_, T>, loser: &Candidate<'_, T>, method: &str) -> String {
    let Some(lt) = loser.tier else {
        return format!("does not accept {method}");
    };
    let (wh, lh) = (rank(winner.host), rank(loser.host));
    if wh != lh {
        let host_name = |h: Option<&HostPattern>| match h {
            None => "is for every host".to_owned(),
            Some(p) if p.kind == crate::host::HostKind::Exact => format!("names the host `{p}`"),
            Some(p) => format!("matches the host by the wildcard `{p}`"),
        };
        return format!(
            "the winner {}; this rule {} (the host tier comes first)",
            host_name(winner.host),
            host_name(loser.host)
        );
    }
    let wt = winner.tier.unwrap_or(2);
    if wt != lt {
        let tier_name = |t: u8| match t {
            0 => format!("names {method}"),
            1 => "answers HEAD as a GET rule".to_owned(),
            _ => "is for every method".to_owned(),
        };
        return format!("the winner {}; this rule {}", tier_name(wt), tier_name(lt));
    }
    let kind = |r: u8, end: bool| match (r, end) {
        (0, true) => "an exact end",
        (0, false) => "a literal",
        (1, _) => "a :param",
        _ => "a prefix/splat",
    };
    for (i, (w, l)) in winner.ranks.iter().zip(&loser.ranks).enumerate() {
        if w != l {
            let w_end = i + 1 == winner.ranks.len();
            let l_end = i + 1 == loser.ranks.len();
            return format!(
                "less specific at segment {}: the winner has {}, this rule {}",
                i + 1,
                kind(*w, w_end),
                kind(*l, l_end)
            );
        }
    }
    "same specificity, declared later".to_owned()
}
