//! The per-worker cache of what the static action knows about files: metadata, validators,
//! precompressed siblings, the content of small files, and a descriptor for the others.
//!
//! Design:
//! - One cache per worker thread (`thread_local!`): lookups take no lock and share nothing.
//!   Each worker may hold its own copy of a hot file; the bounds are per worker.
//! - An entry is trusted for `static.revalidate` (1 s by default). After that the next
//!   request opens the path again and compares device, inode, size and modification time
//!   of the file and of each precompressed sibling (one appearing or disappearing counts):
//!   a file replaced on disk (written in place or renamed over) is served fresh within that
//!   time, as SPEC §6 asks.
//! - Roots are reopened on the same schedule, so a root that is a symlink switched by a
//!   deploy (`dist -> releases/v2`) is followed. The pack-spa manifest belongs to the root:
//!   it is read through the root's descriptor, and when the root or the manifest changes,
//!   the manifest is read again and every entry of that root is dropped.
//! - Bounded: at most [`MAX_ENTRIES`] entries, [`MAX_FDS`] open descriptors (a file whose
//!   content is in memory keeps none), and `static.memory_total_max` bytes of content; past
//!   any of them, entries are evicted in hash order (effectively at random), which is cheap
//!   and good enough for a hot set that fits.
//!
//! Invariant: every file reached through the cache was opened with
//! `anygate_runtime::fs::open_beneath` from its root's descriptor.

use std::cell::RefCell;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anygate_http::date;
use anygate_runtime::fs::open_beneath;
use foldhash::HashMap;

use super::encoding::Encoding;
use super::manifest::{self, Manifest};
use super::mime;

/// Most entries per worker.
pub const MAX_ENTRIES: usize = 4096;
/// Most descriptors the cache keeps open per worker.
pub const MAX_FDS: usize = 1024;

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

/// Device, inode, size, modification time: what changes when a file is replaced.
type Identity = (u64, u64, u64, i64, i64);

fn identity(m: &Metadata) -> Identity {
    (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec())
}

/// A precompressed or compressed form of a file.
#[derive(Debug)]
pub enum Variant {
    /// Not looked for yet (on-the-fly compression not tried).
    Absent,
    /// Compression was tried and did not make it smaller.
    NotSmaller,
    /// A sibling on disk (`app.js.br`): its content when small, else its descriptor.
    OnDisk {
        file: Option<Arc<File>>,
        len: u64,
        etag: Box<str>,
        data: Option<Arc<[u8]>>,
    },
    /// Compressed in memory, on the fly.
    InMemory { data: Arc<[u8]>, etag: Box<str> },
}

/// Which `static.cache` value a file gets, decided when its entry is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// HTML.
    Html,
    /// A name carrying a content hash.
    Fingerprinted,
    /// Anything else.
    Other,
}

/// A regular file, as last seen.
#[derive(Debug)]
pub struct FileInfo {
    /// The descriptor, kept only when the content is not in memory.
    pub file: Option<Arc<File>>,
    identity: Identity,
    /// The siblings' identities when the entry was built (compressible files only).
    siblings: [Option<Identity>; 3],
    pub len: u64,
    pub mtime: u64,
    pub last_modified: [u8; date::LEN],
    pub content_type: Box<str>,
    pub kind: CacheKind,
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
    /// `root` as bytes and a NUL: the prefix of the root's keys.
    pub key_prefix: &'a [u8],
    pub revalidate: Duration,
    pub memory_file_max: u64,
    pub memory_total_max: u64,
}

/// A root directory, as last opened.
#[derive(Debug)]
struct Root {
    dir: Arc<File>,
    opened: Instant,
    identity: (u64, u64),
    manifest_identity: Option<Identity>,
    manifest: Option<Rc<Manifest>>,
}

