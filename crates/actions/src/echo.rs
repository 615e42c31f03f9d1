//! The echo action: the request, described as JSON.
//!
//! ```json
//! {"method":"POST","target":"/a/7?x=1","path":"/a/7","query":"x=1","version":"HTTP/1.1",
//!  "headers":{"host":"h","content-length":"5"},"params":{"id":"7"},"splat":null,
//!  "body":"hello","body_bytes":5,"body_truncated":false,"request_id":"…"}
//! ```
//!
//! Over TLS a `"tls"` member follows `body_truncated`: `{"sni":"a.example.com",
//! "alpn":"http/1.1","version":"TLSv1.3","cipher":"TLS13_AES_128_GCM_SHA256",
//! "resumed":false,"client_subject":"CN=client"}` (`null` for what is unknown).
//!
//! Header names are lower-cased; repeated fields are joined with `, ` in order. The body is
//! read to its end (so the connection stays usable) but only its first `max_body` bytes are
//! kept and shown, as UTF-8 (invalid sequences become U+FFFD).

use anygate_http::server::push_decimal;
use anygate_http::{Exchange, Request};
use anygate_obs::escape::{json_body as push_contents, json_str as push_string};
use anygate_router::status;

/// The echo action.
#[derive(Clone, Copy, Debug)]
pub struct Echo {
    status: u16,
    max_body: usize,
}

impl Echo {
    /// Echo with `status`, keeping at most `max_body` bytes of the body.
    pub fn new(status: u16, max_body: usize) -> Self {
        Self { status, max_body }
    }

    /// Reads the body (keeping its prefix in `body_buf`) and writes the JSON response.
    /// `path` is the normalised path; `params` and `splat` come from the route match.
    pub async fn respond<'p>(
        &self,
        req: &Request<'_>,
        path: &[u8],
        params: impl Iterator<Item = (&'p str, &'p [u8])>,
        splat: Option<&[u8]>,
        res: &mut Exchange<'_>,
        body_buf: &mut Vec<u8>,
    ) {
        body_buf.clear();
        loop {
            match res.body_chunk().await {
                Ok(Some(data)) => {
                    let room = self.max_body.saturating_sub(body_buf.len());
                    body_buf.extend_from_slice(&data[..data.len().min(room)]);
                }
                Ok(None) => break,
                Err(kind) => return res.error(kind, None),
            }
        }
        let total = res.body_received();
        let (out, edits) = res.scratch_and_edits();
        // The request as the filters left it (`headers`, `auth`): what a proxy would send.
        let headers = || edits.fields(req);
        out.extend_from_slice(b"{\"method\":");
        push_string(out, req.method());
        out.extend_from_slice(b",\"target\":");
        // A dropped query parameter (an API key) is not shown either.
        let edited_target = edits.changes_query().then(|| {
            let target = req.target();
            let at = target
                .iter()
                .position(|&b| b == b'?')
                .unwrap_or(target.len());
            let mut t = target[..at].to_vec();
            edits.push_query(&mut t, req.query());
            t
        });
        push_string(out, edited_target.as_deref().unwrap_or(req.target()));
        out.extend_from_slice(b",\"path\":");
        push_string(out, path);
        out.extend_from_slice(b",\"query\":");
        match req.query() {
            Some(q) if edits.changes_query() => {
                let mut kept = Vec::with_capacity(q.len() + 1);
                edits.push_query(&mut kept, Some(q));
                match kept.get(1..) {
                    Some(k) => push_string(out, k),
                    None => out.extend_from_slice(b"null"),
                }
            }
            Some(q) => push_string(out, q),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"version\":\"");
        out.extend_from_slice(req.version().as_str().as_bytes());
        out.push(b'"');
        out.extend_from_slice(b",\"headers\":{");
        let mut first = true;
        for (i, (name, _)) in headers().enumerate() {
            // Each name once, at its first occurrence, with every value joined.
            if headers().take(i).any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend(name.iter().map(u8::to_ascii_lowercase));
            out.extend_from_slice(b"\":\"");
            let mut sep = false;
            for (_, v) in headers()
                .skip(i)
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                if sep {
                    out.extend_from_slice(b", ");
                }
                sep = true;
                push_contents(out, v);
            }
            out.push(b'"');
        }
        out.extend_from_slice(b"},\"params\":{");
        for (i, (name, value)) in params.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_string(out, name.as_bytes());
            out.push(b':');
            push_string(out, value);
        }
        out.extend_from_slice(b"},\"splat\":");
        match splat {
            Some(s) => push_string(out, s),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"body\":");
        push_string(out, body_buf);
        out.extend_from_slice(b",\"body_bytes\":");
        push_decimal(out, total as usize);
        out.extend_from_slice(b",\"body_truncated\":");
        out.extend_from_slice(if total as usize > body_buf.len() {
            b"true"
        } else {
            b"false"
        });
        if let Some(tls) = req.tls() {
            let opt = |out: &mut Vec<u8>, v: Option<&[u8]>| match v {
                Some(v) => push_string(out, v),
                None => out.extend_from_slice(b"null"),
            };
            out.extend_from_slice(b",\"tls\":{\"sni\":");
            opt(out, tls.server_name.as_deref().map(str::as_bytes));
            out.extend_from_slice(b",\"alpn\":");
            opt(out, tls.alpn.as_deref());
            out.extend_from_slice(b",\"version\":");
            push_string(out, tls.version.as_bytes());
            out.extend_from_slice(b",\"cipher\":");
            push_string(out, tls.cipher.as_bytes());
            out.extend_from_slice(b",\"resumed\":");
            out.extend_from_slice(if tls.resumed { b"true" } else { b"false" });
            out.extend_from_slice(b",\"client_subject\":");
            opt(out, tls.client_subject.as_deref().map(str::as_bytes));
            out.push(b'}');
        }
        out.extend_from_slice(b",\"request_id\":");
        push_string(out, req.request_id());
        out.push(b'}');
        res.send_scratch(
            self.status,
            status::reason(self.status),
            Some("application/json; charset=utf-8"),
        );
    }
}
