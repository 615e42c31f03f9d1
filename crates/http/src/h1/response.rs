//! HTTP/1.1 response heads as received from an upstream (sans I/O): `httparse` for the
//! grammar, parsed into the same [`ResponseHead`] the server sends, and the body framing of
//! RFC 9112 §6.3: no body for `HEAD`, 1xx, 204 and 304; `Transfer-Encoding` (`chunked`
//! alone) is chunked; otherwise `Content-Length`; else the body runs to the end of the
//! connection. Conflicting lengths, other codings and statuses outside 100–599 are invalid.

use crate::h1::chunked::ChunkedDecoder;
use crate::message::{FieldOffsets, ResponseHead};

/// Most header fields accepted in a response head.
const MAX_FIELDS: usize = 128;

/// The response head is not valid HTTP/1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidResponse;

/// What the head says besides status and fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseInfo {
    /// Length of the head in the input, final empty line included.
    pub len: usize,
    /// `HTTP/1.0` (minor version 0).
    pub http10: bool,
    /// The upstream will close after this response (`Connection: close`, HTTP/1.0, or both
    /// framings at once).
    pub close: bool,
    /// `Content-Length`, if given (dropped when `Transfer-Encoding` is there too).
    pub content_length: Option<u64>,
    /// Whether the body is chunked.
    pub chunked: bool,
}

/// How a response body is delimited, and how far it has been read.
#[derive(Clone, Debug)]
pub enum ResponseFraming {
    /// No body.
    None,
    /// `Content-Length`; bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
    /// Until the upstream closes.
    UntilClose,
}

impl ResponseFraming {
    /// Whether the whole body has been read (a body delimited by the close is finished only
    /// once the close came, when it turns into `Length(0)`).
    pub fn is_finished(&self) -> bool {
        match self {
            Self::None | Self::Length(0) => true,
            Self::Chunked(d) => d.is_done(),
            Self::Length(_) | Self::UntilClose => false,
        }
    }

    /// The framing of a response with `info` and `status`; `head_request` says the request
    /// was `HEAD`.
    pub fn of(info: &ResponseInfo, status: u16, head_request: bool) -> Self {
        if head_request || status < 200 || status == 204 || status == 304 {
            return Self::None;
        }
        if info.chunked {
            return Self::Chunked(ChunkedDecoder::new());
        }
        match info.content_length {
            Some(n) => Self::Length(n),
            None => Self::UntilClose,
        }
    }
}

/// Whether the connection can serve another exchange after this response (the caller
/// also checks that the body was read to its end and nothing more came).
pub fn keeps_connection(info: &ResponseInfo, framing: &ResponseFraming) -> bool {
    !info.close && !matches!(framing, ResponseFraming::UntilClose)
}

/// Parses a response head at the start of `input` into `head` (every field, in order) and
/// its framing: `None` when more bytes are needed. `head_request` says the request was
/// `HEAD`.
pub fn parse_response_head(
    input: &[u8],
    head: &mut ResponseHead,
    head_request: bool,
) -> Result<Option<(ResponseInfo, ResponseFraming)>, InvalidResponse> {
    Ok(parse(input, head)?.map(|info| {
        let framing = ResponseFraming::of(&info, head.status(), head_request);
        (info, framing)
    }))
}

/// Parses a response head at the start of `input` into `head`.
pub fn parse(
    input: &[u8],
    head: &mut ResponseHead,
) -> Result<Option<ResponseInfo>, InvalidResponse> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut fields);
    let n = match res.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(InvalidResponse),
    };
    let status = res.code.ok_or(InvalidResponse)?;
    if !(100..=599).contains(&status) {
        return Err(InvalidResponse);
    }
    let minor = res.version.ok_or(InvalidResponse)?;
    head.reset(status, "");
    // The reason is cut from the status line itself: httparse replaces a reason that is
    // not UTF-8 (obs-text) by a static "". `HTTP/1.1 200 ` is 13 bytes.
    let line_end = memchr::memchr(b'\n', &input[..n]).unwrap_or(0);
    let line_end = if line_end > 0 && input[line_end - 1] == b'\r' {
        line_end - 1
    } else {
        line_end
    };
    head.set_reason_bytes(input.get(13..line_end).unwrap_or_default());
    // HTTP/1.0 upstreams are never reused, `keep-alive` or not: a 1.0 server would not
    // understand the chunked bodies sent on that connection.
    let mut info = ResponseInfo {
        len: n,
        http10: minor == 0,
        close: minor == 0,
        content_length: None,
        chunked: false,
    };
    // The field lines are copied at once and indexed: the offsets of httparse's slices in
    // `input` (they all lie inside it: names and values are never replaced). Only a head
    // whose every line ends in CRLF is copied so: httparse accepts bare LFs (the final empty
    // line included), and those lines are written again, field by field, with CRLF.
    let base = input.as_ptr() as usize;
    // Each line ends right before the next one starts (httparse ends a field's line at its
    // LF), so checking the two bytes before every field's name, and the head's last four,
    // checks every line ending without a scan.
    let ends_in_crlf = |at: usize| at >= 2 && input.get(at - 2..at) == Some(&b"\r\n"[..]);
    let crlf_only = input.get(..n).is_some_and(|h| h.ends_with(b"\r\n\r\n"))
        && res
            .headers
            .iter()
            .all(|f| ends_in_crlf((f.name.as_ptr() as usize).wrapping_sub(base)));
    let fields_start = res
        .headers
        .first()
        .map_or(0, |f| f.name.as_ptr() as usize - base);
    let fields_end = n.saturating_sub(2).max(fields_start);
    let block = input.get(fields_start..fields_end).unwrap_or_default();
    let offset = |s: &[u8]| (s.as_ptr() as usize).wrapping_sub(base + fields_start);
    head.fields.set_lines(
        block,
        res.headers.iter().map(|f| {
            let name = offset(f.name.as_bytes());
            let value = offset(f.value);
            FieldOffsets {
                name,
                name_end: name + f.name.len(),
                value,
                end: value + f.value.len(),
            }
        }),
    );
    if !crlf_only || head.fields.len() != res.headers.len() {
        // A slice that is not where the offsets say (never seen; httparse hands out
        // slices of its input for fields): copy field by field instead.
        head.fields.clear();
        for f in res.headers.iter() {
            head.fields.append(f.name.as_bytes(), f.value);
        }
    }
    for f in res.headers.iter() {
        let (name, value) = (f.name.as_bytes(), f.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            let len = parse_length(value).ok_or(InvalidResponse)?;
            if info.content_length.is_some_and(|l| l != len) {
                return Err(InvalidResponse);
            }
            info.content_length = Some(len);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only `chunked` alone is relayed: another coding (gzip, ...) would reach the
            // client undeclared once the hop-by-hop field is rewritten.
            if info.chunked || !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(InvalidResponse);
            }
            info.chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection")
            && value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        {
            info.close = true;
        }
    }
    // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and a message with both
    // must not be trusted to keep the connection in sync.
    if info.chunked && info.content_length.take().is_some() {
        info.close = true;
    }
    Ok(Some(info))
}

