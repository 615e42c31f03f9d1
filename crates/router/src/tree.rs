//! The compiled router: a trie by path segments, rules at the leaves, method masks.
//!
//! # Priority (SPEC §5), as one ordering
//!
//! For a request, among the rules whose path matches:
//! 1. *tier*: a rule naming the method, then a `GET` rule answering `HEAD`, then a rule for
//!    every method;
//! 2. *specificity*, segment by segment from the left: literal, then `:param`, then
//!    `*`/prefix; at the end of the path an exact rule beats a prefix;
//! 3. declaration order.
//!
//! A depth-first walk that tries, at each node, the literal child, then the param child, then
//! the node's prefix/splat rules visits matching rules exactly in specificity order. The walk
//! keeps the first rule of each tier and stops at the first rule of tier 1. Every node
//! carries the union of the method bits below it, so subtrees that cannot hold a better rule
//! are skipped: a lookup costs a few steps per path segment whatever the number of rules.
//!
//! Params are captured as byte slices of the request path in inline storage; a lookup does
//! not allocate.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;

use crate::dsl::{Head, MAX_PARAMS, Methods, Segment, Tail};
use crate::host::{HostPattern, Hosts};
use crate::method::{GET_BIT, HEAD_BIT, MethodTable};

/// A rule as compiled into a router.
#[derive(Debug)]
pub struct Rule<T> {
    /// Declaration index (0-based).
    pub index: usize,
    /// The parsed HEAD.
    pub head: Head,
    /// What the router's user attached (the action, its source position, ...).
    pub value: T,
    explicit: u64,
    implicit: u64,
    any: bool,
    param_names: Vec<String>,
}

impl<T> Rule<T> {
    /// Whether the rule answers every method.
    pub fn is_any_method(&self) -> bool {
        self.any
    }

    /// The methods the rule names, plus `HEAD` when it names `GET`.
    pub fn method_mask(&self) -> u64 {
        self.explicit | self.implicit
    }

    /// The methods the rule names, without the implicit `HEAD` of a `GET` rule.
    pub fn named_mask(&self) -> u64 {
        self.explicit
    }

    /// Param names in path order.
    pub fn param_names(&self) -> &[String] {
        &self.param_names
    }

    /// The rule's method tier for a request method bit (see the module docs): 0 when it
    /// names the method, 1 when it is a `GET` rule answering `HEAD`, 2 when it answers every
    /// method, `None` when it does not accept the method.
    pub fn tier(&self, bit: u64) -> Option<u8> {
        if self.explicit & bit != 0 {
            Some(0)
        } else if self.implicit & bit != 0 {
            Some(1)
        } else if self.any {
            Some(2)
        } else {
            None
        }
    }
}

/// Why a router could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// Two rules have the same method set and the same path shape.
    Conflict {
        /// The later rule.
        rule: usize,
        /// The earlier one.
        with: usize,
    },
    /// More than 64 distinct methods across the rules.
    TooManyMethods {
        /// The rule that named the 65th.
        rule: usize,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Conflict { rule, with } => {
                write!(
                    f,
                    "rule {rule} has the same methods and path shape as rule {with}"
                )
            }
            BuildError::TooManyMethods { rule } => {
                write!(f, "rule {rule} names a 65th distinct method (at most 64)")
            }
        }
    }
}

impl std::error::Error for BuildError {}

/// Literal children: a short list is scanned, a long one is hashed (flat lookup cost).
#[derive(Debug)]
enum Children {
    Small(Vec<(Box<[u8]>, Node)>),
    Map(HashMap<Box<[u8]>, Node, BuildHasherDefault<FxHasher>>),
}

/// Children count above which a node switches to a hash map.
const SMALL: usize = 8;

impl Default for Children {
    fn default() -> Self {
        Children::Small(Vec::new())
    }
}

impl Children {
    fn get(&self, seg: &[u8]) -> Option<&Node> {
        match self {
            Children::Small(v) => v.iter().find(|(k, _)| **k == *seg).map(|(_, n)| n),
            Children::Map(m) => m.get(seg),
        }
    }

