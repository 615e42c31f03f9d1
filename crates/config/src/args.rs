//! Reading a plugin's `args` (or any map the configuration leaves to another crate) with
//! the same checks and positions as the rest of the configuration: typed getters that
//! report a wrong type or value at the value's `file:line:column`, and unknown keys (with
//! a suggestion) at [`Args::finish`].

use std::time::Duration;

use crate::cidr::Cidr;
use crate::codes;
use crate::fields::Fields;
use crate::node::{Kind, Node};
use crate::source::{Diagnostic, Span};

/// The keys of one map, read one by one.
pub struct Args<'n> {
    /// `None` for a plugin written without `args`.
    fields: Option<Fields<'n>>,
    diags: Vec<Diagnostic>,
    section: String,
    span: Span,
}

impl std::fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("section", &self.section)
            .finish_non_exhaustive()
    }
}

impl<'n> Args<'n> {
    /// Reads `node` (a map; `None` reads as an empty one at `span`) as `section` (how
    /// messages name it: "`rate_limit` args").
    pub fn new(node: Option<&'n Node>, span: Span, section: &str) -> Self {
        let mut diags = Vec::new();
        let fields = node.map(|n| Fields::new(&mut diags, n, section));
        Self {
            fields,
            diags,
            section: section.to_owned(),
            span: node.map_or(span, |n| n.span),
        }
    }

    /// Where the map is (or the entry, when it has no `args`).
    pub fn span(&self) -> Span {
        self.span
    }

    /// Records an error at `span`.
    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(codes::PLUGIN_ARGS, span, message));
    }

    /// Records an error with a hint.
    pub fn error_help(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(codes::PLUGIN_ARGS, span, message).help(help));
    }

    /// Records the problems of a nested map read with its own `Args`.
    pub fn absorb(&mut self, nested: Args<'_>, known: &[&str]) {
        let errors = nested.finish(known).err().unwrap_or_default();
        self.diags.extend(errors);
    }

    /// Whether an error was recorded so far.
    pub fn failed(&self) -> bool {
        !self.diags.is_empty()
    }

    /// Whether `key` is written, without reading it.
    pub fn has(&self, key: &str) -> bool {
        self.fields.as_ref().is_some_and(|f| f.has(key))
    }

    /// The value of `key` (`None` when absent or null), marked as read.
    pub fn take(&mut self, key: &str) -> Option<&'n Node> {
        self.fields.as_mut()?.take(key)
    }

    fn type_error(&mut self, node: &Node, key: &str, expected: &str) {
        self.diags.push(Diagnostic::error(
            codes::TYPE,
            node.span,
            format!(
                "`{key}` in {} must be {expected}, found {}",
                self.section,
                node.describe()
            ),
        ));
    }

    /// `key` as a string.
    pub fn string(&mut self, key: &str) -> Option<(&'n str, &'n Node)> {
        let node = self.take(key)?;
        match node.as_str() {
            Some(s) => Some((s, node)),
            None => {
                self.type_error(node, key, "a string");
                None
            }
        }
    }

    /// `key` as a string or a list of strings (empty when absent).
    pub fn strings(&mut self, key: &str) -> Vec<(&'n str, &'n Node)> {
        let Some(node) = self.take(key) else {
            return Vec::new();
        };
        match &node.kind {
            Kind::Str(s) => vec![(s.as_str(), node)],
            Kind::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for n in items {
                    match n.as_str() {
                        Some(s) => out.push((s, n)),
                        None => self.type_error(n, key, "a list of strings"),
                    }
                }
                out
            }
            _ => {
                self.type_error(node, key, "a string or a list of strings");
                Vec::new()
            }
        }
    }

    /// `key` as `true` or `false`.
    pub fn bool(&mut self, key: &str) -> Option<bool> {
        let node = self.take(key)?;
        match node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.type_error(node, key, "true or false");
                None
            }
        }
    }

    /// `key` as a number within `min..=max` (an integer or a decimal).
    pub fn number(&mut self, key: &str, min: f64, max: f64) -> Option<(f64, &'n Node)> {
        let node = self.take(key)?;
        let v = match node.kind {
            #[expect(clippy::cast_precision_loss, reason = "configuration-sized numbers")]
            Kind::Int(i) => i as f64,
            Kind::Float(f) => f,
            _ => {
                self.type_error(node, key, "a number");
                return None;
            }
        };
        if !(min..=max).contains(&v) {
            self.error(
                node.span,
                format!("`{key}` must be from {min} to {max}, found {v}"),
            );
            return None;
        }
        Some((v, node))
    }

    /// `key` as a whole number within `min..=max`.
    pub fn integer(&mut self, key: &str, min: u64, max: u64) -> Option<u64> {
        let node = self.take(key)?;
        let Kind::Int(i) = node.kind else {
            self.type_error(node, key, "a whole number");
            return None;
        };
        match u64::try_from(i) {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.error(
                    node.span,
                    format!("`{key}` must be from {min} to {max}, found {i}"),
                );
                None
            }
        }
    }

    /// `key` as a duration (`250ms`, `1m30s`).
    pub fn duration(&mut self, key: &str) -> Option<Duration> {
        let (text, node) = self.string(key)?;
        match crate::duration::parse(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(node.span, e);
                None
            }
        }
    }

    /// `key` as a list of CIDR blocks or addresses (empty when absent).
    pub fn cidrs(&mut self, key: &str) -> Vec<Cidr> {
        let items = self.strings(key);
        let mut out = Vec::with_capacity(items.len());
        for (text, node) in items {
            match Cidr::parse(text) {
                Ok(c) => out.push(c),
                Err(e) => self.error(node.span, e),
            }
        }
        out
    }

    /// `key` as a map, read with its own `Args` (finish it with [`Args::absorb`]).
    pub fn map(&mut self, key: &str) -> Option<Args<'n>> {
        let node = self.take(key)?;
        if !matches!(node.kind, Kind::Map(_)) {
            self.type_error(node, key, "a map");
            return None;
        }
        Some(Args::new(
            Some(node),
            node.span,
            &format!("`{key}` of {}", self.section),
        ))
    }

    /// Every entry of the map `key` whose value is a string, in order (empty when absent):
    /// for maps whose keys are data (header names).
    pub fn string_map(&mut self, key: &str) -> Vec<(&'n str, &'n Node, &'n str, &'n Node)> {
        let Some(node) = self.take(key) else {
            return Vec::new();
        };
        let Kind::Map(entries) = &node.kind else {
            self.type_error(node, key, "a map");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Some(name) = k.as_str() else {
                self.type_error(k, key, "a map with string keys");
                continue;
            };
            let value = match &v.kind {
                Kind::Str(s) => s.as_str(),
                _ => {
                    self.type_error(v, name, "a string");
                    continue;
                }
            };
            out.push((name, k, value, v));
        }
        out
    }

    /// Reports every key not read (`known` feeds the suggestion), and returns the problems
    /// found, if any.
    pub fn finish(mut self, known: &[&str]) -> Result<(), Vec<Diagnostic>> {
        if let Some(fields) = self.fields.take() {
            fields.finish(&mut self.diags, known);
        }
        if self.diags.is_empty() {
            Ok(())
        } else {
            Err(self.diags)
        }
    }
}
