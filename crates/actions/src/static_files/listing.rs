//! `static.listing: true`: a plain HTML index of a directory. Hidden names (a leading dot)
//! are left out; names are HTML-escaped in text and percent-encoded in links, which are
//! absolute (so that they also work for an exact rule's path without a trailing slash).
//!
//! The directory is read through the descriptor opened beneath the root, never by path.

use std::fs::File;
use std::os::fd::AsRawFd;

use anygate_http::server::ResponseBody;
use anygate_http::{ErrorKind, Exchange};
use anygate_router::path::is_unreserved;

/// Most entries listed.
const MAX: usize = 10_000;

/// Answers with the listing of the open directory `dir`, whose request path is `path`.
pub fn respond(dir: &File, path: &[u8], res: &mut Exchange<'_>, buf: &mut Vec<u8>) {
    let Ok(read) = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) else {
        return res.error(ErrorKind::FileError, None);
    };
    let mut names: Vec<(Vec<u8>, bool)> = read
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_encoded_bytes();
            let is_dir = e.file_type().ok()?.is_dir();
            (!name.starts_with(b".")).then_some((name, is_dir))
        })
        .take(MAX)
        .collect();
    names.sort();
    buf.clear();
    buf.extend_from_slice(b"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Index of ");
    escape(buf, path);
    buf.extend_from_slice(b"</title></head>\n<body><h1>Index of ");
    escape(buf, path);
    buf.extend_from_slice(b"</h1>\n<ul>\n");
    let base = path.strip_suffix(b"/").unwrap_or(path);
    if !base.is_empty() {
        let parent = &base[..base.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)];
        buf.extend_from_slice(b"<li><a href=\"");
        escape(buf, parent);
        buf.extend_from_slice(b"\">../</a></li>\n");
    }
    for (name, is_dir) in &names {
        buf.extend_from_slice(b"<li><a href=\"");
        escape(buf, base);
        buf.push(b'/');
        encode(buf, name);
        if *is_dir {
            buf.push(b'/');
        }
        buf.extend_from_slice(b"\">");
        escape(buf, name);
        if *is_dir {
            buf.push(b'/');
        }
        buf.extend_from_slice(b"</a></li>\n");
    }
    buf.extend_from_slice(b"</ul>\n</body></html>\n");
    let head = res.respond(200, "OK");
    head.fields
        .append(b"content-type", b"text/html; charset=utf-8");
    head.fields.append(b"cache-control", b"no-cache");
    res.send(ResponseBody::Bytes(buf));
}

/// HTML text escaping; bytes that are not UTF-8 are shown as U+FFFD.
fn escape(out: &mut Vec<u8>, s: &[u8]) {
    for ch in String::from_utf8_lossy(s).chars() {
        match ch {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\'' => out.extend_from_slice(b"&#39;"),
            c => {
                let mut tmp = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if is_unreserved(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}