    fn get_or_insert(&mut self, seg: &[u8]) -> &mut Node {
        if let Children::Small(v) = self
            && v.len() >= SMALL
            && !v.iter().any(|(k, _)| **k == *seg)
        {
            *self = Children::Map(std::mem::take(v).into_iter().collect());
        }
        match self {
            Children::Small(v) => {
                let i = match v.iter().position(|(k, _)| **k == *seg) {
                    Some(i) => i,
                    None => {
                        v.push((seg.into(), Node::default()));
                        v.len() - 1
                    }
                };
                &mut v[i].1
            }
            Children::Map(m) => m.entry(seg.into()).or_default(),
        }
    }

    fn iter_mut(&mut self) -> Box<dyn Iterator<Item = &mut Node> + '_> {
        match self {
            Children::Small(v) => Box::new(v.iter_mut().map(|(_, n)| n)),
            Children::Map(m) => Box::new(m.values_mut()),
        }
    }

    /// Children sorted by key (for stable rendering).
    fn sorted(&self) -> Vec<(&[u8], &Node)> {
        let mut out: Vec<(&[u8], &Node)> = match self {
            Children::Small(v) => v.iter().map(|(k, n)| (&**k, n)).collect(),
            Children::Map(m) => m.iter().map(|(k, n)| (&**k, n)).collect(),
        };
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }
}

/// FxHash (as in rustc): a fast multiplicative hash. Keys are config literals, so there is
/// no untrusted input to collide on; a request segment only probes a fixed table.
#[derive(Default)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut v = [0u8; 8];
            v[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(v)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Default)]
struct Node {
    literals: Children,
    param: Option<Box<Node>>,
    exact: Vec<u32>,
    tail: Vec<u32>,
    /// Union of `explicit | implicit` of every rule in this subtree.
    sub_named: u64,
    /// Whether an any-method rule is in this subtree.
    sub_any: bool,
}

impl Node {
    fn child_literal(&self, seg: &[u8]) -> Option<&Node> {
        self.literals.get(seg)
    }

    fn summarize<T>(&mut self, rules: &[Rule<T>]) -> (u64, bool) {
        let mut named = 0;
        let mut any = false;
        for &r in self.exact.iter().chain(&self.tail) {
            let rule = &rules[r as usize];
            named |= rule.explicit | rule.implicit;
            any |= rule.any;
        }
        for child in self.literals.iter_mut() {
            let (n, a) = child.summarize(rules);
            named |= n;
            any |= a;
        }
        if let Some(p) = &mut self.param {
            let (n, a) = p.summarize(rules);
            named |= n;
            any |= a;
        }
        self.sub_named = named;
        self.sub_any = any;
        (named, any)
    }
}

/// A byte range of the request path.
type Range = (u32, u32);

/// The params of a match: `:name` values and the splat, borrowed from the request path.
#[derive(Clone, Copy)]
pub struct Params<'r, 'p> {
    names: &'r [String],
    path: &'p [u8],
    values: [Range; MAX_PARAMS],
    len: usize,
    splat: Option<Range>,
}

impl<'r, 'p> Params<'r, 'p> {
    fn slice(&self, (start, end): Range) -> &'p [u8] {
        self.path
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// The value of `:name`.
    pub fn get(&self, name: &str) -> Option<&'p [u8]> {
        self.names[..self.len]
            .iter()
            .position(|n| n == name)
            .map(|i| self.slice(self.values[i]))
    }

    /// `(name, value)` pairs in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&'r str, &'p [u8])> + '_ {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.values[..self.len].iter().map(|r| self.slice(*r)))
    }

    /// The rest of the path for a prefix or splat rule (`""` when nothing follows).
    pub fn splat(&self) -> Option<&'p [u8]> {
        self.splat.map(|r| self.slice(r))
    }

    /// Number of `:name` params.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no `:name` params.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for Params<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in self.iter() {
            m.entry(&k, &String::from_utf8_lossy(v));
        }
        if let Some(s) = self.splat() {
            m.entry(&"*", &String::from_utf8_lossy(s));
        }
        m.finish()
    }
}

