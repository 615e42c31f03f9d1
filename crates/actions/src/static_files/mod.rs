//! The static-file action (SPEC §6): safe path resolution, directory indexes and redirects,
//! SPA fallback, validators and conditional requests, ranges, content-coding negotiation
//! with precompressed siblings or on-the-fly compression, and `sendfile` for large files.
//!
//! A request goes: method check (GET and HEAD only) → [`path::relative`] (decode, refuse
//! tricks) → `cache::Cache::lookup` (open beneath the root, or a cached entry still
//! fresh) → directory handling or SPA fallback → representation choice
//! (`Accept-Encoding`) → `If-None-Match` / `If-Modified-Since` → `Range` / `If-Range` → the
//! head, built into the connection's buffer, and the body: from memory for small files
//! (copied, or written in place with `writev`), with `sendfile` otherwise.
//!
//! Decisions a user of nginx might not expect are in `docs/STATIC.md`: dotfiles are hidden
//! (404) except `.well-known`; ranges are served from the identity representation only; a
//! `Range` with more than 16 parts or overlapping parts larger than the file is ignored.

pub mod encoding;
pub mod manifest;
pub mod mime;

mod cache;
mod listing;
pub mod path;
pub mod range;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anygate_http::server::{FileBody, ResponseBody, push_decimal};
use anygate_http::{ErrorKind, Exchange, Request, date};
use anygate_obs::metrics::static_kind;

use self::cache::{CacheKind, Found, Miss, Policy, Variant};
use self::encoding::Accept;
use self::manifest::Manifest;
use self::range::Ranges;

/// What the static action needs from the configuration.
#[derive(Debug, Clone)]
pub struct StaticOptions {
    /// Index file names tried for a directory, in order.
    pub index: Vec<String>,
    /// SPA fallback on.
    pub spa: bool,
    /// Directory listings on.
    pub listing: bool,
    /// `Cache-Control` for HTML, fingerprinted assets, the rest.
    pub cache_html: String,
    /// See [`StaticOptions::cache_html`].
    pub cache_fingerprinted: String,
    /// See [`StaticOptions::cache_html`].
    pub cache_default: String,
    /// On-the-fly compression.
    pub compress: bool,
    /// Smallest file compressed on the fly.
    pub compress_min: u64,
    /// Largest file kept in memory.
    pub memory_file_max: u64,
    /// The memory cache's bound, per worker.
    pub memory_total_max: u64,
    /// How long metadata is trusted.
    pub revalidate: Duration,
}

/// A static rule: a root directory and its options.
#[derive(Debug)]
pub struct Static {
    root: PathBuf,
    /// `root` as bytes followed by a NUL: the prefix of this rule's cache keys.
    key_prefix: Box<[u8]>,
    options: StaticOptions,
    label: Box<str>,
    warning: Option<String>,
}

impl Static {
    /// A rule serving `root` (`label` names it in error bodies). A manifest that cannot be
    /// read is ignored, and [`Static::warning`] says why. (Workers read the manifest
    /// themselves, through the root's descriptor, and again when it changes.)
    pub fn new(root: &Path, options: StaticOptions, label: &str) -> Self {
        let warning = Manifest::load(root)
            .err()
            .map(|e| format!("{e}; serving without it"));
        let mut key_prefix = root.as_os_str().as_encoded_bytes().to_vec();
        key_prefix.push(0);
        Self {
            root: root.to_path_buf(),
            key_prefix: key_prefix.into(),
            options,
            label: label.into(),
            warning,
        }
    }

