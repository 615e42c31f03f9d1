//! Records the commit the binary is built from, for `anygate version`: its short hash and
//! date (the commit's, not the build's, so that two builds of one commit print the same).
//! Outside a git checkout (a source tarball) both are `unknown`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let date = git(&["log", "-1", "--format=%cs"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ANYGATE_COMMIT={commit}");
    println!("cargo:rustc-env=ANYGATE_COMMIT_DATE={date}");
    // Rebuilt when HEAD moves (the files exist only in a checkout; a worktree's `.git` is
    // a file naming its real directory, which `git rev-parse --git-dir` finds).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        for f in ["HEAD", "logs/HEAD"] {
            let p = Path::new(&dir).join(f);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
