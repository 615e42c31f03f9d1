//! The manifest `anygate pack-spa` writes next to the files (`.anygate-manifest.json`):
//! per file its content type, size and a strong ETag computed from the content, and the
//! same for each precompressed sibling. The static action trusts an entry only while the
//! file still has the recorded size and was not modified after the manifest was written;
//! otherwise it falls back to what `stat` says.
//!
//! ```json
//! {"anygate_manifest":1,"files":{"index.html":{"encodings":{"br":{"etag":"\"…\"","size":120}},
//!  "etag":"\"…\"","size":310,"type":"text/html; charset=utf-8"}}}
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::encoding::Encoding;

/// The manifest's file name, inside the served directory (hidden: never served).
pub const FILE_NAME: &str = ".anygate-manifest.json";

/// The manifest format's version.
const VERSION: u64 = 1;

/// What the manifest says of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `Content-Type`.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Strong ETag, quotes included.
    pub etag: String,
    /// Size and ETag of each precompressed sibling, in [`Encoding::ALL`] order.
    pub encodings: [Option<(u64, String)>; 3],
}

/// A loaded manifest.
#[derive(Debug, Default)]
pub struct Manifest {
    files: HashMap<Box<[u8]>, Entry>,
    written: Option<SystemTime>,
}

impl Manifest {
    /// Reads `root/.anygate-manifest.json`; `Ok(None)` when there is none.
    pub fn load(root: &Path) -> Result<Option<Self>, String> {
        let path = root.join(FILE_NAME);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Self::parse(&text, written)
            .map(Some)
            .map_err(|why| format!("{}: not a pack-spa manifest ({why})", path.display()))
    }

    /// Reads a manifest from an open file (the static action opens it beneath its root).
    pub fn read(mut file: &std::fs::File) -> Result<Self, String> {
        let written = file.metadata().and_then(|m| m.modified()).ok();
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut text).map_err(|e| e.to_string())?;
        Self::parse(&text, written)
    }

    /// Parses a manifest's text; `written` is its modification time.
    pub fn parse(text: &[u8], written: Option<SystemTime>) -> Result<Self, String> {
        let doc: Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if doc.get("anygate_manifest").and_then(Value::as_u64) != Some(VERSION) {
            return Err("unknown version".into());
        }
        let files = doc
            .get("files")
            .and_then(Value::as_object)
            .ok_or("no `files`")?;
        let mut out = HashMap::with_capacity(files.len());
        for (name, f) in files {
            let entry = parse_entry(f).ok_or_else(|| format!("entry `{name}`"))?;
            out.insert(name.as_bytes().into(), entry);
        }
        Ok(Self {
            files: out,
            written,
        })
    }

    /// The entry for `rel` if it still describes the file: same size, and not modified
    /// after the manifest was written.
    pub fn get(&self, rel: &[u8], size: u64, modified: Option<SystemTime>) -> Option<&Entry> {
        let e = self.files.get(rel)?;
        let fresh = match (modified, self.written) {
            (Some(m), Some(w)) => m <= w,
            _ => false,
        };
        (e.size == size && fresh).then_some(e)
    }

    /// Number of files described.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether it describes no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

fn parse_entry(f: &Value) -> Option<Entry> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut encodings: [Option<(u64, String)>; 3] = Default::default();
    if let Some(map) = f.get("encodings").and_then(Value::as_object) {
        for e in Encoding::ALL {
            if let Some(v) = map.get(e.token()) {
                encodings[e.index()] = Some((v.get("size")?.as_u64()?, text(v, "etag")?));
            }
        }
    }
    let entry = Entry {
        content_type: text(f, "type")?,
        size: f.get("size")?.as_u64()?,
        etag: text(f, "etag")?,
        encodings,
    };
    let header_safe = |s: &str| s.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    (header_safe(&entry.content_type)
        && header_safe(&entry.etag)
        && entry
            .encodings
            .iter()
            .flatten()
            .all(|(_, t)| header_safe(t)))
    .then_some(entry)
}

/// A strong ETag for `data`: a 64-bit FNV-1a of the bytes and the length.
pub fn content_etag(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}-{:x}\"", data.len())
}

/// Serializes a manifest (keys sorted, so the output is deterministic).
pub fn render(files: &BTreeMap<String, Entry>) -> String {
    let mut map = serde_json::Map::new();
    for (name, e) in files {
        let mut encodings = serde_json::Map::new();
        for enc in Encoding::ALL {
            if let Some((size, etag)) = &e.encodings[enc.index()] {
                encodings.insert(enc.token().into(), json!({"size": size, "etag": etag}));
            }
        }
        map.insert(
            name.clone(),
            json!({"type": e.content_type, "size": e.size, "etag": e.etag, "encodings": encodings}),
        );
    }
    let doc = json!({"anygate_manifest": VERSION, "files": map});
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("ag-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = BTreeMap::new();
        files.insert(
            "a.js".to_owned(),
            Entry {
                content_type: "text/javascript; charset=utf-8".into(),
                size: 3,
                etag: content_etag(b"abc"),
                encodings: [None, None, Some((20, content_etag(b"gz")))],
            },
        );
        std::fs::write(dir.join(FILE_NAME), render(&files)).unwrap();
        let m = Manifest::load(&dir).unwrap().unwrap();
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(m.get(b"a.js", 3, Some(now)), files.get("a.js"));
        assert_eq!(m.get(b"a.js", 4, Some(now)), None, "size changed");
        std::fs::write(dir.join(FILE_NAME), "{\"anygate_manifest\":9}").unwrap();
        assert!(Manifest::load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(Manifest::load(&dir).unwrap().is_none());
    }
}
