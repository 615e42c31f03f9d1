//! Golden tests: `anygate check` and `anygate explain` on the configurations under
//! `crates/router/tests/golden/`, compared with the committed expectations
//! (`UPDATE_GOLDEN=1` rewrites them; see the README there).

use std::path::{Path, PathBuf};
use std::process::Command;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/router/tests/golden")
}

/// Runs the binary from the golden directory with a clean environment.
fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(args)
        .current_dir(golden_dir())
        .env_clear()
        .output()
        .expect("run anygate");
    format!(
        "$ anygate {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status
            .code()
            .map_or("signal".to_owned(), |c| c.to_string()),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Compares `actual` with the file `name`, or rewrites it under `UPDATE_GOLDEN=1`.
fn compare(name: &str, actual: &str, mismatches: &mut Vec<String>) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    match std::fs::read_to_string(&path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => mismatches.push(format!(
            "{name} differs\n--- expected\n{expected}\n--- actual\n{actual}"
        )),
        Err(_) => mismatches.push(format!(
            "{name} is missing; run `UPDATE_GOLDEN=1 cargo test -p anygate --test golden`"
        )),
    }
}

#[test]
fn golden_check_and_explain_outputs() {
    let mut configs: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yml") || n.ends_with(".json") || n.ends_with(".toml"))
        .collect();
    configs.sort();
    assert!(
        configs.len() >= 8,
        "golden configs are missing: {configs:?}"
    );
    let mut mismatches = Vec::new();
    for config in &configs {
        let stem = config.rsplit_once('.').unwrap().0;
        compare(
            &format!("{stem}.check.out"),
            &run(&["check", "-c", config]),
            &mut mismatches,
        );
        let Ok(requests) = std::fs::read_to_string(golden_dir().join(format!("{stem}.requests")))
        else {
            continue;
        };
        let mut out = String::new();
        for line in requests.lines().filter(|l| !l.trim().is_empty()) {
            let (method, target) = line.split_once(' ').expect("METHOD TARGET");
            out.push_str(&run(&["explain", "-c", config, method, target]));
            out.push('\n');
        }
        compare(&format!("{stem}.explain.out"), &out, &mut mismatches);
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["check", "-x"],
        &["check", "-c"],
        &["explain", "-c", "priorities.yml", "GET"],
        &["explain", "-c", "priorities.yml", "G(T", "/"],
        &["explain", "-c", "priorities.yml", "GET", "relative"],
    ] {
        let out = run(args);
        assert!(out.contains("\nexit: 2\n"), "{out}");
        assert!(out.contains("--- stderr\nanygate: "), "{out}");
    }
}

#[test]
fn env_overrides_reach_the_cli() {
    let out = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["check", "-c", "priorities.yml"])
        .current_dir(golden_dir())
        .env_clear()
        .env("ANYGATE__SERVER__LISTEN", "0.0.0.0:9999")
        .env("ANYGATE__SERVER__WORKERS", "zero")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("environment:1:26: error[AG-CFG-1004]: `server.workers` must be"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_anygate"))
        .args(["check", "-c", "priorities.yml"])
        .current_dir(golden_dir())
        .env_clear()
        .env("ANYGATE__SERVER__LISTEN", "0.0.0.0:9999")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen: 0.0.0.0:9999\n"));
}

#[test]
fn version_and_help() {
    let version = run(&["version"]);
    assert!(
        version.contains(concat!("anygate ", env!("CARGO_PKG_VERSION"), " (commit ")),
        "{version}"
    );
    // The commit it was built from, when built in a checkout.
    if let Ok(out) = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        && out.status.success()
    {
        let head = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            version.contains(&format!("(commit {head}, ")),
            "{version} vs {head}"
        );
    }
    let help = run(&["help"]);
    assert!(
        help.contains("explain [-c FILE] [--host NAME] METHOD [HOST]PATH"),
        "{help}"
    );
}

#[test]
fn explain_takes_the_host_from_an_option_as_from_the_target() {
    let by_option = run(&[
        "explain",
        "-c",
        "hosts.yml",
        "--host",
        "api.example.com",
        "GET",
        "/health",
    ]);
    let in_target = run(&[
        "explain",
        "-c",
        "hosts.yml",
        "GET",
        "api.example.com/health",
    ]);
    assert!(
        by_option.contains("host tier: exact host `api.example.com`"),
        "{by_option}"
    );
    let strip = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(&by_option), strip(&in_target));
    // `--host` belongs to explain alone.
    let other = run(&["check", "-c", "hosts.yml", "--host", "a.example"]);
    assert!(
        other.contains("exit: 2") && other.contains("`--host` is an option of `explain` only"),
        "{other}"
    );
}

