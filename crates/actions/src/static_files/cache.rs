//! The per-worker cache of what the static action knows about files: an open descriptor,
//! metadata, validators, precompressed siblings, and for small files the content itself.
//!
//! Design:
//! - One cache per worker thread (`thread_local!`): lookups take no lock and share nothing.
//!   Each worker may hold its own copy of a hot file; the memory bound is per worker.
//! - An entry is trusted for `static.revalidate` (1 s by default). After that the next
//!   request opens the path again and compares device, inode, size and modification time:
//!   a file replaced on disk (written in place or renamed over) is served fresh within that
//!   time, as SPEC §6 asks.
//! - Bounded: at most [`MAX_ENTRIES`] entries (each holds a descriptor) and
//!   `static.memory_total_max` bytes of content; past either, entries are evicted in hash
//!   order (effectively at random), which is cheap and good enough for a hot set that fits.
//! - Root directories are opened once per revalidation period too, so a root that is a
//!   symlink switched by a deploy (`dist -> releases/v2`) is followed within that time.
//!
//! Invariant: every file reached through the cache was opened with
//! `anygate_runtime::fs::open_beneath` from its root's descriptor.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anygate_http::date;

use super::encoding::Encoding;
use super::manifest::Manifest;
use super::mime;

/// Most entries per worker (each keeps a file descriptor open).
pub const MAX_ENTRIES: usize = 4096;

/// What one lookup found.
#[derive(Debug)]
pub enum Found {
    /// A regular file (its entry is in the cache under the key).
    File,
    /// A directory.
    Dir,
}

/// Why a lookup found nothing to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No such file (or not a regular file or directory).
    NotFound,
    /// Resolution tried to leave the root (a symlink pointing outside): 403.
    Escape,
    /// Any other failure (permissions, I/O).
    Error,
}

/// A precompressed or compressed form of a file.
#[derive(Debug)]
pub enum Variant {
    /// Not looked for yet (on-the-fly compression not tried).
    Absent,
    /// Compression was tried and did not make it smaller.
    NotSmaller,
    /// A sibling on disk (`app.js.br`), with its content when small.
    OnDisk {
        file: Arc<File>,
        len: u64,
        etag: Box<str>,
        data: Option<Arc<[u8]>>,
    },
    /// Compressed in memory, on the fly.
    InMemory { data: Arc<[u8]>, etag: Box<str> },
}

/// A regular file, as last seen.
#[derive(Debug)]
pub struct FileInfo {
    pub file: Arc<File>,
    identity: (u64, u64, u64, i64, i64),
    pub len: u64,
    pub mtime: u64,
    pub last_modified: [u8; date::LEN],
    pub content_type: Box<str>,
    pub compressible: bool,
    pub etag: Box<str>,
    pub data: Option<Arc<[u8]>>,
    pub variants: [Variant; 3],
}

#[derive(Debug)]
enum Kind {
    File(Box<FileInfo>),
    Dir,
}

#[derive(Debug)]
struct Entry {
    checked: Instant,
    kind: Kind,
}

/// What a lookup needs to know about the rule.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub root: &'a Path,
    pub manifest: Option<&'a Manifest>,
    pub revalidate: Duration,
    pub memory_file_max: u64,
    pub memory_total_max: u64,
}