    /// A problem found when loading (an unreadable manifest).
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            root: &self.root,
            key_prefix: &self.key_prefix,
            revalidate: self.options.revalidate,
            memory_file_max: self.options.memory_file_max,
            memory_total_max: self.options.memory_total_max,
        }
    }

    /// Answers a request. `path` is the normalised request path, `rest` the part after the
    /// rule's prefix (the splat; `None` for an exact or `:param` rule, which serves the
    /// root's index), `buf` a buffer kept by the connection.
    pub fn respond(
        &self,
        req: &Request<'_>,
        path: &[u8],
        rest: Option<&[u8]>,
        res: &mut Exchange<'_>,
        buf: &mut Vec<u8>,
    ) {
        let exact = rest.is_none();
        let rest = rest.unwrap_or_default();
        let method = req.method();
        if method != b"GET" && method != b"HEAD" {
            return res.error_with(
                ErrorKind::MethodNotAllowed,
                Some(&self.label),
                &[(b"allow", b"GET, HEAD")],
            );
        }
        let policy = self.policy();
        cache::with(|c| {
            let mut key = std::mem::take(&mut c.key);
            key.clear();
            key.extend_from_slice(&self.key_prefix);
            let rel_at = key.len();
            let outcome = match path::relative(rest, &mut key) {
                Err(path::Refusal::Forbidden) => Err(Miss::Escape),
                Err(path::Refusal::Hidden) => Err(Miss::NotFound),
                Ok(()) => c.lookup(&key, rel_at, &policy),
            };
            match outcome {
                Ok(Found::File) => self.serve(c, &key, req, res, buf, false),
                Ok(Found::Dir) => {
                    // An exact rule names the directory itself: no slash redirect.
                    let slash = exact || path.ends_with(b"/");
                    let dir = Dir {
                        rel_at,
                        slash,
                        exact,
                        path,
                    };
                    self.directory(c, &mut key, dir, req, res, buf);
                }
                Err(Miss::NotFound) => {
                    let rel = &key[rel_at..];
                    if self.options.spa && mime::extension(rel).is_none() {
                        self.fallback(c, &mut key, rel_at, req, res, buf);
                    } else {
                        res.error(ErrorKind::FileNotFound, Some(&self.label));
                    }
                }
                Err(Miss::Escape) => res.error(ErrorKind::Forbidden, Some(&self.label)),
                Err(Miss::Error) => res.error(ErrorKind::FileError, Some(&self.label)),
            }
            c.key = key;
        });
    }

    /// A directory: redirect to the slash form, or its index, or a listing (prefix rules
    /// only: an exact rule's path has no room for the entries' links), or 404.
    fn directory(
        &self,
        c: &mut cache::Cache,
        key: &mut Vec<u8>,
        Dir {
            rel_at,
            slash,
            exact,
            path,
        }: Dir<'_>,
        req: &Request<'_>,
        res: &mut Exchange<'_>,
        buf: &mut Vec<u8>,
    ) {
        if !slash {
            buf.clear();
            buf.extend_from_slice(path);
            buf.push(b'/');
            if let Some(q) = req.query() {
                buf.push(b'?');
                buf.extend_from_slice(q);
            }
            res.respond(301, "Moved Permanently")
                .fields
                .append(b"location", buf);
            return res.send(ResponseBody::Empty);
        }
        let dir_len = key.len();
        for name in &self.options.index {
            key.truncate(dir_len);
            if key.len() > rel_at {
                key.push(b'/');
            }
            key.extend_from_slice(name.as_bytes());
            if let Ok(Found::File) = c.lookup(key, rel_at, &self.policy()) {
                return self.serve(c, key, req, res, buf, false);
            }
        }
        key.truncate(dir_len);
        if self.options.listing && !exact {
            return match c.open_dir(&key[rel_at..], &self.policy()) {
                Some(dir) => {
                    res.ctx_mut().static_kinds |= static_kind::LISTING;
                    listing::respond(&dir, path, res, buf);
                }
                None => res.error(ErrorKind::FileError, Some(&self.label)),
            };
        }
        res.error(ErrorKind::FileNotFound, Some(&self.label));
    }

    /// SPA fallback: the root's index, for an unknown path without an extension.
    fn fallback(
        &self,
        c: &mut cache::Cache,
        key: &mut Vec<u8>,
        rel_at: usize,
        req: &Request<'_>,
        res: &mut Exchange<'_>,
        buf: &mut Vec<u8>,
    ) {
        for name in &self.options.index {
            key.truncate(rel_at);
            key.extend_from_slice(name.as_bytes());
            if let Ok(Found::File) = c.lookup(key, rel_at, &self.policy()) {
                return self.serve(c, key, req, res, buf, true);
            }
        }
        res.error(ErrorKind::FileNotFound, Some(&self.label));
    }

    /// The content coding to send `key` in: one the client accepts (`Accept-Encoding`) and
    /// the file has (a precompressed sibling, or compressed now when allowed); never for a
    /// range request. `None` (outer) when the file's entry is gone.
    #[allow(
        clippy::option_option,
        reason = "outer: the entry exists; inner: a coding"
    )]
    fn choose_encoding(
        &self,
        c: &mut cache::Cache,
        key: &[u8],
        req: &Request<'_>,
        ranged: bool,
    ) -> Option<Option<encoding::Encoding>> {
        let info = c.file(key)?;
        let mut encoding = None;
        if info.compressible && !ranged {
            let accept = Accept::parse(
                req.headers()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(b"accept-encoding"))
                    .map(|(_, v)| v),
            );
            if accept.any() {
                let compress = self.options.compress
                    && info.data.is_some()
                    && info.len >= self.options.compress_min;
                let usable = |v: &Variant| match v {
                    Variant::OnDisk { .. } | Variant::InMemory { .. } => true,
                    Variant::Absent => compress,
                    Variant::NotSmaller => false,
                };
                encoding = accept.choose(|e| usable(&info.variants[e.index()]));
                if let Some(e) = encoding
                    && matches!(info.variants[e.index()], Variant::Absent)
                {
                    c.compress(key, e, &self.policy());
                }
            }
        }
        Some(encoding)
    }

    /// Serves the file under `key`.
    fn serve(
        &self,
        c: &mut cache::Cache,
        key: &[u8],
        req: &Request<'_>,
        res: &mut Exchange<'_>,
        buf: &mut Vec<u8>,
        fallback: bool,
    ) {
        let mut kinds = if c.reused {
            static_kind::HIT
        } else {
            static_kind::MISS
        };
        if fallback {
            kinds |= static_kind::SPA_FALLBACK;
        }
        let range_header = if req.method() == b"GET" {
            req.header(b"range")
        } else {
            None
        };
        // The representation: a coding the client accepts, for the whole file only.
        let Some(mut encoding) = self.choose_encoding(c, key, req, range_header.is_some()) else {
            return res.error(ErrorKind::FileError, Some(&self.label));
        };
        let Some(info) = c.file(key) else {
            return res.error(ErrorKind::FileError, Some(&self.label));
        };
        // What is sent: its ETag, its length, and where its bytes are.
        let (etag, len, source) = match encoding.map(|e| &info.variants[e.index()]) {
            Some(Variant::OnDisk {
                file,
                len,
                etag,
                data,
            }) => {
                kinds |= static_kind::PRECOMPRESSED;
                (&**etag, *len, Source::of(data.as_ref(), file.as_ref()))
            }
            Some(Variant::InMemory { data, etag }) => {
                kinds |= static_kind::COMPRESSED;
                (&**etag, data.len() as u64, Some(Source::Memory(data)))
            }
            _ => {
                encoding = None;
                let source = Source::of(info.data.as_ref(), info.file.as_ref());
                (&*info.etag, info.len, source)
            }
        };
        let Some(source) = source else {
            return res.error(ErrorKind::FileError, Some(&self.label));
        };
        let ranges = match range_header {
            Some(h) if if_range_holds(req, etag, info.mtime) => range::parse(h, len),
            _ => Ranges::Whole,
        };
        let not_modified = not_modified(req, etag, info.mtime);
        if not_modified {
            kinds |= static_kind::NOT_MODIFIED;
        } else if matches!(ranges, Ranges::Parts(_)) {
            kinds |= static_kind::RANGE;
        }
        res.ctx_mut().static_kinds |= kinds;
        let cache_control = match info.kind {
            _ if fallback => &self.options.cache_html,
            CacheKind::Html => &self.options.cache_html,
            CacheKind::Fingerprinted => &self.options.cache_fingerprinted,
            CacheKind::Other => &self.options.cache_default,
        };
        // The fields every response of this representation carries.
        let head = res.respond(200, "OK");
        head.fields.append(b"etag", etag.as_bytes());
        head.fields.append(b"last-modified", &info.last_modified);
        if !cache_control.is_empty() {
            head.fields
                .append(b"cache-control", cache_control.as_bytes());
        }
        if info.compressible {
            head.fields.append(b"vary", b"accept-encoding");
        }
        if not_modified {
            head.set_status(304, "Not Modified");
            return res.send(ResponseBody::Empty);
        }
        head.fields.append(b"accept-ranges", b"bytes");
        if let Some(e) = encoding {
            head.fields
                .append(b"content-encoding", e.token().as_bytes());
        }
        let content_type: &str = &info.content_type;
        match ranges {
            Ranges::Whole => {
                head.fields.append(b"content-type", content_type.as_bytes());
                match source {
                    Source::Memory(d) => res.send(ResponseBody::Shared(d, 0..d.len())),
                    Source::Disk(f) => {
                        res.send(ResponseBody::File(FileBody::range(f.clone(), 0, len)));
                    }
                }
            }
            Ranges::Unsatisfiable => {
                buf.clear();
                buf.extend_from_slice(b"bytes */");
                push_u64(buf, len);
                res.error_with(
                    ErrorKind::RangeNotSatisfiable,
                    Some(&self.label),
                    &[(b"content-range", buf)],
                );
            }
            Ranges::Parts(parts) if parts.len() == 1 => {
                let (a, b) = parts[0];
                head.set_status(206, "Partial Content");
                head.fields.append(b"content-type", content_type.as_bytes());
                buf.clear();
                content_range(buf, a, b, len);
                head.fields.append(b"content-range", buf);
                match source {
                    Source::Memory(d) => {
                        res.send(ResponseBody::Shared(d, a as usize..b as usize + 1));
                    }
                    Source::Disk(f) => {
                        res.send(ResponseBody::File(FileBody::range(f.clone(), a, b - a + 1)));
                    }
                }
            }
            Ranges::Parts(parts) => {
                head.set_status(206, "Partial Content");
                send_multipart(res, &parts, source, content_type, len, buf);
            }
        }
    }
}

