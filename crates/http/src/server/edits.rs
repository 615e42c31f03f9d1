//! What the filter phase changes about one request before its action sees it, and adds to
//! its response.
//!
//! A request head is parsed in place and never rewritten: filters that add, replace or
//! remove request fields (the `headers` filter, JWT claims sent upstream) or drop a query
//! parameter (an API key given in the query) record the change here, and the actions that
//! forward or show the request (proxy, echo) read the request through
//! [`Edits::fields`] and [`Edits::push_query`]. Fields a `pre` filter wants on whatever
//! response the request gets (CORS, rate-limit state) are appended to the response head
//! before the `post` phase runs.
//!
//! One `Edits` is pooled with the connection's heads and cleared for every request: no
//! allocation once warm.

use crate::message::Fields;
use crate::server::{Exchange, Request};

/// The request changes and response additions of one request.
#[derive(Debug, Default)]
pub struct Edits {
    /// Names of client fields hidden from the action (values empty).
    removed: Fields,
    /// Fields added to the request, after the client's.
    added: Fields,
    /// Names of query parameters dropped (values empty).
    query_removed: Fields,
    /// Fields for the response head.
    response: Fields,
}

impl Edits {
    pub(crate) fn clear(&mut self) {
        if !self.is_empty() {
            self.removed.clear();
            self.added.clear();
            self.query_removed.clear();
            self.response.clear();
        }
    }

    /// Whether nothing was changed.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.added.is_empty()
            && self.query_removed.is_empty()
            && self.response.is_empty()
    }

    fn hides(&self, name: &[u8]) -> bool {
        self.removed.contains(name)
    }

    /// The request's fields as the action should see them: the client's, less those
    /// removed or replaced, then those added, in order.
    pub fn fields<'a>(
        &'a self,
        req: &'a Request<'_>,
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let hide = !self.removed.is_empty();
        req.headers()
            .filter(move |(n, _)| !(hide && self.hides(n)))
            .chain(self.added.iter())
    }

    /// The first value of `name` as the action sees it.
    pub fn field<'a>(&'a self, req: &'a Request<'_>, name: &[u8]) -> Option<&'a [u8]> {
        self.fields(req)
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether some request field was removed, replaced or added.
    pub fn changes_fields(&self) -> bool {
        !self.removed.is_empty() || !self.added.is_empty()
    }

    /// Whether some query parameter is dropped.
    pub fn changes_query(&self) -> bool {
        !self.query_removed.is_empty()
    }

    /// Appends `?query` to `out` without the dropped parameters (a parameter's name is
    /// compared as written, before percent-decoding; nothing at all when every
    /// parameter went, and for `None`).
    pub fn push_query(&self, out: &mut Vec<u8>, query: Option<&[u8]>) {
        let Some(q) = query else { return };
        if self.query_removed.is_empty() {
            out.push(b'?');
            out.extend_from_slice(q);
            return;
        }
        let mut first = true;
        for pair in q.split(|&b| b == b'&') {
            let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
            if self.query_removed.iter().any(|(n, _)| n == name) {
                continue;
            }
            out.push(if first { b'?' } else { b'&' });
            first = false;
            out.extend_from_slice(pair);
        }
    }

    /// Whether fields are queued for the response head.
    pub fn has_response_fields(&self) -> bool {
        !self.response.is_empty()
    }

    /// The fields queued for the response head.
    pub(crate) fn response_fields(&self) -> &Fields {
        &self.response
    }
}

/// The filter phase's changes to the request and its response.
impl Exchange<'_> {
    /// The changes recorded so far (empty for a request no filter touched).
    pub fn edits(&self) -> &Edits {
        self.edits
    }

    /// The scratch buffer and the edits at once (an action that writes the request into
    /// its body: echo).
    pub fn scratch_and_edits(&mut self) -> (&mut Vec<u8>, &Edits) {
        self.scratch.clear();
        (self.scratch, self.edits)
    }

    /// Hides every client field named `name` (and any added earlier) from the action.
    /// `name` must be a token.
    pub fn remove_request_field(&mut self, name: &[u8]) {
        if crate::message::is_token(name) && !self.edits.removed.contains(name) {
            self.edits.removed.append(name, b"");
        }
        self.edits.added.remove(name);
    }

    /// Replaces every field named `name` by `name: value`. A name that is not a token or
    /// a value holding CR, LF or NUL is ignored (nothing can be injected through it).
    pub fn set_request_field(&mut self, name: &[u8], value: &[u8]) {
        if valid(name, value) {
            self.remove_request_field(name);
            self.edits.added.append(name, value);
        }
    }

    /// Adds `name: value` after the client's fields (ignored unless valid, as above).
    pub fn add_request_field(&mut self, name: &[u8], value: &[u8]) {
        if valid(name, value) {
            self.edits.added.append(name, value);
        }
    }

    /// Drops the query parameter `name` (compared as written) from the forwarded target.
    pub fn remove_query_param(&mut self, name: &[u8]) {
        if crate::message::is_token(name) && !self.edits.query_removed.contains(name) {
            self.edits.query_removed.append(name, b"");
        }
    }

    /// Puts `name: value` on the response this request gets, whichever it is (the action's,
    /// an error, a filter's early answer), before the `post` phase sees the head. Ignored
    /// unless `name` is a token, `value` holds no CR, LF or NUL, and the field is not one
    /// the server writes itself (framing, `Date`, `X-Request-Id`).
    pub fn add_response_field(&mut self, name: &[u8], value: &[u8]) {
        if valid(name, value) && !crate::server::response::driver_owned(name) {
            self.edits.response.append(name, value);
        }
    }
}

fn valid(name: &[u8], value: &[u8]) -> bool {
    crate::message::is_token(name) && crate::message::is_field_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_query_drops_the_named_parameters_only() {
        let mut e = Edits::default();
        let run = |e: &Edits, q: Option<&[u8]>| {
            let mut out = Vec::new();
            e.push_query(&mut out, q);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(run(&e, Some(b"a=1&b=2")), "?a=1&b=2");
        assert_eq!(run(&e, None), "");
        e.query_removed.append(b"api_key", b"");
        assert_eq!(run(&e, Some(b"api_key=s3cret&b=2")), "?b=2");
        assert_eq!(run(&e, Some(b"b=2&api_key=s3cret")), "?b=2");
        assert_eq!(run(&e, Some(b"api_key")), "");
        assert_eq!(run(&e, Some(b"api_keyx=1&api_key=2")), "?api_keyx=1");
        assert!(e.changes_query());
        e.clear();
        assert!(e.is_empty());
    }
}
