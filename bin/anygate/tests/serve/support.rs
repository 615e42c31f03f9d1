//! Running the gateway: in-process from a YAML string, or as the real binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;

use anygate::serve::Server;
use anygate_config::{Format, load_str};

/// A file of the repository (`rel` from its root: `docs/PROXY.md`), as text.
pub fn repo_text(rel: &str) -> String {
    let path = format!("{}/../../{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A valid configuration (`test.yml`), or the test fails with its diagnostics.
pub fn config_of(yaml: &str) -> anygate_config::Config {
    load_str("test.yml", yaml, Format::Yaml, Path::new("."), &[]).unwrap_or_else(|f| panic!("{f}"))
}

/// Starts the server in-process on a free port.
pub fn in_process(yaml: &str) -> Server {
    Server::start(config_of(yaml)).unwrap()
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "anygate-serve-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real binary, killed on drop.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin listener's address, when the configuration has one.
    pub admin: Option<SocketAddr>,
    /// stderr lines after the "listening" one.
    pub lines: mpsc::Receiver<String>,
    pub config: PathBuf,
    _dir: Option<TempDir>,
}

impl Gateway {
    /// Writes `yaml` (whose listen address must be `127.0.0.1:0`) and starts the binary on it.
    pub fn start(yaml: &str) -> Self {
        let dir = TempDir::new("bin");
        let mut g = Self::start_at(dir.0.join("anygate.yml"), yaml);
        g._dir = Some(dir);
        g
    }

    /// Like [`Gateway::start`], with the configuration written into `dir` (which the caller
    /// keeps: relative paths in `yaml` name its files).
    pub fn start_in(dir: &TempDir, yaml: &str) -> Self {
        Self::start_at(dir.0.join("anygate.yml"), yaml)
    }

    fn start_at(config: PathBuf, yaml: &str) -> Self {
        std::fs::write(&config, yaml).unwrap();
        let (child, lines) = spawn_serve(&config, Stdio::null());
        Self::started(child, lines, config)
    }

    /// Waits for a spawned gateway's "listening" line (noting the admin listener's).
    pub fn started(child: Child, lines: mpsc::Receiver<String>, config: PathBuf) -> Self {
        let mut admin = None;
        let addr = loop {
            let line = lines
                .recv_timeout(crate::http::LIMIT)
                .expect("the gateway did not start");
            if let Some(rest) = line.strip_prefix("anygate: admin listener on http://") {
                admin = Some(rest.trim().parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("anygate: listening on http://") {
                break rest.split(' ').next().unwrap().parse().unwrap();
            }
        };
        Self {
            child,
            addr,
            admin,
            lines,
            config,
            _dir: None,
        }
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_line(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(crate::http::LIMIT)
                .unwrap_or_else(|_| panic!("no stderr line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `anygate serve -c CONFIG` with an empty environment but for the override that lets it
/// run as root (these tests may run as root; `privilege` tests the refusal), and its
/// stderr lines.
pub fn spawn_serve(config: &Path, stdout: Stdio) -> (Child, mpsc::Receiver<String>) {
    let child = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["serve", "-c"])
        .arg(config)
        .env_clear()
        .env("ANYGATE__SERVER__ALLOW_ROOT", "true")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    with_lines(child)
}

/// A child spawned with a piped stderr, and its stderr lines.
pub fn with_lines(mut child: Child) -> (Child, mpsc::Receiver<String>) {
    let lines = forward(child.stderr.take().unwrap());
    (child, lines)
}

fn forward(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
