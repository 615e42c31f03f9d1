//! The fixed response: pre-serialized at load time.

use std::sync::Arc;

use anygate_http::Exchange;
use anygate_http::server::{push_decimal, push_status_line};
use anygate_router::dsl;
use anygate_router::status;

/// A fixed response, ready to copy out.
#[derive(Clone, Debug)]
pub struct Fixed {
    status: u16,
    /// Status line and the action's own header fields (`content-length` included).
    head: Box<[u8]>,
    body: Arc<[u8]>,
}

impl Fixed {
    /// Serializes `f` once.
    pub fn new(f: &dsl::Fixed) -> Self {
        let mut head = Vec::with_capacity(128);
        push_status_line(&mut head, f.status, status::reason(f.status));
        if let Some(ct) = f.body_type.content_type() {
            head.extend_from_slice(b"content-type: ");
            head.extend_from_slice(ct.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if let Some(loc) = &f.location {
            head.extend_from_slice(b"location: ");
            head.extend_from_slice(loc.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        // 1xx, 204 and 304 have no body, and the first two no length (RFC 9110 §8.6).
        let bodiless = f.status < 200 || f.status == 204 || f.status == 304;
        if !bodiless {
            head.extend_from_slice(b"content-length: ");
            push_decimal(&mut head, f.body.len());
            head.extend_from_slice(b"\r\n");
        }
        let body: &[u8] = if bodiless { b"" } else { f.body.as_bytes() };
        Self {
            status: f.status,
            head: head.into(),
            body: body.into(),
        }
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Writes the response.
    pub fn respond(&self, res: &mut Exchange<'_>) {
        res.send_prebuilt_shared(self.status, &self.head, &self.body);
    }
}