/// A `Content-Length` value: digits only, at most 19 of them.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(input: &[u8]) -> Result<Option<(ResponseHead, ResponseInfo)>, InvalidResponse> {
        let mut head = ResponseHead::default();
        Ok(parse(input, &mut head)?.map(|i| (head, i)))
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let (h, i) = parse_one(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(
            ResponseFraming::of(&i, h.status(), false),
            ResponseFraming::Length(5)
        ));
        assert!(matches!(
            ResponseFraming::of(&i, h.status(), true),
            ResponseFraming::None
        ));
        let (h, i) = parse_one(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(matches!(
            ResponseFraming::of(&i, h.status(), false),
            ResponseFraming::Chunked(_)
        ));
        assert!(i.close, "both framings: never reuse the connection");
        let (h, i) = parse_one(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(
            ResponseFraming::of(&i, h.status(), false),
            ResponseFraming::None
        ));
        let (h, i) = parse_one(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert!(matches!(
            ResponseFraming::of(&i, h.status(), false),
            ResponseFraming::UntilClose
        ));
        assert!(i.close);
        assert!(parse_one(b"HTTP/1.1 200 OK\r\ncontent").unwrap().is_none());
    }

    #[test]
    fn reason_phrase_with_obs_text_does_not_panic() {
        // Found by the response_head fuzzer: httparse replaces a non-UTF-8 reason by a
        // static "", whose address is outside the input.
        let input = b"HTTP/1.0 101 Switching Protoco\xff\xff\r\nupgrade: x\r\n\r\n";
        let (h, _) = parse_one(input).unwrap().unwrap();
        assert_eq!(h.reason(), b"Switching Protoco\xff\xff");
        assert_eq!(h.fields.get(b"upgrade"), Some(&b"x"[..]));
        let (h, _) = parse_one(b"HTTP/1.1 200 \r\n\r\n").unwrap().unwrap();
        assert!(h.reason().is_empty());
    }

    /// Encodes a parsed head the way the proxy relays it.
    fn relayed(input: &[u8]) -> Vec<u8> {
        let (head, _) = parse_one(input).unwrap().unwrap();
        let mut out = Vec::new();
        crate::h1::encode::response_head(&mut out, &head, crate::message::BodyFraming::Length(5));
        out
    }

    #[test]
    fn regression_review_a_bare_lf_head_is_relayed_with_crlf_lines() {
        // httparse accepts a bare LF as the final empty line: copying the field block whole
        // glued the last field to the framing field that follows it.
        for input in [
            &b"HTTP/1.1 200 OK\r\nX-A: 1\n\n"[..],
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\n",
            b"HTTP/1.1 200 OK\nX-A: 1\nX-B: 2\r\n\r\n",
        ] {
            let out = relayed(input);
            let text = String::from_utf8_lossy(&out).into_owned();
            assert!(text.contains("X-A: 1\r\n"), "{input:?}: {text:?}");
            assert!(
                text.ends_with("\r\ncontent-length: 5\r\n"),
                "{input:?}: {text:?}"
            );
            assert!(
                !out.windows(2)
                    .enumerate()
                    .any(|(i, w)| w[1] == b'\n' && (i == 0 || w[0] != b'\r')),
                "a bare LF left: {text:?}"
            );
        }
        // A CRLF head is relayed as it came (one copy), odd spacing included.
        let out = relayed(b"HTTP/1.1 200 OK\r\nX-A:1\r\nX-B:  two \r\n\r\n");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nX-A:1\r\nX-B:  two \r\ncontent-length: 5\r\n"
        );
    }

    #[test]
    fn bad_heads_are_invalid() {
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 700 Odd\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(parse_one(bad).err(), Some(InvalidResponse), "{bad:?}");
        }
    }
}