/// The worker's cache.
#[derive(Debug, Default)]
pub struct Cache {
    files: HashMap<Box<[u8]>, Entry>,
    roots: HashMap<Box<Path>, (Arc<File>, Instant)>,
    bytes: u64,
    /// Scratch for building keys.
    pub key: Vec<u8>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Runs `f` with this worker's cache.
pub fn with<R>(f: impl FnOnce(&mut Cache) -> R) -> R {
    CACHE.with(|c| f(&mut c.borrow_mut()))
}

impl Cache {
    /// Finds `key` (`root`, NUL, relative path), revalidating or (re)building its entry.
    pub fn lookup(&mut self, key: &[u8], rel_at: usize, p: &Policy<'_>) -> Result<Found, Miss> {
        let now = anygate_runtime::time::now();
        if let Some(e) = self.files.get(key)
            && now.saturating_duration_since(e.checked) < p.revalidate
        {
            return Ok(match e.kind {
                Kind::File(_) => Found::File,
                Kind::Dir => Found::Dir,
            });
        }
        let rel = &key[rel_at..];
        let root = self.root(p.root, now, p.revalidate).ok_or(Miss::Error)?;
        let opened = if rel.is_empty() {
            File::open(p.root)
        } else {
            anygate_runtime::fs::open_beneath(&root, rel)
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                self.remove(key);
                return Err(classify(&e));
            }
        };
        let Ok(meta) = file.metadata() else {
            self.remove(key);
            return Err(Miss::Error);
        };
        if meta.is_dir() {
            self.insert(
                key,
                Entry {
                    checked: now,
                    kind: Kind::Dir,
                },
                p,
            );
            return Ok(Found::Dir);
        }
        if !meta.is_file() {
            self.remove(key);
            return Err(Miss::NotFound);
        }
        let identity = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        if let Some(e) = self.files.get_mut(key)
            && let Kind::File(info) = &e.kind
            && info.identity == identity
        {
            e.checked = now;
            return Ok(Found::File);
        }
        self.remove(key);
        let info = build(&root, rel, file, &meta, identity, p);
        self.insert(
            key,
            Entry {
                checked: now,
                kind: Kind::File(Box::new(info)),
            },
            p,
        );
        Ok(Found::File)
    }

    /// The file entry under `key` (after a [`Cache::lookup`] that found a file).
    pub fn file(&mut self, key: &[u8]) -> Option<&mut FileInfo> {
        match &mut self.files.get_mut(key)?.kind {
            Kind::File(info) => Some(info),
            Kind::Dir => None,
        }
    }

    /// Compresses the file under `key` with `encoding` on the fly, once, if that makes it
    /// smaller and fits the memory bound.
    pub fn compress(&mut self, key: &[u8], encoding: Encoding, p: &Policy<'_>) {
        let Some(info) = self.file(key) else { return };
        let i = encoding.index();
        if !matches!(info.variants[i], Variant::Absent) {
            return;
        }
        let Some(data) = info.data.clone() else {
            return;
        };
        let out = encoding.compress(&data, false);
        if out.is_empty() || out.len() >= data.len() {
            info.variants[i] = Variant::NotSmaller;
            return;
        }
        let etag = derived_etag(&info.etag, encoding.token());
        let size = out.len() as u64;
        info.variants[i] = Variant::InMemory {
            data: out.into(),
            etag,
        };
        self.bytes += size;
        self.evict(p, key);
    }

    fn root(&mut self, root: &Path, now: Instant, ttl: Duration) -> Option<Arc<File>> {
        if let Some((f, at)) = self.roots.get(root)
            && now.saturating_duration_since(*at) < ttl
        {
            return Some(f.clone());
        }
        let f = Arc::new(File::open(root).ok()?);
        if self.roots.len() >= 1024 {
            self.roots.clear();
        }
        self.roots.insert(root.into(), (f.clone(), now));
        Some(f)
    }

    fn insert(&mut self, key: &[u8], entry: Entry, p: &Policy<'_>) {
        self.bytes += entry_bytes(&entry);
        self.files.insert(key.into(), entry);
        self.evict(p, key);
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.files.remove(key) {
            self.bytes = self.bytes.saturating_sub(entry_bytes(&e));
        }
    }

    /// Evicts entries other than `keep` until both bounds hold.
    fn evict(&mut self, p: &Policy<'_>, keep: &[u8]) {
        while self.files.len() > MAX_ENTRIES || self.bytes > p.memory_total_max {
            let Some(victim) = self.files.keys().find(|k| &***k != keep).cloned() else {
                break;
            };
            self.remove(&victim);
        }
        if self.bytes > p.memory_total_max
            && let Some(e) = self.files.get_mut(keep)
            && let Kind::File(info) = &mut e.kind
        {
            // The one entry left is too big for the bound by itself: keep its metadata only.
            self.bytes = self.bytes.saturating_sub(entry_bytes_info(info));
            info.data = None;
            for v in &mut info.variants {
                if let Variant::OnDisk { data, .. } = v {
                    *data = None;
                } else if let Variant::InMemory { .. } = v {
                    *v = Variant::NotSmaller;
                }
            }
        }
    }
}

