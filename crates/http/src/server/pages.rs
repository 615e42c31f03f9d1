//! Error pages (`errors:` in the configuration): what a response with an error status
//! carries instead of the JSON error body, for the clients that take it.
//!
//! The pipeline picks the request's pages (its rule's, else its groups', else the top
//! level's) and whether the client asked for HTML; [`super::Exchange::error`] then sends
//! the page for the error's status, with that status. An HTML page goes to clients whose
//! `Accept` names `text/html` (browsers); an API client keeps the JSON body of SPEC §6. A
//! page of another type (JSON, text) replaces the body for every client.

/// Which statuses a page is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusMatch {
    /// This status.
    Exact(u16),
    /// `4xx` or `5xx`: the hundreds digit.
    Class(u8),
}

impl StatusMatch {
    fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Exact(s) => s == status,
            StatusMatch::Class(c) => status / 100 == u16::from(c),
        }
    }
}

/// One page: its content type and body, read when the configuration was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// `text/html; charset=utf-8`, `application/json`, ...
    pub content_type: Box<str>,
    /// The body.
    pub body: Box<[u8]>,
}

impl Page {
    /// Whether the page is HTML (sent only to clients that ask for HTML).
    pub fn is_html(&self) -> bool {
        self.content_type.starts_with("text/html")
    }
}

/// The pages of one scope, an exact status before a class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorPages {
    /// The pages, exact statuses first.
    pages: Vec<(StatusMatch, Page)>,
    /// `intercept_upstream`: upstream responses with an error status get the page too.
    pub intercept_upstream: bool,
}

impl ErrorPages {
    /// The pages for `entries` (the order does not matter: an exact status beats a class).
    pub fn new(entries: Vec<(StatusMatch, Page)>, intercept_upstream: bool) -> Self {
        let mut pages = entries;
        pages.sort_by_key(|(m, _)| matches!(m, StatusMatch::Class(_)));
        Self {
            pages,
            intercept_upstream,
        }
    }

    /// Whether there is no page.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The page for `status` and a client that does (`html`) or does not ask for HTML.
    pub fn pick(&self, status: u16, html: bool) -> Option<&Page> {
        let (_, page) = self.pages.iter().find(|(m, _)| m.matches(status))?;
        (html || !page.is_html()).then_some(page)
    }
}

/// Whether an `Accept` value asks for HTML: it names `text/html` (or `text/*`) with a
/// non-zero weight. `*/*` alone does not: curl and API clients send it.
pub fn accepts_html(accept: &[u8]) -> bool {
    accept.split(|&b| b == b',').any(|item| {
        let mut parts = item.split(|&b| b == b';');
        let range = parts.next().unwrap_or_default().trim_ascii();
        if !(range.eq_ignore_ascii_case(b"text/html") || range.eq_ignore_ascii_case(b"text/*")) {
            return false;
        }
        !parts.any(|p| {
            let p = p.trim_ascii();
            p.len() >= 2
                && p[..2].eq_ignore_ascii_case(b"q=")
                && p[2..].iter().all(|&b| b == b'0' || b == b'.')
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ct: &str, body: &str) -> Page {
        Page {
            content_type: ct.into(),
            body: body.as_bytes().into(),
        }
    }

    #[test]
    fn an_exact_status_beats_a_class_and_html_goes_to_browsers_only() {
        let p = ErrorPages::new(
            vec![
                (
                    StatusMatch::Class(5),
                    page("text/html; charset=utf-8", "5xx"),
                ),
                (
                    StatusMatch::Exact(502),
                    page("text/html; charset=utf-8", "502"),
                ),
                (StatusMatch::Exact(404), page("application/json", "{}")),
            ],
            false,
        );
        assert_eq!(&*p.pick(502, true).unwrap().body, b"502");
        assert_eq!(&*p.pick(503, true).unwrap().body, b"5xx");
        assert!(p.pick(503, false).is_none());
        assert_eq!(&*p.pick(404, false).unwrap().body, b"{}");
        assert!(p.pick(403, true).is_none());
    }

    #[test]
    fn accept_asks_for_html_only_by_name_and_not_with_q_zero() {
        assert!(accepts_html(
            b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(accepts_html(b"TEXT/*"));
        assert!(!accepts_html(b"*/*"));
        assert!(!accepts_html(b"application/json"));
        assert!(!accepts_html(b"text/html;q=0, application/json"));
        assert!(accepts_html(b"application/json;q=0.5, text/html;q=0.1"));
    }
}
