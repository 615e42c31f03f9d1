//! TOML to [`Node`], through `toml`'s spanned document tree (`DeTable`, key order kept).

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::node::{Kind, Node};
use crate::source::{Diagnostic, SourceId, Span};

/// Parses a whole TOML document from source `src`.
pub(crate) fn parse(src: SourceId, text: &str) -> Result<Node, Diagnostic> {
    let doc = DeTable::parse(text).map_err(|e| {
        let range = e.span().unwrap_or(0..0);
        let message = e.message().trim_end().replace('\n', "; ");
        Diagnostic::error(
            crate::codes::SYNTAX,
            Span::new(src, range.start, range.end),
            format!("invalid TOML: {message}"),
        )
    })?;
    let span = doc.span();
    Ok(table(src, text, doc.get_ref(), span))
}

fn table(src: SourceId, text: &str, t: &DeTable<'_>, span: std::ops::Range<usize>) -> Node {
    let entries = t
        .iter()
        .map(|(k, v)| {
            let key = Node::new(Kind::Str(k.get_ref().to_string()), spanned(src, k));
            (verbatim(key, text), value(src, text, v))
        })
        .collect();
    Node::new(Kind::Map(entries), Span::new(src, span.start, span.end))
}

fn spanned<T>(src: SourceId, s: &Spanned<T>) -> Span {
    let r = s.span();
    Span::new(src, r.start, r.end)
}

/// A string is verbatim at its span (a bare key) or one byte in (a quoted string).
fn verbatim(node: Node, text: &str) -> Node {
    let Some(s) = node.as_str() else {
        return node;
    };
    let start = node.span.start;
    let raw = text.get(start..node.span.end).unwrap_or("");
    if raw == s {
        node.with_verbatim(text, start)
    } else if raw.len() >= 2 && &raw[1..raw.len() - 1] == s {
        node.with_verbatim(text, start + 1)
    } else {
        node
    }
}

fn value(src: SourceId, text: &str, v: &Spanned<DeValue<'_>>) -> Node {
    let span = spanned(src, v);
    match v.get_ref() {
        DeValue::String(s) => verbatim(Node::new(Kind::Str(s.to_string()), span), text),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let (neg, digits) = match digits.strip_prefix('-') {
                Some(d) => (true, d.to_owned()),
                None => (false, digits.trim_start_matches('+').to_owned()),
            };
            let digits = digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0o"))
                .or_else(|| digits.strip_prefix("0b"))
                .unwrap_or(&digits);
            let kind = match i64::from_str_radix(digits, i.radix()) {
                Ok(n) if neg => Kind::Int(-n),
                Ok(n) => Kind::Int(n),
                Err(_) => Kind::Str(i.as_str().to_owned()),
            };
            Node::new(kind, span)
        }
        DeValue::Float(f) => {
            let s = f.as_str().replace('_', "");
            let x = match s.trim_start_matches(['+', '-']) {
                "inf" if s.starts_with('-') => f64::NEG_INFINITY,
                "inf" => f64::INFINITY,
                "nan" => f64::NAN,
                _ => s.parse().unwrap_or(f64::NAN),
            };
            Node::new(Kind::Float(x), span)
        }
        DeValue::Boolean(b) => Node::new(Kind::Bool(*b), span),
        DeValue::Datetime(d) => Node::new(Kind::Str(d.to_string()), span),
        DeValue::Array(a) => Node::new(
            Kind::Seq(a.iter().map(|v| value(src, text, v)).collect()),
            span,
        ),
        DeValue::Table(t) => table(src, text, t, v.span()),
    }
}
