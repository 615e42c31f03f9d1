//! `server.watch: true`: reload when the configuration file, or a file it names, changes.
//!
//! # Design
//!
//! A side thread (SIGHUP blocked, never a worker) watches the *directories* holding the
//! files with inotify: editors write a new file and rename it over the old one, and
//! Kubernetes updates a mounted ConfigMap by renaming its `..data` symlink to a new
//! directory, so a watch on the file's inode would miss both. An event only says "look
//! again": after a quiet spell ([`QUIET`], so that an editor's burst of writes or a
//! ConfigMap's swap of several files counts once) the thread reads every watched file and
//! compares a digest of their contents with the last one. Only a change of content reloads,
//! through the same path as `SIGHUP` ([`Core::reload_file`]): validated, then swapped, or
//! refused with the old configuration still serving and the errors logged. A refused edit is
//! not retried until the files change again.
//!
//! Watched: the configuration file, the certificate, key, OCSP and CA files of `tls`, and
//! every `*_file` argument of a filter (JWKS, API keys, tokens, htpasswd, secrets). The list
//! is taken again from each configuration applied, whoever applied it. Every [`POLL`] the
//! files are also compared without an event, for file systems where inotify sees nothing
//! (NFS, some FUSE mounts).
//!
//! # Non-goals
//!
//! Watching static roots (files are served as they are on disk: no reload is needed) or
//! following a change of `server.watch` itself, which takes effect at the next start.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anygate_config::Config;
use anygate_config::node::{Kind, Node};

use crate::serve::Core;

/// How long the watched directories must stay quiet before the files are read.
pub const QUIET: Duration = Duration::from_millis(200);
/// The longest a burst of events can delay the look (a file rewritten without pause).
const MAX_DELAY: Duration = Duration::from_secs(2);
/// How often the files are compared without an event.
pub const POLL: Duration = Duration::from_secs(10);

/// The files `config` names whose change should reload it (its own file aside).
pub fn references(config: &Config) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(t) = &config.tls {
        for c in &t.certificates {
            files.push(c.cert.clone());
            files.push(c.key.clone());
            files.extend(c.ocsp.clone());
        }
        files.extend(t.client_auth.ca.clone());
        for h in &t.hosts {
            files.extend(h.client_auth.ca.clone());
        }
    }
    for p in &config.plugins {
        if let Some(args) = &p.args {
            file_args(args, &p.base_dir, &mut files);
        }
    }
    let mut seen = BTreeSet::new();
    files.retain(|f| seen.insert(f.clone()));
    files
}

/// Every string under a key ending in `_file`, resolved against `base`.
fn file_args(node: &Node, base: &Path, out: &mut Vec<PathBuf>) {
    match &node.kind {
        Kind::Map(entries) => {
            for (k, v) in entries {
                if let (Kind::Str(key), Kind::Str(file)) = (&k.kind, &v.kind)
                    && key.ends_with("_file")
                {
                    out.push(base.join(file));
                } else {
                    file_args(v, base, out);
                }
            }
        }
        Kind::Seq(items) => items.iter().for_each(|n| file_args(n, base, out)),
        _ => {}
    }
}

/// A digest of the files' contents (a missing or unreadable file counts as such).
fn digest(files: &[PathBuf]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        match std::fs::read(f) {
            Ok(bytes) => {
                1u8.hash(&mut h);
                bytes.hash(&mut h);
            }
            Err(e) => {
                0u8.hash(&mut h);
                e.kind().hash(&mut h);
            }
        }
    }
    h.finish()
}

/// The watching thread; stopped and joined on drop.
#[derive(Debug)]
pub struct ConfigWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConfigWatch {
    /// Starts watching `path` (and what the configuration in use names) for `core`. The
    /// watches are in place and the files read when this returns: a change made after it is
    /// seen.
    pub fn start(core: Arc<Core>, path: PathBuf) -> std::io::Result<Self> {
        let refs = core.referenced_files();
        let mut state = State {
            watch: anygate_runtime::watch::Watch::new()?,
            dirs: BTreeSet::new(),
            files: watched(&refs, &path),
            refs,
            last: 0,
        };
        state.add_dirs();
        state.last = digest(&state.files);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread =
            anygate_runtime::signal::spawn_side_thread("anygate-config-watch", move || {
                state.run(&core, &path, &flag);
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The configuration file, then what the configuration in use names.
fn watched(refs: &[PathBuf], path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    files.extend(refs.iter().filter(|f| *f != path).cloned());
    files
}

struct State {
    watch: anygate_runtime::watch::Watch,
    /// The directories watched.
    dirs: BTreeSet<PathBuf>,
    /// The files compared.
    files: Vec<PathBuf>,
    /// The configuration's list they were taken from.
    refs: Arc<Vec<PathBuf>>,
    /// Their digest when last read.
    last: u64,
}

impl State {
    fn add_dirs(&mut self) {
        for f in &self.files {
            let dir = f
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if self.dirs.insert(dir.to_path_buf())
                && let Err(e) = self.watch.add(dir)
            {
                crate::serve::warn(&format!(
                    "server.watch: cannot watch {}: {e}; changes there are seen within {}s",
                    dir.display(),
                    POLL.as_secs()
                ));
            }
        }
    }

    /// Takes the list again when a configuration naming other files was applied, by
    /// whoever applied it (`SIGHUP`, `POST /reload`, this watcher).
    fn follow(&mut self, core: &Core, path: &Path) {
        let refs = core.referenced_files();
        if Arc::ptr_eq(&refs, &self.refs) {
            return;
        }
        self.refs = refs;
        let files = watched(&self.refs, path);
        if files != self.files {
            self.files = files;
            self.add_dirs();
            self.last = digest(&self.files);
        }
    }

    /// Watches every directory again: one removed or renamed and made anew lost its
    /// watch. Adding a watch that exists is a no-op for inotify.
    fn rewatch(&self) {
        for dir in &self.dirs {
            let _ = self.watch.add(dir);
        }
    }

    fn run(&mut self, core: &Core, path: &Path, stop: &AtomicBool) {
        let mut polled = anygate_runtime::time::now();
        while !stop.load(Ordering::Acquire) {
            self.follow(core, path);
            let event = match self.watch.wait(Duration::from_millis(250)) {
                Ok(e) => e,
                Err(e) => {
                    crate::serve::error(&format!("server.watch stopped: {e}"));
                    return;
                }
            };
            if !event && polled.elapsed() < POLL {
                continue;
            }
            if event {
                // Let the burst end: until QUIET passes without an event (bounded).
                let first = anygate_runtime::time::now();
                while first.elapsed() < MAX_DELAY && matches!(self.watch.wait(QUIET), Ok(true)) {}
                self.rewatch();
            }
            polled = anygate_runtime::time::now();
            let now = digest(&self.files);
            if now == self.last {
                continue;
            }
            self.last = now;
            crate::serve::log(&format!(
                "server.watch: {} changed; reloading",
                path.display()
            ));
            // A configuration naming other files is followed on the next turn.
            let _ = core.reload_file(path);
        }
    }
}
