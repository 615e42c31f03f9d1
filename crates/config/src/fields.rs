//! Reading the keys of one map: duplicates and unknown keys are reported here.

use std::collections::HashMap;

use anygate_router::status::edit_distance;

use crate::codes;
use crate::node::{Kind, Node};
use crate::source::{Diagnostic, Span};

/// The keys of one map, read one by one; whatever is left is reported as unknown.
pub(crate) struct Fields<'n> {
    section: String,
    entries: &'n [(Node, Node)],
    used: Vec<bool>,
    duplicate: Vec<bool>,
}

impl<'n> Fields<'n> {
    /// `node` must be a map (null counts as empty). Duplicate keys are reported here.
    pub(crate) fn new(diags: &mut Vec<Diagnostic>, node: &'n Node, section: &str) -> Self {
        let entries: &[(Node, Node)] = match &node.kind {
            Kind::Map(entries) => entries,
            Kind::Null => &[],
            _ => {
                diags.push(Diagnostic::error(
                    codes::TYPE,
                    node.span,
                    format!("`{section}` must be a map, found {}", node.describe()),
                ));
                &[]
            }
        };
        let mut first: HashMap<&str, Span> = HashMap::new();
        // A duplicate is reported here and then ignored (counted as used).
        let mut used = vec![false; entries.len()];
        for (i, (k, _)) in entries.iter().enumerate() {
            if let Some(s) = k.as_str() {
                if let Some(&earlier) = first.get(s) {
                    used[i] = true;
                    diags.push(
                        Diagnostic::error(
                            codes::DUPLICATE_KEY,
                            k.span,
                            format!("duplicate key `{s}` in {section}"),
                        )
                        .note(earlier, "first defined here"),
                    );
                } else {
                    first.insert(s, k.span);
                }
            }
        }
        Self {
            section: section.to_owned(),
            entries,
            duplicate: used.clone(),
            used,
        }
    }

    /// Every entry except repeated keys, all marked used (for maps whose keys are data:
    /// routes, pools).
    pub(crate) fn unique_entries(&mut self) -> impl Iterator<Item = &'n (Node, Node)> + use<'n> {
        self.used.fill(true);
        let entries = self.entries;
        let duplicate = self.duplicate.clone();
        entries
            .iter()
            .zip(duplicate)
            .filter_map(|(e, dup)| (!dup).then_some(e))
    }

    /// The key node and value of `key`, marking it used.
    pub(crate) fn take_entry(&mut self, key: &str) -> Option<(&'n Node, &'n Node)> {
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.as_str() == Some(key))?;
        self.used[i] = true;
        let (k, v) = &self.entries[i];
        Some((k, v))
    }

    /// Whether `key` is written (with any value), without marking it read.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.as_str() == Some(key))
    }

    /// The value of `key`; `None` when absent or null.
    pub(crate) fn take(&mut self, key: &str) -> Option<&'n Node> {
        self.take_entry(key)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v.kind, Kind::Null))
    }

    /// Reports every key not taken.
    pub(crate) fn finish(self, diags: &mut Vec<Diagnostic>, known: &[&str]) {
        for ((k, _), used) in self.entries.iter().zip(self.used) {
            if used {
                continue;
            }
            let name = k
                .as_str()
                .map_or_else(|| format!("{:?}", k.kind), str::to_owned);
            let mut d = Diagnostic::error(
                codes::UNKNOWN_KEY,
                k.span,
                format!("unknown key `{name}` in {}", self.section),
            );
            d = match known.iter().find(|c| edit_distance(c, &name) <= 2) {
                Some(c) => d.help(format!("did you mean `{c}`?")),
                None => d.help(format!("known keys: {}", known.join(", "))),
            };
            diags.push(d);
        }
    }
}
