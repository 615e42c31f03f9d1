//! The fixed response: built once at load time, encoded once by the codec.

use anygate_http::Exchange;
use anygate_http::message::{Fields, Prebuilt, ResponseHead};
use anygate_router::dsl;
use anygate_router::status;

/// A fixed response, ready to copy out.
#[derive(Clone, Debug)]
pub struct Fixed {
    response: Prebuilt,
    /// The response with the rule's `post` phase applied at load, over plain HTTP and over
    /// TLS, when that phase depends on nothing else (see [`Fixed::apply_post`]).
    posted: Option<Box<[Prebuilt; 2]>>,
}

impl Fixed {
    /// Builds `f` once.
    pub fn new(f: &dsl::Fixed) -> Self {
        let mut head = ResponseHead::new(f.status, status::reason(f.status));
        if let Some(ct) = f.body_type.content_type() {
            head.fields.append(b"content-type", ct.as_bytes());
        }
        if let Some(loc) = &f.location {
            head.fields.append(b"location", loc.as_bytes());
        }
        Self {
            response: Prebuilt::new(head, f.body.as_bytes()),
            posted: None,
        }
    }

    /// Applies the rule's `post` phase once at load: `post(fields, tls, status)` edits the
    /// head's fields as the phase would for a request over plain HTTP (`tls` false) or TLS,
    /// and returns `false` when the phase depends on more than that (then every request
    /// goes through it). A request for which a filter queued response fields still does.
    pub fn apply_post(&mut self, post: impl Fn(&mut Fields, bool, u16) -> bool) {
        let variant = |tls: bool| {
            let mut head = self.response.head.clone();
            let status = head.status();
            post(&mut head.fields, tls, status).then(|| Prebuilt::new(head, &self.response.body))
        };
        self.posted = match (variant(false), variant(true)) {
            (Some(plain), Some(tls)) => Some(Box::new([plain, tls])),
            _ => None,
        };
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.response.status()
    }

    /// Writes the response.
    pub fn respond(&self, res: &mut Exchange<'_>) {
        match &self.posted {
            Some(p) if !res.edits().has_response_fields() => {
                res.send_prebuilt_posted(&p[usize::from(res.ctx().tls)]);
            }
            _ => res.send_prebuilt(&self.response),
        }
    }
}
