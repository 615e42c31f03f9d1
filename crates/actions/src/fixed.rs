//! The fixed response: built once at load time, encoded once by the codec.

use anygate_http::Exchange;
use anygate_http::message::{Prebuilt, ResponseHead};
use anygate_router::dsl;
use anygate_router::status;

/// A fixed response, ready to copy out.
#[derive(Clone, Debug)]
pub struct Fixed {
    response: Prebuilt,
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
        }
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.response.status()
    }

    /// Writes the response.
    pub fn respond(&self, res: &mut Exchange<'_>) {
        res.send_prebuilt(&self.response);
    }
}
