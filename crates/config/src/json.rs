//! JSON (RFC 8259) to [`Node`] with exact spans.
//!
//! A small recursive-descent parser: JSON's grammar is tiny, and a parser of our own is the
//! only way to know where every value and key is (serde_json keeps no positions). Depth is
//! bounded; numbers that fit `i64` are integers, the others floats.

use crate::node::{Kind, Node};
use crate::source::{Diagnostic, SourceId, Span};

const MAX_DEPTH: usize = 128;

/// Parses a whole JSON document from source `src`.
pub(crate) fn parse(src: SourceId, text: &str) -> Result<Node, Diagnostic> {
    let mut p = Parser {
        src,
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    p.ws();
    let node = p.value()?;
    p.ws();
    if p.pos < p.bytes.len() {
        return Err(p.err(p.pos, "unexpected text after the JSON document"));
    }
    Ok(node)
}

struct Parser<'t> {
    src: SourceId,
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, at: usize, message: &str) -> Diagnostic {
        let end = (at + 1).min(self.bytes.len()).max(at);
        Diagnostic::error(
            crate::codes::SYNTAX,
            Span::new(self.src, at, end),
            format!("invalid JSON: {message}"),
        )
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Node, Diagnostic> {
        let start = self.pos;
        match self.bytes.get(self.pos) {
            None => Err(self.err(start, "expected a value, found the end of the file")),
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => {
                for (word, kind) in [
                    ("true", Kind::Bool(true)),
                    ("false", Kind::Bool(false)),
                    ("null", Kind::Null),
                ] {
                    if self.text[start..].starts_with(word) {
                        self.pos += word.len();
                        return Ok(Node::new(kind, self.span(start)));
                    }
                }
                Err(self.err(start, "expected a value"))
            }
        }
    }

    fn span(&self, start: usize) -> Span {
        Span::new(self.src, start, self.pos)
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Node, Diagnostic>) -> Result<Node, Diagnostic> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err(self.pos, "nesting deeper than 128 levels"));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn object(&mut self) -> Result<Node, Diagnostic> {
        let start = self.pos;
        self.pos += 1;
        let mut entries = Vec::new();
        self.ws();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Node::new(Kind::Map(entries), self.span(start)));
        }
        loop {
            self.ws();
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.err(self.pos, "expected a key in double quotes"));
            }
            let key = self.string()?;
            self.ws();
            if self.bytes.get(self.pos) != Some(&b':') {
                return Err(self.err(self.pos, "expected `:` after the key"));
            }
            self.pos += 1;
            self.ws();
            let value = self.value()?;
            entries.push((key, value));
            self.ws();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Node::new(Kind::Map(entries), self.span(start)));
                }
                _ => return Err(self.err(self.pos, "expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self) -> Result<Node, Diagnostic> {
        let start = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        self.ws();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Node::new(Kind::Seq(items), self.span(start)));
        }
        loop {
            self.ws();
            items.push(self.value()?);
            self.ws();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Node::new(Kind::Seq(items), self.span(start)));
                }
                _ => return Err(self.err(self.pos, "expected `,` or `]`")),
            }
        }
    }

    fn string(&mut self) -> Result<Node, Diagnostic> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut escaped = false;
        loop {
            let run = self.pos;
            while let Some(&b) = self.bytes.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run..self.pos]);
            match self.bytes.get(self.pos) {
                None => return Err(self.err(start, "this string is never closed")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    return Err(self.err(self.pos, "control character inside a string"));
                }
            }
        }
        let node = Node::new(Kind::Str(out), self.span(start));
        Ok(if escaped {
            node
        } else {
            node.with_verbatim(self.text, start + 1)
        })
    }

    fn escape(&mut self, out: &mut String) -> Result<(), Diagnostic> {
        let at = self.pos;
        self.pos += 1;
        let c = match self.bytes.get(self.pos) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let hi = self.hex4(at)?;
                let c = if (0xD800..0xDC00).contains(&hi) {
                    if !self.text[self.pos..].starts_with("\\u") {
                        return Err(self.err(at, "unpaired surrogate in `\\u` escape"));
                    }
                    self.pos += 2;
                    let lo = self.hex4(at)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(self.err(at, "unpaired surrogate in `\\u` escape"));
                    }
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                } else {
                    char::from_u32(hi)
                };
                let Some(c) = c else {
                    return Err(self.err(at, "unpaired surrogate in `\\u` escape"));
                };
                out.push(c);
                return Ok(());
            }
            _ => return Err(self.err(at, "invalid escape")),
        };
        self.pos += 1;
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self, at: usize) -> Result<u32, Diagnostic> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(n) = digits.and_then(|d| u32::from_str_radix(d, 16).ok()) else {
            return Err(self.err(at, "`\\u` needs four hex digits"));
        };
        self.pos += 4;
        Ok(n)
    }

    fn number(&mut self) -> Result<Node, Diagnostic> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while p.bytes.get(p.pos).is_some_and(u8::is_ascii_digit) {
                p.pos += 1;
            }
            p.pos - s
        };
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        let n = digits(self);
        if n == 0 || (n > 1 && self.bytes[int_start] == b'0') {
            return Err(self.err(start, "malformed number"));
        }
        let mut float = false;
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            float = true;
            if digits(self) == 0 {
                return Err(self.err(start, "malformed number"));
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            float = true;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.err(start, "malformed number"));
            }
        }
        let text = &self.text[start..self.pos];
        let kind = match (float, text.parse::<i64>()) {
            (false, Ok(i)) => Kind::Int(i),
            _ => Kind::Float(text.parse::<f64>().unwrap_or(f64::NAN)),
        };
        Ok(Node::new(kind, self.span(start)))
    }
}