/// A directory found by a lookup: where its relative path starts in the key, whether the
/// request path ends with a slash (or needs none), whether the rule is exact, and the
/// normalised request path.
#[derive(Clone, Copy)]
struct Dir<'p> {
    rel_at: usize,
    slash: bool,
    exact: bool,
    path: &'p [u8],
}

/// Where the bytes of a representation are.
#[derive(Clone, Copy)]
enum Source<'a> {
    Memory(&'a Arc<[u8]>),
    Disk(&'a Arc<std::fs::File>),
}

impl<'a> Source<'a> {
    fn of(data: Option<&'a Arc<[u8]>>, file: Option<&'a Arc<std::fs::File>>) -> Option<Self> {
        data.map(Source::Memory).or(file.map(Source::Disk))
    }
}

/// `multipart/byteranges` (RFC 9110 §14.6): each part with its own type and range, from
/// the file (sendfile) or from memory.
fn send_multipart(
    res: &mut Exchange<'_>,
    parts: &[(u64, u64)],
    source: Source<'_>,
    content_type: &str,
    len: u64,
    buf: &mut Vec<u8>,
) {
    let id = anygate_http::request_id::generate();
    let boundary = &id[..20];
    let mut memory = Vec::new();
    let mut disk = match source {
        Source::Disk(f) => Some(FileBody::parts(f.clone())),
        Source::Memory(_) => None,
    };
    for (i, &(a, b)) in parts.iter().enumerate() {
        let mut before = Vec::with_capacity(128);
        if i > 0 {
            before.extend_from_slice(b"\r\n");
        }
        before.extend_from_slice(b"--");
        before.extend_from_slice(boundary);
        before.extend_from_slice(b"\r\ncontent-type: ");
        before.extend_from_slice(content_type.as_bytes());
        before.extend_from_slice(b"\r\ncontent-range: ");
        content_range(&mut before, a, b, len);
        before.extend_from_slice(b"\r\n\r\n");
        match (&mut disk, source) {
            (Some(body), _) => body.push(before, a, b - a + 1),
            (None, Source::Memory(d)) => {
                memory.extend_from_slice(&before);
                memory.extend_from_slice(&d[a as usize..=b as usize]);
            }
            (None, Source::Disk(_)) => {}
        }
    }
    let mut trailer = Vec::with_capacity(32);
    trailer.extend_from_slice(b"\r\n--");
    trailer.extend_from_slice(boundary);
    trailer.extend_from_slice(b"--\r\n");
    buf.clear();
    buf.extend_from_slice(b"multipart/byteranges; boundary=");
    buf.extend_from_slice(boundary);
    res.head().fields.append(b"content-type", buf);
    if let Some(mut body) = disk {
        body.set_trailer(trailer);
        res.send(ResponseBody::File(body));
    } else {
        memory.extend_from_slice(&trailer);
        res.send(ResponseBody::Bytes(&memory));
    }
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    push_decimal(out, usize::try_from(n).unwrap_or(usize::MAX));
}

/// `bytes A-B/LEN`.
fn content_range(out: &mut Vec<u8>, a: u64, b: u64, len: u64) {
    out.extend_from_slice(b"bytes ");
    push_u64(out, a);
    out.push(b'-');
    push_u64(out, b);
    out.push(b'/');
    push_u64(out, len);
}

/// RFC 9110 §13.2.2: `If-None-Match` (weak comparison) decides when present; otherwise
/// `If-Modified-Since` (second resolution).
fn not_modified(req: &Request<'_>, etag: &str, mtime: u64) -> bool {
    if let Some(inm) = req.header(b"if-none-match") {
        let ours = opaque(etag.as_bytes());
        return inm.split(|&b| b == b',').any(|t| {
            let t = t.trim_ascii();
            t == b"*" || opaque(t) == ours
        });
    }
    req.header(b"if-modified-since")
        .and_then(date::parse)
        .is_some_and(|since| mtime <= since)
}

/// `If-Range`: an entity tag that matches strongly, or the exact `Last-Modified` date.
/// Absent, it holds.
fn if_range_holds(req: &Request<'_>, etag: &str, mtime: u64) -> bool {
    let Some(v) = req.header(b"if-range") else {
        return true;
    };
    let v = v.trim_ascii();
    if v.starts_with(b"\"") {
        return v == etag.as_bytes();
    }
    if v.starts_with(b"W/") {
        return false;
    }
    date::parse(v) == Some(mtime)
}

/// An entity tag without its weakness prefix.
fn opaque(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}
