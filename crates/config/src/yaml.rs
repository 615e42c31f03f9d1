//! YAML to [`Node`], through `yaml-rust2`'s event parser so that every node keeps its place.
//!
//! Scalars are resolved with the YAML 1.2 core schema (`true`, `~`, `0x1f`, `1.5`, …);
//! quoted scalars are always strings. Anchors and aliases work (an alias is a copy of its
//! anchor, within a node budget that stops "billion laughs" documents); tags other than
//! `!!str` and multi-document streams are rejected.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::node::{Kind, Node};
use crate::source::{Diagnostic, SourceId, Span};

/// Most nodes one document may expand to, aliases included.
const NODE_BUDGET: usize = 1_000_000;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 128;

/// Parses `text`, which sits at byte `base` of source `src`.
pub(crate) fn parse(src: SourceId, base: usize, text: &str) -> Result<Node, Diagnostic> {
    let mut builder = Builder {
        src,
        base,
        text,
        lines: crate::source::line_starts(text),
        stack: Vec::new(),
        root: None,
        anchors: HashMap::new(),
        documents: 0,
        nodes: 0,
        error: None,
    };
    // `Parser::load` recurses once per nesting level, so deep input could overflow the
    // stack before any limit of ours applies; pulling events one by one does not recurse.
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((ev, mark)) => builder.on_event(ev, mark),
            Err(e) => {
                let at = builder.offset(e.marker());
                return Err(scan_error(
                    Span::new(src, base + at, base + at + 1),
                    e.info(),
                    text,
                    at,
                ));
            }
        }
        if builder.error.is_some() {
            break;
        }
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder
        .root
        .unwrap_or_else(|| Node::new(Kind::Null, Span::new(src, base, base))))
}

fn scan_error(span: Span, info: &str, text: &str, at: usize) -> Diagnostic {
    let d = Diagnostic::error(crate::codes::SYNTAX, span, format!("invalid YAML: {info}"));
    // The scanner points near the problem; look back for the typical cause, a value that
    // starts with a character YAML reserves.
    let line_start = text[..at.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..];
    let line = line.split('\n').next().unwrap_or("");
    if info.contains("anchor or alias") || line.contains(": *") || line.contains("- *") {
        d.help("a value that starts with `*` is a YAML alias; quote it: `\"*\"`")
    } else if line.contains(": @") || line.contains(": `") {
        d.help("`@` and `` ` `` cannot start a plain YAML value; quote the value")
    } else if line.contains('\t') {
        d.help("YAML does not allow tabs for indentation; use spaces")
    } else {
        d
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        start: usize,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        start: usize,
        anchor: usize,
    },
}

struct Builder<'t> {
    src: SourceId,
    base: usize,
    text: &'t str,
    lines: Vec<usize>,
    stack: Vec<Frame>,
    root: Option<Node>,
    /// Anchored nodes with their node count and depth, so that an alias is charged in full
    /// and cannot splice a tree deeper than the limit.
    anchors: HashMap<usize, (Node, usize, usize)>,
    documents: usize,
    nodes: usize,
    error: Option<Diagnostic>,
}

impl Builder<'_> {
    /// Byte offset in `text` of a marker (1-based line, 0-based column in characters).
    fn offset(&self, m: &Marker) -> usize {
        let Some(&start) = self.lines.get(m.line().wrapping_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        start
            + rest
                .char_indices()
                .nth(m.col())
                .map_or(rest.len(), |(i, _)| i)
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.src, self.base + start, self.base + end)
    }

    fn fail(&mut self, at: usize, message: impl Into<String>) {
        if self.error.is_none() {
            let span = self.span(at, at + 1);
            self.error = Some(Diagnostic::error(crate::codes::SYNTAX, span, message));
        }
    }

    fn count(&mut self, n: usize, at: usize) -> bool {
        self.nodes += n;
        if self.nodes > NODE_BUDGET {
            self.fail(
                at,
                "the document expands to more than a million nodes (aliases included)",
            );
            return false;
        }
        true
    }

    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node, at: usize) {
        if anchor > 0 {
            // The stored copy costs as much as the node itself.
            let (count, depth) = measure(node);
            if self.count(count, at) {
                self.anchors.insert(anchor, (node.clone(), count, depth));
            }
        }
    }

    fn scalar(&mut self, value: String, style: TScalarStyle, at: usize) -> Node {
        let quoted = matches!(
            style,
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
        );
        let kind = if style == TScalarStyle::Plain {
            resolve_plain(&value)
        } else {
            Kind::Str(value)
        };
        let node = Node::new(kind, self.span(at, at + 1));
        let content = if quoted { at + 1 } else { at };
        let mut node = node.with_verbatim(self.text, content);
        if let (Some(v), Kind::Str(s)) = (node.verbatim, &node.kind) {
            node.verbatim = Some(self.base + v);
            node.span.end = self.base + v + s.len() + usize::from(quoted);
        } else if style == TScalarStyle::Plain && !matches!(node.kind, Kind::Str(_)) {
            let len = self.text[at..]
                .find(|c: char| c.is_whitespace() || c == ',' || c == ']' || c == '}')
                .unwrap_or(self.text.len() - at);
            node.span.end = self.base + at + len.max(1);
        }
        node
    }
}