/// A successful lookup.
#[derive(Debug)]
pub struct RouteMatch<'r, 'p, T> {
    /// The winning rule.
    pub rule: &'r Rule<T>,
    /// Its params.
    pub params: Params<'r, 'p>,
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup<'r, 'p, T> {
    /// A rule answers.
    Found(RouteMatch<'r, 'p, T>),
    /// Some rule's path matches, none for this method: 405 with these methods in `Allow`.
    MethodNotAllowed(u64),
    /// No rule's path matches: 404.
    NotFound,
}

/// A compiled, immutable route table.
#[derive(Debug)]
pub struct Router<T> {
    rules: Vec<Rule<T>>,
    /// One trie per host pattern; `tries[0]` holds the rules for every host.
    tries: Vec<Node>,
    /// The host pattern of each trie (`None` for `tries[0]`).
    tier_hosts: Vec<Option<HostPattern>>,
    hosts: Hosts,
    methods: MethodTable,
}

/// A request's host for [`Router::lookup_host`]: the name in lower case without a port or
/// a trailing dot (see [`crate::host::RequestHost`]) and the port the request is for (the
/// authority's, else the scheme's default).
#[derive(Clone, Copy, Debug)]
pub struct HostKey<'a> {
    /// The name.
    pub name: &'a [u8],
    /// The port.
    pub port: Option<u16>,
}

