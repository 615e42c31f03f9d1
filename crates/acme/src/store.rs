//! The storage directory: the account, each name's certificate and key, its renewal state,
//! the pending challenges (so that another instance sharing the directory can answer
//! them) and the lease files.
//!
//! ```text
//! STORAGE/account-<directory>.json      account credentials (0600)
//! STORAGE/certificates/NAME/cert.pem    the chain, leaf first
//! STORAGE/certificates/NAME/key.pem     its private key (0600)
//! STORAGE/certificates/NAME/state.json  last attempt, last error, orders
//! STORAGE/challenges/http-01/TOKEN      a key authorization
//! STORAGE/challenges/tls-alpn-01/NAME   the SHA-256 of a key authorization, in hex
//! STORAGE/locks/NAME.lock               see `lease`
//! ```
//!
//! Every file is written whole or not at all: a temporary file in the same directory
//! (`create_new`, its mode set at creation), `fsync`, `rename`, `fsync` of the directory.
//! A file that cannot be read back is moved aside (`NAME.corrupt-<unix time>`) and
//! reported, never overwritten in place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Secrets: owner read/write only.
pub(crate) const SECRET: u32 = 0o600;
/// Public material (certificates, state).
pub(crate) const PUBLIC: u32 = 0o644;

/// What a file looked like (changes to any of these count).
pub(crate) type Stamp = Option<(SystemTime, u64, u64)>;

/// The stamp of `path` (`None`: not there).
pub(crate) fn stamp(path: &Path) -> Stamp {
    let m = fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// A name's renewal state, for `diagnose` and for the instances sharing the directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameState {
    /// When the last order started, in seconds since the Unix epoch.
    pub last_attempt: Option<i64>,
    /// Why it failed (`None`: it succeeded, or none was made).
    pub last_error: Option<String>,
    /// Failures in a row.
    pub failures: u32,
    /// Orders placed for the name (successful or not).
    pub orders: u64,
    /// Not before this (seconds since the Unix epoch) after a failure.
    pub next_attempt: Option<i64>,
}