/// The worker's cache.
#[derive(Debug, Default)]
pub struct Cache {
    /// Keyed by paths that exist under a root (misses are never kept), hashed with a
    /// seeded foldhash: SipHash cost a cached request three hashes of its key, about a
    /// twentieth of its instructions.
    files: HashMap<Box<[u8]>, Entry>,
    roots: HashMap<Box<Path>, Root>,
    bytes: u64,
    fds: usize,
    /// Scratch for building keys.
    pub key: Vec<u8>,
    /// Whether the last [`Cache::lookup`] that found a file reused its entry (fresh, or
    /// revalidated unchanged) rather than building it: a hit of the file cache.
    pub reused: bool,
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
        self.reused = true;
        if let Some(e) = self.files.get(key)
            && now.saturating_duration_since(e.checked) < p.revalidate
        {
            return Ok(match e.kind {
                Kind::File(_) => Found::File,
                Kind::Dir => Found::Dir,
            });
        }
        let (root, manifest) = self.root(p, now).ok_or(Miss::Error)?;
        let rel = &key[rel_at..];
        let file = match self.open(&root, rel) {
            Ok(f) => f,
            Err(e) => {
                let miss = classify(&e);
                // Gone or refused: forget it. Any other failure (out of descriptors, I/O)
                // says nothing about the file; the entry stays for the next try.
                if miss != Miss::Error {
                    self.remove(key);
                }
                return Err(miss);
            }
        };
        let Ok(meta) = file.metadata() else {
            self.remove(key);
            return Err(Miss::Error);
        };
        if meta.is_dir() {
            self.remove(key);
            let entry = Entry {
                checked: now,
                kind: Kind::Dir,
            };
            self.insert(key, entry, p);
            return Ok(Found::Dir);
        }
        if !meta.is_file() {
            self.remove(key);
            return Err(Miss::NotFound);
        }
        let id = identity(&meta);
        if let Some(e) = self.files.get_mut(key)
            && let Kind::File(info) = &e.kind
            && info.identity == id
            && (!info.compressible || siblings(&root, rel) == info.siblings)
        {
            e.checked = now;
            return Ok(Found::File);
        }
        self.remove(key);
        self.reused = false;
        let info = build(&root, rel, file, &meta, manifest.as_deref(), p);
        let entry = Entry {
            checked: now,
            kind: Kind::File(Box::new(info)),
        };
        self.insert(key, entry, p);
        Ok(Found::File)
    }

    /// Opens the directory `rel` of the rule's root (for a listing).
    pub fn open_dir(&mut self, rel: &[u8], p: &Policy<'_>) -> Option<File> {
        let now = anygate_runtime::time::now();
        let (root, _) = self.root(p, now)?;
        self.open(&root, rel).ok()
    }

    fn open(&self, root: &Arc<File>, rel: &[u8]) -> io::Result<File> {
        if rel.is_empty() {
            root.try_clone()
        } else {
            open_beneath(root, rel)
        }
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
        // Kept only if smaller, and if the entry would still fit the bound by itself.
        let (held, _) = info_cost(info);
        if out.is_empty() || out.len() >= data.len() || held + out.len() as u64 > p.memory_total_max
        {
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

    /// The root's descriptor and manifest, reopened once per revalidation period. When the
    /// root or its manifest changed, the manifest is read again and the root's entries go.
    fn root(&mut self, p: &Policy<'_>, now: Instant) -> Option<(Arc<File>, Option<Rc<Manifest>>)> {
        if let Some(r) = self.roots.get(p.root)
            && now.saturating_duration_since(r.opened) < p.revalidate
        {
            return Some((r.dir.clone(), r.manifest.clone()));
        }
        let dir = File::open(p.root).ok()?;
        let meta = dir.metadata().ok()?;
        let root_id = (meta.dev(), meta.ino());
        let manifest_file = open_beneath(&dir, manifest::FILE_NAME.as_bytes()).ok();
        let manifest_id = manifest_file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .filter(Metadata::is_file)
            .map(|m| identity(&m));
        let dir = Arc::new(dir);
        let previous = self.roots.remove(p.root);
        let manifest = match previous {
            Some(r) if r.identity == root_id && r.manifest_identity == manifest_id => r.manifest,
            changed => {
                if changed.is_some() {
                    self.purge(p.key_prefix);
                }
                manifest_id
                    .and(manifest_file.as_ref())
                    .and_then(|f| Manifest::read(f).ok())
                    .map(Rc::new)
            }
        };
        if self.roots.len() >= 1024 {
            self.roots.clear();
        }
        self.roots.insert(
            p.root.into(),
            Root {
                dir: dir.clone(),
                opened: now,
                identity: root_id,
                manifest_identity: manifest_id,
                manifest: manifest.clone(),
            },
        );
        Some((dir, manifest))
    }

    /// Drops every entry under a root.
    fn purge(&mut self, prefix: &[u8]) {
        let keys: Vec<Box<[u8]>> = self
            .files
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for k in keys {
            self.remove(&k);
        }
    }

    fn insert(&mut self, key: &[u8], entry: Entry, p: &Policy<'_>) {
        let (bytes, fds) = cost(&entry);
        self.bytes += bytes;
        self.fds += fds;
        self.files.insert(key.into(), entry);
        self.evict(p, key);
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.files.remove(key) {
            let (bytes, fds) = cost(&e);
            self.bytes = self.bytes.saturating_sub(bytes);
            self.fds = self.fds.saturating_sub(fds);
        }
    }

    /// Evicts entries other than `keep` until every bound holds.
    fn evict(&mut self, p: &Policy<'_>, keep: &[u8]) {
        while self.files.len() > MAX_ENTRIES
            || self.bytes > p.memory_total_max
            || self.fds > MAX_FDS
        {
            let Some(victim) = self.files.keys().find(|k| &***k != keep).cloned() else {
                break;
            };
            self.remove(&victim);
        }
    }
}

/// Bytes of content and descriptors an entry holds.
fn cost(e: &Entry) -> (u64, usize) {
    match &e.kind {
        Kind::File(info) => info_cost(info),
        Kind::Dir => (0, 0),
    }
}

fn info_cost(info: &FileInfo) -> (u64, usize) {
    let data = |d: &Option<Arc<[u8]>>| d.as_ref().map_or(0, |d| d.len() as u64);
    let mut bytes = data(&info.data);
    let mut fds = usize::from(info.file.is_some());
    for v in &info.variants {
        match v {
            Variant::OnDisk { data: d, file, .. } => {
                bytes += data(d);
                fds += usize::from(file.is_some());
            }
            Variant::InMemory { data, .. } => bytes += data.len() as u64,
            _ => {}
        }
    }
    (bytes, fds)
}

fn classify(e: &io::Error) -> Miss {
    match e.kind() {
        // RESOLVE_BENEATH refuses with EXDEV (the runtime maps a magic link's ELOOP to it).
        io::ErrorKind::CrossesDevices | io::ErrorKind::PermissionDenied => Miss::Escape,
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

/// A metadata ETag: modification time in nanoseconds and size.
fn metadata_etag(m: &Metadata) -> String {
    let ns = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
    format!("\"{:x}-{:x}\"", ns.max(0), m.len())
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

/// The precompressed siblings of `rel`: open, with their metadata.
fn open_siblings(root: &File, rel: &[u8]) -> [Option<(File, Metadata)>; 3] {
    let mut name = rel.to_vec();
    Encoding::ALL.map(|e| {
        name.truncate(rel.len());
        name.extend_from_slice(e.suffix().as_bytes());
        let f = open_beneath(root, &name).ok()?;
        let m = f.metadata().ok().filter(Metadata::is_file)?;
        Some((f, m))
    })
}

/// The siblings' identities (for revalidation).
fn siblings(root: &File, rel: &[u8]) -> [Option<Identity>; 3] {
    open_siblings(root, rel).map(|s| s.map(|(_, m)| identity(&m)))
}

fn build(
    root: &File,
    rel: &[u8],
    file: File,
    meta: &Metadata,
    manifest: Option<&Manifest>,
    p: &Policy<'_>,
) -> FileInfo {
    let len = meta.len();
    let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
    let listed = manifest.and_then(|m| m.get(rel, len, meta.modified().ok()));
    let content_type: Box<str> = match listed {
        Some(e) => e.content_type.as_str().into(),
        None => mime::content_type(rel).into(),
    };
    let etag: Box<str> = match listed {
        Some(e) => e.etag.as_str().into(),
        None => metadata_etag(meta).into(),
    };
    let compressible = mime::compressible(&content_type);
    let kind = if mime::is_html(&content_type) {
        CacheKind::Html
    } else if mime::is_fingerprinted(rel) {
        CacheKind::Fingerprinted
    } else {
        CacheKind::Other
    };
    // Content is held in memory only if it fits both bounds: an entry never exceeds the
    // whole cache by itself (so it never empties the cache either).
    let in_memory = p.memory_file_max.min(p.memory_total_max);
    let data = read_small(&file, len, in_memory);
    let mut held = data.as_ref().map_or(0, |d| d.len() as u64);
    let mut variants = [Variant::Absent, Variant::Absent, Variant::Absent];
    let mut sibling_ids = [None; 3];
    if compressible {
        for (e, sib) in Encoding::ALL.into_iter().zip(open_siblings(root, rel)) {
            let Some((sib, smeta)) = sib else { continue };
            sibling_ids[e.index()] = Some(identity(&smeta));
            // Without a manifest, a sibling older than the file is stale.
            if listed.is_none() && smeta.modified().ok() < meta.modified().ok() {
                continue;
            }
            let slen = smeta.len();
            let etag = match listed.and_then(|l| l.encodings[e.index()].as_ref()) {
                Some((size, etag)) if *size == slen => etag.as_str().into(),
                _ => derived_etag(&metadata_etag(&smeta), e.token()),
            };
            let room = p.memory_total_max.saturating_sub(held).min(in_memory);
            let sdata = read_small(&sib, slen, room);
            held += sdata.as_ref().map_or(0, |d| d.len() as u64);
            variants[e.index()] = Variant::OnDisk {
                file: sdata.is_none().then(|| Arc::new(sib)),
                len: slen,
                etag,
                data: sdata,
            };
        }
    }
    FileInfo {
        file: data.is_none().then(|| Arc::new(file)),
        identity: identity(meta),
        siblings: sibling_ids,
        len,
        mtime,
        last_modified: date::format(mtime),
        content_type,
        kind,
        compressible,
        etag,
        data,
        variants,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy<'a>(root: &'a Path, prefix: &'a [u8]) -> Policy<'a> {
        Policy {
            root,
            key_prefix: prefix,
            revalidate: Duration::ZERO,
            memory_file_max: 1 << 20,
            memory_total_max: 1 << 20,
        }
    }

    fn key(prefix: &[u8], rel: &str) -> Vec<u8> {
        let mut k = prefix.to_vec();
        k.extend_from_slice(rel.as_bytes());
        k
    }

    #[test]
    fn regression_review_bytes_are_released_when_a_file_becomes_a_directory() {
        let root = std::env::temp_dir().join(format!("ag-cache-acct-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("x"), vec![b'a'; 1000]).unwrap();
        let mut prefix = root.as_os_str().as_encoded_bytes().to_vec();
        prefix.push(0);
        let p = policy(&root, &prefix);
        let mut c = Cache::default();
        let k = key(&prefix, "x");
        assert!(matches!(c.lookup(&k, prefix.len(), &p), Ok(Found::File)));
        assert_eq!((c.bytes, c.fds), (1000, 0), "in memory, no descriptor kept");
        std::fs::remove_file(root.join("x")).unwrap();
        std::fs::create_dir(root.join("x")).unwrap();
        assert!(matches!(c.lookup(&k, prefix.len(), &p), Ok(Found::Dir)));
        assert_eq!(c.bytes, 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn regression_review_descriptors_are_bounded() {
        let root = std::env::temp_dir().join(format!("ag-cache-fds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let mut prefix = root.as_os_str().as_encoded_bytes().to_vec();
        prefix.push(0);
        let mut p = policy(&root, &prefix);
        p.memory_file_max = 0; // every file keeps its descriptor
        p.revalidate = Duration::from_secs(60);
        let mut c = Cache::default();
        for i in 0..MAX_FDS + 50 {
            let name = format!("f{i}");
            std::fs::write(root.join(&name), "x").unwrap();
            assert!(matches!(
                c.lookup(&key(&prefix, &name), prefix.len(), &p),
                Ok(Found::File)
            ));
            assert!(c.fds <= MAX_FDS);
        }
        assert_eq!(c.fds, c.files.len());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn regression_review_an_entry_never_exceeds_the_memory_bound_alone() {
        let root = std::env::temp_dir().join(format!("ag-cache-bound-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("big.txt"), vec![b'a'; 1000]).unwrap();
        let mut prefix = root.as_os_str().as_encoded_bytes().to_vec();
        prefix.push(0);
        let mut p = policy(&root, &prefix);
        p.memory_total_max = 500; // smaller than memory_file_max (1 MiB)
        p.revalidate = Duration::from_secs(60);
        let mut c = Cache::default();
        let dir = key(&prefix, "d");
        assert!(matches!(c.lookup(&dir, prefix.len(), &p), Ok(Found::Dir)));
        let big = key(&prefix, "big.txt");
        assert!(matches!(c.lookup(&big, prefix.len(), &p), Ok(Found::File)));
        let info = c.file(&big).unwrap();
        assert!(
            info.data.is_none() && info.file.is_some(),
            "served from disk"
        );
        c.compress(&big, Encoding::Gzip, &p);
        assert!(c.bytes <= p.memory_total_max);
        assert!(c.files.contains_key(&*dir), "the other entries stay");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