impl<T> Router<T> {
    /// Compiles rules, in declaration order. Every conflict is reported.
    pub fn build(rules: impl IntoIterator<Item = (Head, T)>) -> Result<Self, Vec<BuildError>> {
        let mut methods = MethodTable::default();
        let mut compiled = Vec::new();
        let mut errors = Vec::new();
        let mut seen: HashMap<(String, String, Vec<String>), usize> = HashMap::new();
        for (index, (head, value)) in rules.into_iter().enumerate() {
            let (mut explicit, any, key_methods) = match &head.methods {
                Methods::Any => (0, true, vec!["*".to_owned()]),
                Methods::Named(names) => {
                    let mut mask = 0;
                    for n in names {
                        match methods.intern(n) {
                            Some(b) => mask |= b,
                            None => errors.push(BuildError::TooManyMethods { rule: index }),
                        }
                    }
                    let mut sorted = names.clone();
                    sorted.sort();
                    (mask, false, sorted)
                }
            };
            if any {
                explicit = 0;
            }
            let implicit = if explicit & GET_BIT != 0 && explicit & HEAD_BIT == 0 {
                HEAD_BIT
            } else {
                0
            };
            let hosts: Vec<String> = if head.hosts.is_empty() {
                vec![String::new()]
            } else {
                head.hosts.iter().map(ToString::to_string).collect()
            };
            let shape = head.path.shape_key();
            for host in hosts {
                let key = (host, shape.clone(), key_methods.clone());
                match seen.entry(key) {
                    std::collections::hash_map::Entry::Occupied(e) => {
                        if *e.get() != index {
                            errors.push(BuildError::Conflict {
                                rule: index,
                                with: *e.get(),
                            });
                        }
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(index);
                    }
                }
            }
            let param_names = head.path.param_names().map(str::to_owned).collect();
            compiled.push(Rule {
                index,
                head,
                value,
                explicit,
                implicit,
                any,
                param_names,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut tries = vec![Node::default()];
        let mut tier_hosts = vec![None];
        let mut hosts = Hosts::default();
        for rule in &compiled {
            let mut targets: Vec<usize> = Vec::with_capacity(rule.head.hosts.len().max(1));
            if rule.head.hosts.is_empty() {
                targets.push(0);
            }
            for h in &rule.head.hosts {
                let t = hosts.tier(h, &mut || {
                    tries.push(Node::default());
                    tier_hosts.push(Some(h.clone()));
                    u32::try_from(tries.len() - 1).unwrap_or(u32::MAX)
                });
                let t = t as usize;
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
            let idx = u32::try_from(rule.index).unwrap_or(u32::MAX);
            for t in targets {
                let mut node = &mut tries[t];
                for seg in &rule.head.path.segments {
                    node = match seg {
                        Segment::Literal(l) => node.literals.get_or_insert(l.as_bytes()),
                        Segment::Param(_) => node.param.get_or_insert_with(Box::default),
                    };
                }
                match rule.head.path.tail {
                    Tail::Exact => node.exact.push(idx),
                    Tail::Prefix | Tail::Splat => node.tail.push(idx),
                }
            }
        }
        for trie in &mut tries {
            trie.summarize(&compiled);
        }
        Ok(Self {
            rules: compiled,
            tries,
            tier_hosts,
            hosts,
            methods,
        })
    }

    /// Whether some rule names a host.
    pub fn has_hosts(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// The rules in declaration order.
    pub fn rules(&self) -> &[Rule<T>] {
        &self.rules
    }

    /// The methods this router knows.
    pub fn methods(&self) -> &MethodTable {
        &self.methods
    }

    /// The `Allow` header value for a 405.
    pub fn allow_header(&self, mask: u64) -> String {
        self.methods.names(mask).join(", ")
    }

    /// Finds the rule for `method` and a normalised `path` (see [`crate::path::normalize`])
    /// among the rules for every host. This is the whole lookup of a table that names no
    /// host: one walk of the every-host trie, with nothing spent on host tiers.
    #[inline(always)]
    pub fn lookup<'r, 'p>(&'r self, method: &[u8], path: &'p [u8]) -> Lookup<'r, 'p, T> {
        let Some(mut s) = self.search(method, path) else {
            return Lookup::NotFound;
        };
        let every = &self.tries[0];
        s.visit(every, Some(1));
        if let Some(found) = s.found() {
            return found;
        }
        s.collect_allow = true;
        s.visit(every, Some(1));
        s.refused()
    }

    /// Finds the rule for `method`, the request's `host` (`None`: it named none) and a
    /// normalised `path`: the host's tiers first (see [`crate::host`]), then the rules for
    /// every host; within a tier, method tier, specificity and declaration order.
    pub fn lookup_host<'r, 'p>(
        &'r self,
        method: &[u8],
        host: Option<HostKey<'_>>,
        path: &'p [u8],
    ) -> Lookup<'r, 'p, T> {
        let Some(h) = host.filter(|_| !self.hosts.is_empty()) else {
            return self.lookup(method, path);
        };
        let Some(mut s) = self.search(method, path) else {
            return Lookup::NotFound;
        };
        self.hosts.visit(h.name, h.port, |t| {
            s.visit(&self.tries[t as usize], Some(1));
            s.best.iter().any(Option::is_some)
        });
        if s.best.iter().all(Option::is_none) {
            s.visit(&self.tries[0], Some(1));
        }
        if let Some(found) = s.found() {
            return found;
        }
        s.collect_allow = true;
        self.hosts.visit(h.name, h.port, |t| {
            s.visit(&self.tries[t as usize], Some(1));
            false
        });
        s.visit(&self.tries[0], Some(1));
        s.refused()
    }

    /// A search for `method` and `path`; `None` when the path cannot match any rule.
    #[inline]
    fn search<'r, 'p>(&'r self, method: &[u8], path: &'p [u8]) -> Option<Search<'r, 'p, T>> {
        if path.first() != Some(&b'/') || u32::try_from(path.len()).is_err() {
            return None;
        }
        Some(Search {
            rules: &self.rules,
            path,
            bit: self.methods.bit(method),
            best: [None; 3],
            values: [(0, 0); MAX_PARAMS],
            len: 0,
            allow: 0,
            collect_allow: false,
        })
    }

    /// Every rule, in the order the trie tries them: host tiers first (exact hosts, then
    /// wildcards, in the order [`crate::host::rank`] gives, by name within a rank), the
    /// rules for every host last; in each trie, at each node the exact rules, then the
    /// literal children (sorted), then the `:param` child, then the prefix and splat rules;
    /// rules of one node in tier and declaration order. A rule with several hosts appears
    /// once per host. `anygate check` prints this.
    pub fn in_priority_order(&self) -> Vec<(Option<&HostPattern>, &Rule<T>)> {
        let mut order: Vec<usize> = (1..self.tries.len()).collect();
        order.sort_by(|&a, &b| {
            let key = |t: usize| {
                let h = self.tier_hosts[t].as_ref();
                (
                    crate::host::rank(h),
                    h.map(|h| h.name.clone()),
                    h.and_then(|h| h.port),
                )
            };
            key(a).cmp(&key(b))
        });
        order.push(0);
        let mut out = Vec::with_capacity(self.rules.len());
        for t in order {
            let mut rules = Vec::new();
            self.collect(&self.tries[t], &mut rules);
            let host = self.tier_hosts[t].as_ref();
            out.extend(rules.into_iter().map(|r| (host, r)));
        }
        out
    }

    fn collect<'r>(&'r self, node: &Node, out: &mut Vec<&'r Rule<T>>) {
        out.extend(node.exact.iter().map(|&r| &self.rules[r as usize]));
        for (_, child) in node.literals.sorted() {
            self.collect(child, out);
        }
        if let Some(child) = &node.param {
            self.collect(child, out);
        }
        out.extend(node.tail.iter().map(|&r| &self.rules[r as usize]));
    }
}

#[derive(Clone, Copy)]
struct Found {
    rule: u32,
    values: [Range; MAX_PARAMS],
    len: usize,
    splat: Option<Range>,
}

struct Search<'r, 'p, T> {
    rules: &'r [Rule<T>],
    path: &'p [u8],
    bit: u64,
    best: [Option<Found>; 3],
    values: [Range; MAX_PARAMS],
    len: usize,
    allow: u64,
    collect_allow: bool,
}

impl<'r, 'p, T> Search<'r, 'p, T> {
    /// The best rule found, if any.
    #[inline(always)]
    fn found(&self) -> Option<Lookup<'r, 'p, T>> {
        let found = self.best.iter().flatten().next()?;
        let rule = &self.rules[found.rule as usize];
        Some(Lookup::Found(RouteMatch {
            rule,
            params: Params {
                names: &rule.param_names,
                path: self.path,
                values: found.values,
                len: found.len,
                splat: found.splat,
            },
        }))
    }

    /// After a search that collected the methods allowed: a 405 or nothing.
    fn refused(&self) -> Lookup<'r, 'p, T> {
        if self.allow != 0 {
            Lookup::MethodNotAllowed(self.allow)
        } else {
            Lookup::NotFound
        }
    }
}

impl<'p, T> Search<'_, 'p, T> {
    /// Whether `node`'s subtree may hold a rule better than what was found.
    fn wants(&self, node: &Node) -> bool {
        if self.collect_allow {
            return node.sub_named != 0;
        }
        node.sub_named & self.bit != 0
            || (node.sub_any && self.best[1].is_none() && self.best[2].is_none())
    }

    /// Visits `node`; `rest` is the offset of the path after the node's segment (`None`:
    /// the path ended there). Returns true when a best-tier rule was found.
    fn visit(&mut self, node: &Node, rest: Option<usize>) -> bool {
        let Some(start) = rest else {
            let end = self.path.len() as u32;
            return self.leaves(&node.exact, None) || self.leaves(&node.tail, Some((end, end)));
        };
        let tail = &self.path[start..];
        let (seg_end, next) = match memchr::memchr(b'/', tail) {
            Some(i) => (start + i, Some(start + i + 1)),
            None => (self.path.len(), None),
        };
        let seg = &self.path[start..seg_end];
        if !seg.is_empty() {
            if let Some(child) = node.child_literal(seg)
                && self.wants(child)
                && self.visit(child, next)
            {
                return true;
            }
            if let Some(child) = node.param.as_deref()
                && self.len < MAX_PARAMS
                && self.wants(child)
            {
                self.values[self.len] = (start as u32, seg_end as u32);
                self.len += 1;
                let stop = self.visit(child, next);
                self.len -= 1;
                if stop {
                    return true;
                }
            }
        }
        self.leaves(&node.tail, Some((start as u32, self.path.len() as u32)))
    }

    fn leaves(&mut self, list: &[u32], splat: Option<Range>) -> bool {
        for &r in list {
            let rule = &self.rules[r as usize];
            if self.collect_allow {
                self.allow |= rule.explicit | rule.implicit;
                continue;
            }
            let Some(tier) = rule.tier(self.bit) else {
                continue;
            };
            let tier = usize::from(tier);
            if self.best[tier].is_none() {
                self.best[tier] = Some(Found {
                    rule: r,
                    values: self.values,
                    len: self.len,
                    splat,
                });
            }
            if tier == 0 {
                return true;
            }
        }
        false
    }
}
