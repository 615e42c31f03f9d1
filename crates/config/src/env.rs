//! `ANYGATE__SECTION__KEY=value` overrides, applied to the document tree before validation.
//!
//! - The name after `ANYGATE__` is a key path split on `__`; each part matches an existing
//!   key case-insensitively, or creates a lower-case key. A numeric part indexes a list
//!   (`ANYGATE__GROUPS__0__PREFIX`).
//! - The value is parsed as YAML, so `8`, `true`, `[a, b]` and `{"/": "OK"}` have their YAML
//!   types and `"…"` quotes a string. An empty value resets the key to its default.
//! - Each variable becomes its own source named `environment` (text `NAME=value`), so that an
//!   invalid value is reported, underlined, like a line of the file.
//! - `routes` (at the top or in a group) can be replaced only as a whole: a route's HEAD
//!   cannot be spelled in a variable name.

use crate::codes;
use crate::node::{Kind, Node};
use crate::source::{Diagnostic, Sources, Span};

/// Most `__`-separated parts in one variable name.
const MAX_PARTS: usize = 16;

/// The prefix of override variables.
pub const PREFIX: &str = "ANYGATE__";

/// Applies the overrides in `vars` (in name order) to `root`.
pub(crate) fn apply(
    root: &mut Node,
    sources: &mut Sources,
    vars: &[(String, String)],
    diags: &mut Vec<Diagnostic>,
) {
    let mut vars: Vec<&(String, String)> = vars
        .iter()
        .filter(|(name, _)| name.starts_with(PREFIX))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let src = sources.add("environment", format!("{name}={value}"));
        let value_at = name.len() + 1;
        let value = match crate::yaml::parse(src, value_at, value) {
            Ok(v) => v,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        let mut parts = Vec::new();
        let mut at = PREFIX.len();
        for part in name[PREFIX.len()..].split("__") {
            parts.push((part, Span::new(src, at, at + part.len())));
            at += part.len() + 2;
        }
        if let Err(d) = set(root, &parts, value) {
            diags.push(d);
        }
    }
}

fn set(root: &mut Node, parts: &[(&str, Span)], value: Node) -> Result<(), Diagnostic> {
    let err = |span: Span, msg: String| Err(Diagnostic::error(codes::ENV, span, msg));
    if let Some(&(_, span)) = parts.iter().find(|(p, _)| p.is_empty()) {
        return err(span, "empty key in the variable name (`____`)".into());
    }
    if parts.len() > MAX_PARTS {
        return err(
            parts[MAX_PARTS].1,
            format!("more than {MAX_PARTS} parts in the name"),
        );
    }
    // A route's HEAD cannot be spelled in a variable name: `routes` is replaced whole.
    if let Some(i) = parts
        .iter()
        .position(|(p, _)| p.eq_ignore_ascii_case("routes"))
        && let Some(&(_, span)) = parts.get(i + 1)
    {
        return err(
            span,
            "routes can only be replaced whole: ANYGATE__ROUTES='{\"/\": \"OK\"}'".into(),
        );
    }
    let mut cur = root;
    for (i, &(part, span)) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if matches!(cur.kind, Kind::Null) {
            cur.kind = Kind::Map(Vec::new());
        }
        let slot = match &mut cur.kind {
            Kind::Map(entries) => {
                let found = entries
                    .iter()
                    .position(|(k, _)| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(part)));
                let idx = found.unwrap_or_else(|| {
                    let key = Node::new(Kind::Str(part.to_ascii_lowercase()), span);
                    entries.push((key, Node::new(Kind::Null, span)));
                    entries.len() - 1
                });
                &mut entries[idx].1
            }
            Kind::Seq(items) => {
                let len = items.len();
                match part.parse::<usize>().ok().and_then(|n| items.get_mut(n)) {
                    Some(item) => item,
                    None => {
                        return err(
                            span,
                            format!("`{part}` is not an index of this list (it has {len} items)"),
                        );
                    }
                }
            }
            _ => {
                return err(
                    span,
                    format!("cannot set `{part}`: the value above it is not a map or a list"),
                );
            }
        };
        if last {
            *slot = value;
            return Ok(());
        }
        cur = slot;
    }
    Ok(())
}
