//! The benchmark harness is never run in CI, but its pieces are checked: the peer
//! templates render and the wrk output parser reads the sample outputs
//! (`python3 bench/harness.py --self-test`).

use std::path::Path;
use std::process::Command;

#[test]
fn bench_harness_self_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("python3")
        .arg(root.join("bench/harness.py"))
        .arg("--self-test")
        .output()
        .expect("python3 runs the harness self-test");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("self-test: ok"),
        "{out:?}"
    );
}