/// See the [module docs](self).
#[derive(Clone, Debug)]
pub(crate) struct Storage {
    root: PathBuf,
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Storage {
    /// The directory `root` as it is (nothing created: for reading).
    pub(crate) fn at(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The directory `root`, created (0700) with its subdirectories if missing.
    pub(crate) fn open(root: &Path) -> io::Result<Self> {
        let s = Self {
            root: root.to_path_buf(),
        };
        for dir in [
            root.to_path_buf(),
            s.root.join("certificates"),
            s.http01_dir(),
            s.alpn_dir(),
            s.root.join("locks"),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| annotate(e, &dir))?;
        }
        Ok(s)
    }

    /// The account file of the CA at `directory` (one account per CA).
    pub(crate) fn account(&self, directory: &str) -> PathBuf {
        let key: String = directory
            .trim_start_matches("https://")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.root.join(format!("account-{key}.json"))
    }

    pub(crate) fn name_dir(&self, name: &str) -> PathBuf {
        self.root.join("certificates").join(name)
    }

    pub(crate) fn cert(&self, name: &str) -> PathBuf {
        self.name_dir(name).join("cert.pem")
    }

    pub(crate) fn key(&self, name: &str) -> PathBuf {
        self.name_dir(name).join("key.pem")
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.name_dir(name).join("state.json")
    }

    pub(crate) fn http01_dir(&self) -> PathBuf {
        self.root.join("challenges").join("http-01")
    }

    pub(crate) fn alpn_dir(&self) -> PathBuf {
        self.root.join("challenges").join("tls-alpn-01")
    }

    pub(crate) fn lock(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(format!("{name}.lock"))
    }

    /// A name's state (default when there is none yet, or it is unreadable: the state
    /// is advisory, the certificate files are what counts).
    pub(crate) fn state(&self, name: &str) -> NameState {
        fs::read(self.state_path(name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub(crate) fn set_state(&self, name: &str, state: &NameState) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.name_dir(name))?;
        write_atomic(&self.state_path(name), &json, PUBLIC)
    }

    /// Stores a new certificate and key for `name`: the key first, so that a reader that
    /// sees the new certificate finds its key; the key it replaces is kept as
    /// `key.pem.prev` first, so that a stop between the two writes (new key, old
    /// certificate) still loads ([`Storage::load`]).
    pub(crate) fn put_certificate(&self, name: &str, chain: &[u8], key: &[u8]) -> io::Result<()> {
        let dir = self.name_dir(name);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        if let Ok(old) = fs::read(self.key(name)) {
            write_atomic(&self.prev_key(name), &old, SECRET)?;
        }
        write_atomic(&self.key(name), key, SECRET)?;
        write_atomic(&self.cert(name), chain, PUBLIC)
    }

    fn prev_key(&self, name: &str) -> PathBuf {
        self.name_dir(name).join("key.pem.prev")
    }

    /// The stored certificate of `name` with its key (or, for a pair cut between its two
    /// writes, with the previous key); what is wrong otherwise.
    pub(crate) fn load(&self, name: &str) -> Result<anygate_tls::Certificate, String> {
        let chain = fs::read(self.cert(name)).map_err(|e| e.to_string())?;
        let key = fs::read(self.key(name)).map_err(|e| e.to_string())?;
        anygate_tls::Certificate::from_pem(&chain, &key).or_else(|e| {
            fs::read(self.prev_key(name))
                .ok()
                .and_then(|prev| anygate_tls::Certificate::from_pem(&chain, &prev).ok())
                .ok_or(e)
        })
    }
}

/// `e` with the path it is about.
pub(crate) fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` atomically, with `mode` (see the [module docs](self)).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| annotate(e, path))
}

/// Moves an unreadable file aside (`PATH.corrupt-<unix time>`) and says where.
pub(crate) fn quarantine(path: &Path) -> String {
    let aside = PathBuf::from(format!("{}.corrupt-{}", path.display(), now_unix()));
    match fs::rename(path, &aside) {
        Ok(()) => format!("moved aside to {}", aside.display()),
        Err(e) => format!("could not be moved aside: {e}"),
    }
}

/// A challenge directory's entries (file name → content), skipping temporary files;
/// entries older than `stale` are removed instead (left by an instance that died).
pub(crate) fn read_challenges(dir: &Path, stale: std::time::Duration) -> Vec<(String, String)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let old = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > stale);
        if old {
            let _ = fs::remove_file(e.path());
            continue;
        }
        if let Ok(text) = fs::read_to_string(e.path()) {
            out.push((name, text.trim().to_owned()));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("anygate-acme-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_key_is_written_whole_with_mode_0600_and_leaves_no_temporary_file() {
        let root = temp("store");
        let s = Storage::open(&root).expect("open");
        s.put_certificate("a.test", b"CHAIN", b"KEY").expect("put");
        assert_eq!(fs::read(s.cert("a.test")).expect("cert"), b"CHAIN");
        let mode = fs::metadata(s.key("a.test"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        s.put_certificate("a.test", b"CHAIN2", b"KEY2")
            .expect("replace");
        assert_eq!(fs::read(s.key("a.test")).expect("key"), b"KEY2");
        let leftovers: Vec<_> = fs::read_dir(s.name_dir("a.test"))
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn regression_review_a_pair_cut_between_its_two_writes_loads_with_the_previous_key() {
        let root = temp("cut");
        let s = Storage::open(&root).expect("open");
        let pair = |name: &str| {
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
                .expect("params")
                .self_signed(&key)
                .expect("cert");
            (cert.pem(), key.serialize_pem())
        };
        let (c1, k1) = pair("c.test");
        s.put_certificate("c.test", c1.as_bytes(), k1.as_bytes())
            .expect("first");
        assert!(s.load("c.test").is_ok());
        // The next pair's key is written, its certificate never (a stop, a full disk).
        let (_, k2) = pair("c.test");
        write_atomic(&s.prev_key("c.test"), k1.as_bytes(), SECRET).expect("prev");
        write_atomic(&s.key("c.test"), k2.as_bytes(), SECRET).expect("new key");
        assert!(s.load("c.test").is_ok(), "the old certificate still loads");
        let mode = fs::metadata(s.prev_key("c.test"))
            .expect("prev")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn state_round_trips_and_a_corrupt_file_is_moved_aside() {
        let root = temp("state");
        let s = Storage::open(&root).expect("open");
        assert_eq!(s.state("b.test"), NameState::default());
        let st = NameState {
            last_error: Some("refused".into()),
            failures: 2,
            orders: 3,
            ..NameState::default()
        };
        s.set_state("b.test", &st).expect("set");
        assert_eq!(s.state("b.test"), st);
        let cert = s.cert("b.test");
        fs::write(&cert, b"garbage").expect("write");
        let said = quarantine(&cert);
        assert!(said.contains(".corrupt-"), "{said}");
        assert!(!cert.exists());
        let aside: Vec<_> = fs::read_dir(s.name_dir("b.test"))
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(fs::read(aside[0].path()).expect("kept"), b"garbage");
        let _ = fs::remove_dir_all(&root);
    }
}