fn tag_is_str(tag: &Tag) -> bool {
    tag.suffix == "str" || tag.suffix.ends_with(":str")
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let at = self.offset(&mark);
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(at, "one YAML document per file (found a second `---`)");
                }
            }
            Event::Alias(id) => {
                let Some(&(_, count, depth)) = self.anchors.get(&id) else {
                    self.fail(at, "this alias names no anchor defined before it");
                    return;
                };
                if self.stack.len() + depth > MAX_DEPTH {
                    self.fail(at, "nesting deeper than 128 levels (through this alias)");
                    return;
                }
                if self.count(count, at) {
                    let node = self.anchors[&id].0.clone();
                    self.push_value(node);
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                if tag.as_ref().is_some_and(|t| !tag_is_str(t)) {
                    self.fail(at, "YAML tags are not supported (except `!!str`)");
                    return;
                }
                let style = if tag.is_some() {
                    TScalarStyle::DoubleQuoted
                } else {
                    style
                };
                if !self.count(1, at) {
                    return;
                }
                let node = self.scalar(value, style, at);
                self.remember(anchor, &node, at);
                self.push_value(node);
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                if tag.is_some() {
                    self.fail(at, "YAML tags are not supported (except `!!str`)");
                    return;
                }
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(at, "nesting deeper than 128 levels");
                    return;
                }
                if !self.count(1, at) {
                    return;
                }
                self.stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq {
                        items: Vec::new(),
                        start: at,
                        anchor,
                    }
                } else {
                    Frame::Map {
                        entries: Vec::new(),
                        key: None,
                        start: at,
                        anchor,
                    }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        items,
                        start,
                        anchor,
                    }) => (
                        Node::new(Kind::Seq(items), self.span(start, start + 1)),
                        anchor,
                    ),
                    Some(Frame::Map {
                        entries,
                        start,
                        anchor,
                        ..
                    }) => (
                        Node::new(Kind::Map(entries), self.span(start, start + 1)),
                        anchor,
                    ),
                    None => return,
                };
                self.remember(anchor, &node, at);
                self.push_value(node);
            }
        }
    }
}

/// Node count and depth of a tree (built under the depth limit, so the recursion is bounded).
fn measure(node: &Node) -> (usize, usize) {
    let children: Box<dyn Iterator<Item = &Node>> = match &node.kind {
        Kind::Seq(items) => Box::new(items.iter()),
        Kind::Map(entries) => Box::new(entries.iter().flat_map(|(k, v)| [k, v])),
        _ => return (1, 0),
    };
    children.fold((1, 1), |(count, depth), child| {
        let (c, d) = measure(child);
        (count + c, depth.max(d + 1))
    })
}

/// The YAML 1.2 core schema for plain scalars.
pub(crate) fn resolve_plain(v: &str) -> Kind {
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Kind::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = v.strip_prefix("0x")
        && let Ok(n) = i64::from_str_radix(hex, 16)
    {
        return Kind::Int(n);
    }
    if let Some(oct) = v.strip_prefix("0o")
        && let Ok(n) = i64::from_str_radix(oct, 8)
    {
        return Kind::Int(n);
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = v.parse::<i64>() {
            return Kind::Int(n);
        }
        return Kind::Str(v.to_owned());
    }
    if is_float(digits)
        && let Ok(f) = v.parse::<f64>()
    {
        return Kind::Float(f);
    }
    Kind::Str(v.to_owned())
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_float(s: &str) -> bool {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (!int.is_empty() || !frac.is_empty())
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    mantissa_ok && exp_ok && (mantissa.contains('.') || exp.is_some())
}
