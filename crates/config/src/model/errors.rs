//! `errors`: error pages at the top level, in groups and on a rule (its long form), each a
//! status (`404`) or class (`5xx`) mapped to a file or an inline body.

use std::fmt;

use super::*;

/// Which statuses an error page is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorStatus {
    /// This status (400-599).
    Exact(u16),
    /// `4xx` or `5xx`.
    Class(u8),
}

impl fmt::Display for ErrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorStatus::Exact(s) => write!(f, "{s}"),
            ErrorStatus::Class(c) => write!(f, "{c}xx"),
        }
    }
}

/// One error page, read at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorPage {
    /// Its statuses.
    pub status: ErrorStatus,
    /// Its content type (from the file's extension, or what the inline body is).
    pub content_type: &'static str,
    /// The body.
    pub body: Arc<[u8]>,
    /// The file it was read from (`None` for an inline body).
    pub file: Option<PathBuf>,
}

/// The error pages in effect for a scope: its own over its parent's, status by status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorPages {
    /// The pages.
    pub pages: Vec<ErrorPage>,
    /// `intercept_upstream` (default false): upstream responses with an error status get
    /// the page too (their body is dropped; the status is kept).
    pub intercept_upstream: bool,
}

impl ErrorPages {
    /// Whether there is no page.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

/// The largest error page file (they are held in memory).
pub const MAX_ERROR_PAGE: u64 = 1 << 20;

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

impl Decoder<'_> {
    /// `errors` of a scope, over `parent`'s; `None` in the node keeps the parent's.
    pub(super) fn error_pages(
        &mut self,
        node: Option<&Node>,
        parent: &Arc<ErrorPages>,
    ) -> Arc<ErrorPages> {
        let Some(node) = node else {
            return parent.clone();
        };
        if !matches!(node.kind, Kind::Map(_)) {
            self.type_error(node, "errors", "a map of statuses to pages");
            return parent.clone();
        }
        let mut out = (**parent).clone();
        let mut f = Fields::new(self.diags, node, "errors");
        if let Some(n) = f.take("intercept_upstream")
            && let Some(b) = self.bool(n, "errors.intercept_upstream")
        {
            out.intercept_upstream = b;
        }
        for (k, v) in f.unique_entries() {
            if k.as_str() == Some("intercept_upstream") {
                continue;
            }
            let key_text = match &k.kind {
                Kind::Int(i) => i.to_string(),
                Kind::Str(s) => s.clone(),
                _ => {
                    self.type_error(k, "an errors key", "a status (`404`) or class (`5xx`)");
                    continue;
                }
            };
            let Some(status) = parse_error_status(&key_text) else {
                self.diags.push(
                    Diagnostic::error(
                        codes::VALUE,
                        k.span,
                        format!("`{key_text}` is not an error status: use 400-599, `4xx` or `5xx`"),
                    )
                    .help("`intercept_upstream: true` is the only other key"),
                );
                continue;
            };
            let Some(text) = self.string(v, "an error page") else {
                continue;
            };
            let Some(page) = self.error_page(status, text, v) else {
                continue;
            };
            out.pages.retain(|p| p.status != status);
            out.pages.push(page);
        }
        Arc::new(out)
    }

    /// A file (`./errors/404.html`, `/srv/errors/5xx.html`) or an inline body.
    fn error_page(&mut self, status: ErrorStatus, text: &str, v: &Node) -> Option<ErrorPage> {
        if text.starts_with('/') || text.starts_with("./") || text.starts_with("../") {
            let path = Path::new(text);
            let resolved = self.resolve(path);
            let read = std::fs::metadata(&resolved).and_then(|m| {
                if !m.is_file() {
                    Err(std::io::Error::other("is not a file"))
                } else if m.len() > MAX_ERROR_PAGE {
                    Err(std::io::Error::other("is larger than 1 MiB"))
                } else {
                    std::fs::read(&resolved)
                }
            });
            return match read {
                Ok(body) => {
                    let ext = resolved
                        .extension()
                        .and_then(|e| e.to_str())
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    let content_type = match ext.as_str() {
                        "json" => JSON,
                        "txt" => TEXT,
                        _ => HTML,
                    };
                    Some(ErrorPage {
                        status,
                        content_type,
                        body: body.into(),
                        file: Some(resolved),
                    })
                }
                Err(e) => {
                    let why = if e.kind() == std::io::ErrorKind::NotFound {
                        "does not exist".to_owned()
                    } else {
                        e.to_string()
                    };
                    self.path_error(
                        codes::VALUE,
                        v.span,
                        format!("error page `{text}` {why}"),
                        path,
                        &resolved,
                        "files",
                    );
                    None
                }
            };
        }
        if text.is_empty() {
            self.value_error(v.span, "an error page is a file (`./404.html`) or a body");
            return None;
        }
        let trimmed = text.trim_start();
        let content_type = if trimmed.starts_with('<') {
            HTML
        } else if (trimmed.starts_with('{') || trimmed.starts_with('['))
            && crate::json::parse(crate::source::Sources::default().add("page", text), text).is_ok()
        {
            JSON
        } else {
            TEXT
        };
        Some(ErrorPage {
            status,
            content_type,
            body: text.as_bytes().into(),
            file: None,
        })
    }
}

fn parse_error_status(text: &str) -> Option<ErrorStatus> {
    match text.as_bytes() {
        [c @ (b'4' | b'5'), b'x' | b'X', b'x' | b'X'] => Some(ErrorStatus::Class(c - b'0')),
        _ => text
            .parse::<u16>()
            .ok()
            .filter(|s| (400..=599).contains(s) && text.len() == 3)
            .map(ErrorStatus::Exact),
    }
}
