//! Source texts, byte spans into them, and diagnostics rendered as `file:line:column`.

use std::fmt::{self, Write as _};

/// Which source a span points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId(u32);

/// One text the configuration was read from: the file, or one environment variable.
#[derive(Debug)]
pub struct Source {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

impl Source {
    /// The name shown in diagnostics (the path as given, or `environment`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and 1-based column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.floor_char_boundary(offset.min(self.text.len()));
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self.text[start..offset].chars().count() + 1;
        (line + 1, col)
    }

    /// The text of a 1-based line, without its line break.
    pub fn line(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len());
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }

    fn floor_char_boundary(&self, mut i: usize) -> usize {
        while !self.text.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// Byte offsets where lines start. `\n`, `\r\n` and a lone `\r` each end a line, as in
/// YAML.
pub(crate) fn line_starts(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let mut v = vec![0];
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' || (c == b'\r' && b.get(i + 1) != Some(&b'\n')) {
            v.push(i + 1);
        }
    }
    v
}

/// All the sources of one load.
#[derive(Debug, Default)]
pub struct Sources {
    list: Vec<Source>,
}

impl Sources {
    /// Registers a source and returns its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> SourceId {
        let text = text.into();
        let line_starts = line_starts(&text);
        let id = SourceId(u32::try_from(self.list.len()).unwrap_or(u32::MAX));
        self.list.push(Source {
            name: name.into(),
            text,
            line_starts,
        });
        id
    }

    /// The source with this id.
    ///
    /// # Panics
    ///
    /// Never for an id returned by [`Sources::add`] on this value.
    pub fn get(&self, id: SourceId) -> &Source {
        &self.list[id.0 as usize]
    }

    /// `file:line:column` of the start of a span.
    pub fn location(&self, span: Span) -> String {
        let src = self.get(span.src);
        let (line, col) = src.line_col(span.start);
        format!("{}:{line}:{col}", src.name)
    }

    /// The 1-based line a span starts on.
    pub fn line_of(&self, span: Span) -> usize {
        self.get(span.src).line_col(span.start).0
    }
}

/// A byte range in one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The source.
    pub src: SourceId,
    /// First byte.
    pub start: usize,
    /// One past the last byte (`start` when the span is a point).
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` in `src`.
    pub fn new(src: SourceId, start: usize, end: usize) -> Self {
        Self {
            src,
            start,
            end: end.max(start),
        }
    }

    /// The order spans appear in: by source, then by position.
    pub fn sort_key(&self) -> (SourceId, usize) {
        (self.src, self.start)
    }
}

/// Error or warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The configuration is rejected.
    Error,
    /// Accepted, but probably not what was meant.
    Warning,
}

/// One finding about the configuration, with where it is and, optionally, related places.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code, `AG-CFG-…` (listed in `docs/CONFIG.md`).
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
    /// Where; `None` for problems with no position (an unreadable file).
    pub span: Option<Span>,
    /// Related places (`the earlier rule is here`).
    pub notes: Vec<(Span, String)>,
    /// A suggestion.
    pub help: Option<Box<str>>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            span: Some(span),
            notes: Vec::new(),
            help: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, span, message)
        }
    }

    /// Adds a related place.
    #[must_use]
    pub fn note(mut self, span: Span, message: impl Into<String>) -> Self {
        self.notes.push((span, message.into()));
        self
    }

    /// Adds a suggestion.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into().into_boxed_str());
        self
    }

    /// Renders the diagnostic, rustc-style:
    ///
    /// ```text
    /// anygate.yml:4:9: error[AG-CFG-1101]: `*` must be the last segment of the path
    ///   4 |   "/bad/*/path": "OK"
    ///     |         ^
    /// ```
    pub fn render(&self, sources: &Sources) -> String {
        let mut out = String::new();
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.span {
            Some(span) => {
                let _ = writeln!(
                    out,
                    "{}: {level}[{}]: {}",
                    sources.location(span),
                    self.code,
                    self.message
                );
                excerpt(&mut out, sources, span);
            }
            None => {
                let _ = writeln!(out, "{level}[{}]: {}", self.code, self.message);
            }
        }
        for (span, note) in &self.notes {
            let _ = writeln!(out, "{}: note: {note}", sources.location(*span));
            excerpt(&mut out, sources, *span);
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}

/// The line of `span` with its text underlined (`^` under each character, at least one).
fn excerpt(out: &mut String, sources: &Sources, span: Span) {
    let src = sources.get(span.src);
    let (line, col) = src.line_col(span.start);
    let text = src.line(line);
    let (end_line, end_col) = src.line_col(span.end);
    let width = if end_line == line && end_col > col {
        end_col - col
    } else if end_line > line {
        text.chars().count().saturating_sub(col - 1).max(1)
    } else {
        1
    };
    let shown: String = text
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .collect();
    let gutter = line.to_string().len();
    let _ = writeln!(out, "{line:>gutter$} | {shown}", gutter = gutter + 1);
    let _ = writeln!(
        out,
        "{:>gutter$} | {}{}",
        "",
        " ".repeat(col - 1),
        "^".repeat(width),
        gutter = gutter + 1
    );
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}