fn entry_bytes(e: &Entry) -> u64 {
    match &e.kind {
        Kind::File(info) => entry_bytes_info(info),
        Kind::Dir => 0,
    }
}

fn entry_bytes_info(info: &FileInfo) -> u64 {
    let data = |d: &Option<Arc<[u8]>>| d.as_ref().map_or(0, |d| d.len() as u64);
    data(&info.data)
        + info
            .variants
            .iter()
            .map(|v| match v {
                Variant::OnDisk { data: d, .. } => data(d),
                Variant::InMemory { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum::<u64>()
}

fn classify(e: &io::Error) -> Miss {
    match e.kind() {
        // RESOLVE_BENEATH refuses with EXDEV; a magic link gives ELOOP (40).
        io::ErrorKind::CrossesDevices | io::ErrorKind::PermissionDenied => Miss::Escape,
        _ if e.raw_os_error() == Some(40) => Miss::Escape,
        io::ErrorKind::NotFound
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::InvalidFilename
        | io::ErrorKind::InvalidInput => Miss::NotFound,
        _ => Miss::Error,
    }
}

/// `"…-br"` from `"…"`.
fn derived_etag(etag: &str, token: &str) -> Box<str> {
    let core = etag.strip_suffix('"').unwrap_or(etag);
    format!("{core}-{token}\"").into()
}

/// Reads a small file whole; `None` if it is larger than `max` or changed size meanwhile.
fn read_small(file: &File, len: u64, max: u64) -> Option<Arc<[u8]>> {
    if len > max {
        return None;
    }
    let mut data = Vec::with_capacity(usize::try_from(len).ok()?);
    let reader = file;
    reader.take(len + 1).read_to_end(&mut data).ok()?;
    (data.len() as u64 == len).then(|| data.into())
}

fn build(
    root: &File,
    rel: &[u8],
    file: File,
    meta: &std::fs::Metadata,
    identity: (u64, u64, u64, i64, i64),
    p: &Policy<'_>,
) -> FileInfo {
    let len = meta.len();
    let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
    let mtime_ns = u128::from(mtime) * 1_000_000_000 + u128::from(meta.mtime_nsec().unsigned_abs());
    let listed = p
        .manifest
        .and_then(|m| m.get(rel, len, meta.modified().ok()));
    let content_type: Box<str> = match listed {
        Some(e) => e.content_type.as_str().into(),
        None => mime::content_type(rel).into(),
    };
    let etag: Box<str> = match listed {
        Some(e) => e.etag.as_str().into(),
        None => format!("\"{mtime_ns:x}-{len:x}\"").into(),
    };
    let compressible = mime::compressible(&content_type);
    let data = read_small(&file, len, p.memory_file_max);
    let mut variants = [Variant::Absent, Variant::Absent, Variant::Absent];
    if compressible {
        let mut name = rel.to_vec();
        for e in Encoding::ALL {
            name.truncate(rel.len());
            name.extend_from_slice(e.suffix().as_bytes());
            let Ok(sib) = anygate_runtime::fs::open_beneath(root, &name) else {
                continue;
            };
            let Ok(smeta) = sib.metadata() else { continue };
            // A sibling older than the file is stale: it would serve old content.
            if !smeta.is_file() || smeta.modified().ok() < meta.modified().ok() && listed.is_none()
            {
                continue;
            }
            let slen = smeta.len();
            let etag = match listed.and_then(|l| l.encodings[e.index()].as_ref()) {
                Some((size, etag)) if *size == slen => etag.as_str().into(),
                _ => derived_etag(
                    &format!(
                        "\"{:x}-{slen:x}\"",
                        u128::from(u64::try_from(smeta.mtime()).unwrap_or(0)) * 1_000_000_000
                            + u128::from(smeta.mtime_nsec().unsigned_abs())
                    ),
                    e.token(),
                ),
            };
            let sdata = read_small(&sib, slen, p.memory_file_max);
            variants[e.index()] = Variant::OnDisk {
                file: Arc::new(sib),
                len: slen,
                etag,
                data: sdata,
            };
        }
    }
    FileInfo {
        file: Arc::new(file),
        identity,
        len,
        mtime,
        last_modified: date::format(mtime),
        content_type,
        compressible,
        etag,
        data,
        variants,
    }
}
