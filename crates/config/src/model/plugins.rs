//! `plugins`: the global filter list and each group's, as positioned specs. What a kind
//! means, and whether its `args` are valid, is decided by the filter registry when the
//! chains are compiled (`anygate-plugins`); here each entry is checked for its shape
//! (`kind`, a string; `args`, a map, optional) and kept with its position.

use std::sync::Arc;

use crate::fields::Fields;
use crate::model::Decoder;
use crate::node::{Kind, Node};
use crate::source::Span;

/// One entry of a `plugins` list.
#[derive(Clone, Debug)]
pub struct PluginSpec {
    /// `kind`, as written.
    pub kind: String,
    /// Where `kind`'s value is.
    pub kind_span: Span,
    /// `args` (a map), or `None`.
    pub args: Option<Node>,
    /// The whole entry.
    pub span: Span,
    /// The prefix of the group that declared it (`None` for the global list).
    pub group: Option<String>,
    /// The directory relative file names in `args` are resolved from (the configuration
    /// file's).
    pub base_dir: std::path::PathBuf,
}

impl Decoder<'_> {
    /// Decodes a `plugins` list into specs appended to `self.plugins`, and returns the
    /// chain of a scope: `parent`'s entries, then this list's, in order.
    pub(super) fn plugins(
        &mut self,
        node: Option<&Node>,
        parent: &Arc<[usize]>,
        group: Option<&str>,
    ) -> Arc<[usize]> {
        let Some(node) = node else {
            return parent.clone();
        };
        let items = match &node.kind {
            Kind::Seq(items) => items.as_slice(),
            Kind::Null => &[],
            _ => {
                self.type_error(node, "plugins", "a list of `{ kind, args }` entries");
                return parent.clone();
            }
        };
        let mut chain: Vec<usize> = parent.to_vec();
        for item in items {
            if !matches!(item.kind, Kind::Map(_)) {
                self.type_error(item, "a plugin", "a map `{ kind: NAME, args: { ... } }`");
                continue;
            }
            let mut f = Fields::new(self.diags, item, "plugin");
            let kind = f.take("kind");
            let args = f.take("args");
            f.finish(self.diags, &["kind", "args"]);
            let Some(kind_node) = kind else {
                self.value_error(item.span, "a plugin needs a `kind`");
                continue;
            };
            let Some(kind) = self.string(kind_node, "kind") else {
                continue;
            };
            let args = match args {
                Some(a) if matches!(a.kind, Kind::Map(_)) => Some(a.clone()),
                Some(a) if matches!(a.kind, Kind::Null) => None,
                Some(a) => {
                    self.type_error(a, "args", "a map");
                    continue;
                }
                None => None,
            };
            chain.push(self.plugins.len());
            self.plugins.push(PluginSpec {
                kind: kind.to_owned(),
                kind_span: kind_node.span,
                args,
                span: item.span,
                group: group.map(str::to_owned),
                base_dir: self.base_dir.to_path_buf(),
            });
        }
        chain.into()
    }
}
