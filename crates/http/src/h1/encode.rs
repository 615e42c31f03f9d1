//! HTTP/1.1 response heads as bytes: the only place that writes `HTTP/1.1`.

use crate::message::{BodyFraming, ResponseHead, decimal};

/// Appends the status line, the fields of `head` and the framing field of `framing`, each
/// line ending in CRLF (the connection's fields and the empty line follow: see
/// [`connection_fields`]).
pub fn response_head(out: &mut Vec<u8>, head: &ResponseHead, framing: BodyFraming) {
    status_line(out, head.status(), head.reason());
    for lines in head.fields.line_runs() {
        out.extend_from_slice(lines);
    }
    match framing {
        BodyFraming::Unframed => {}
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
}

/// Appends `HTTP/1.1 STATUS REASON` and CRLF.
pub fn status_line(out: &mut Vec<u8>, status: u16, reason: &[u8]) {
    if (100..1000).contains(&status) {
        let digits = [
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
            b' ',
        ];
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(&digits);
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        push_u64(out, u64::from(status));
        out.push(b' ');
    }
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// How the connection goes on after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 keep-alive (the default: no field).
    KeepAlive,
    /// An HTTP/1.0 client that asked for keep-alive.
    KeepAlive10,
    /// The connection closes after this response.
    Close,
}

/// Appends the fields every response carries (`Date`, `X-Request-Id`, `Connection` when it
/// says something) and the empty line that ends the head.
pub fn connection_fields(out: &mut Vec<u8>, date: &[u8], request_id: &[u8], p: Persistence) {
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\nx-request-id: ");
    out.extend_from_slice(request_id);
    out.extend_from_slice(b"\r\n");
    match p {
        Persistence::KeepAlive => {}
        Persistence::KeepAlive10 => out.extend_from_slice(b"connection: keep-alive\r\n"),
        Persistence::Close => out.extend_from_slice(b"connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `METHOD `, the target written by `target`, and ` HTTP/1.1` with its CRLF: the
/// request line sent to an upstream.
pub fn request_line(out: &mut Vec<u8>, method: &[u8], target: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(method);
    out.push(b' ');
    target(out);
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// Appends one field line.
pub fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The interim response that lets a client send its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Appends `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(n, &mut digits));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_encode_in_order_with_their_framing() {
        let mut head = ResponseHead::new(206, "Partial Content");
        head.fields.append(b"content-type", b"text/plain");
        head.fields.append(b"content-range", b"bytes 0-1/5");
        let mut out = Vec::new();
        response_head(&mut out, &head, BodyFraming::Length(2));
        connection_fields(&mut out, b"D", b"ID", Persistence::Close);
        assert_eq!(
            out,
            b"HTTP/1.1 206 Partial Content\r\ncontent-type: text/plain\r\n\
              content-range: bytes 0-1/5\r\ncontent-length: 2\r\ndate: D\r\n\
              x-request-id: ID\r\nconnection: close\r\n\r\n"
        );
        out.clear();
        head.reset(101, "Switching Protocols");
        response_head(&mut out, &head, BodyFraming::Unframed);
        connection_fields(&mut out, b"D", b"ID", Persistence::KeepAlive);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\ndate: D\r\nx-request-id: ID\r\n\r\n"
        );
        out.clear();
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, b"18446744073709551615");
    }
}
