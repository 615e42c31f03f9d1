//! The format-neutral document tree: every node knows where it came from.

use crate::source::Span;

/// A value of the document, with its position.
#[derive(Clone, Debug)]
pub struct Node {
    /// The value.
    pub kind: Kind,
    /// Where it is written (for a string: including its quotes).
    pub span: Span,
    /// For strings whose content is written verbatim in the source (no escapes, one line):
    /// the byte offset where the content starts. Lets an error inside the string point at
    /// the exact character; otherwise errors point at the whole string.
    pub verbatim: Option<usize>,
}

/// The kinds of value the three formats share.
#[derive(Clone, Debug)]
pub enum Kind {
    /// `null`, `~`, or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    Seq(Vec<Node>),
    /// A map, in the order written.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A node without a verbatim mapping.
    pub fn new(kind: Kind, span: Span) -> Self {
        Self {
            kind,
            span,
            verbatim: None,
        }
    }

    /// What the node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self.kind {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The span of `len` bytes at byte `offset` of this string's content: exact when the
    /// content is verbatim in the source, the whole node otherwise.
    pub fn sub_span(&self, offset: usize, len: usize) -> Span {
        match self.verbatim {
            Some(start) => Span::new(self.span.src, start + offset, start + offset + len),
            None => self.span,
        }
    }

    /// Sets `verbatim` when `text[content_start..]` starts with this string's content on
    /// the same line.
    pub(crate) fn with_verbatim(mut self, text: &str, content_start: usize) -> Self {
        if let Kind::Str(s) = &self.kind
            && !s.contains('\n')
            && text
                .get(content_start..)
                .is_some_and(|rest| rest.starts_with(s.as_str()))
        {
            self.verbatim = Some(content_start);
        }
        self
    }
}