#[test]
fn readme_quickstart_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let mut ran = 0;
    // A `serve ... &` line: a backend kept running for the next `serve` of its block, whose
    // pool `backend` is pointed at it.
    let mut backend: Option<(std::process::Child, String)> = None;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("examples/") && line.ends_with(".sh") {
            // A setup script (the TLS example's certificates).
            let out = Command::new("bash")
                .arg(line)
                .current_dir(&root)
                .output()
                .unwrap();
            assert!(out.status.success(), "{line}: {out:?}");
            continue;
        }
        let Some(args) = line.strip_prefix("cargo run --release -p anygate -- ") else {
            continue;
        };
        let (args, in_background) = match args.strip_suffix(" &") {
            Some(a) => (a, true),
            None => (args, false),
        };
        let args: Vec<String> = args
            .split_whitespace()
            .map(|a| a.trim_matches('\'').to_owned())
            .collect();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_anygate"));
        cmd.args(&args).current_dir(&root).env_clear();
        if in_background {
            backend = Some(start_serve(cmd));
        } else if args[0] == "serve" {
            if let Some((_, addr)) = &backend {
                cmd.env("ANYGATE__PROXY__UPSTREAMS__BACKEND__TARGETS", addr);
            }
            // The `curl` lines that follow it, up to the next command or the block's end.
            let curls: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| !l.starts_with("cargo ") && !l.starts_with("```"))
                .filter(|l| l.starts_with("curl "))
                .copied()
                .collect();
            readme_serve(cmd, &curls);
            if let Some((child, _)) = backend.take() {
                stop(child);
            }
        } else {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{line}: {out:?}");
        }
        ran += 1;
    }
    assert!(ran >= 5, "the README's anygate commands were not found");
}

/// Runs the README's `serve` line on a free port, then its `curl` lines against it (when
/// curl is installed), then stops it with SIGTERM.
fn readme_serve(mut cmd: Command, curls: &[&str]) {
    let tls = curls.iter().any(|c| c.contains("https://"));
    if tls {
        cmd.env("ANYGATE__TLS__LISTEN", "127.0.0.1:0");
    }
    let (child, addr, tls_port, admin) = start_serve_tls(cmd, tls);
    // Killed if an assertion below fails (regression: a failed run left the gateway
    // running after the tests).
    let mut child = KillOnDrop(Some(child));
    let have_curl = Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .is_ok_and(|o| o.status.success());
    for curl in curls.iter().filter(|_| have_curl) {
        let mut line = curl.replace("127.0.0.1:8080", &addr);
        if let Some(admin) = &admin {
            line = line.replace("127.0.0.1:9901", admin);
        }
        if let Some(port) = &tls_port {
            line = line.replace("localhost:8443", &format!("localhost:{port}"));
        }
        // From the repository's root, as the README's reader runs them (relative paths).
        let out = Command::new("sh")
            .args(["-c", &format!("{line} --max-time 10 -sS")])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            // curl asks for h2 by ALPN over TLS, and gets it.
            out.status.success()
                && (text.starts_with("HTTP/1.1 200 OK")
                    || (tls_port.is_some() && text.starts_with("HTTP/2 200"))),
            "{line}: {text}"
        );
    }
    if let Some(child) = child.0.take() {
        stop(child);
    }
}

/// A child process killed when dropped, unless taken out first.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts a `serve` command on a free port; returns it and its address.
fn start_serve(cmd: Command) -> (std::process::Child, String) {
    let (child, addr, _, _) = start_serve_tls(cmd, false);
    (child, addr)
}

/// [`start_serve`], also waiting for the TLS listener's line when `tls`: returns its port,
/// and the admin listener's address when the configuration has one (on a free port too).
fn start_serve_tls(
    mut cmd: Command,
    tls: bool,
) -> (std::process::Child, String, Option<String>, Option<String>) {
    use std::io::{BufRead, BufReader};
    let mut admin = None;
    let mut child = cmd
        .env("ANYGATE__SERVER__LISTEN", "127.0.0.1:0")
        .env("ANYGATE__ADMIN__LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = stderr.next().expect("serve exited").unwrap();
        // `server.log_format: json` writes the same messages as JSON lines.
        let line = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) => format!("anygate: {}", v["msg"].as_str().unwrap_or_default()),
            Err(_) => line,
        };
        if let Some(rest) = line.strip_prefix("anygate: admin listener on http://") {
            admin = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("anygate: listening on http://") {
            break rest.split(' ').next().unwrap().to_owned();
        }
    };
    let tls_port = tls.then(|| {
        loop {
            let line = stderr.next().expect("serve exited").unwrap();
            if let Some(rest) = line.strip_prefix("anygate: listening on https://") {
                break rest.rsplit(':').next().unwrap().trim().to_owned();
            }
        }
    });
    // Keep draining stderr so that the server never blocks on a full pipe.
    std::thread::spawn(move || stderr.for_each(drop));
    (child, addr, tls_port, admin)
}

/// Stops a server with SIGTERM; it must exit cleanly.
fn stop(mut child: std::process::Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
}
