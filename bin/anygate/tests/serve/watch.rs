//! `server.watch`: an edit reloads, a ConfigMap-style symlink swap reloads, a file the
//! configuration names reloads, a broken edit keeps the running configuration.

use std::path::Path;
use std::process::Stdio;

use crate::http::one;
use crate::support::{Gateway, TempDir, spawn_serve};

fn config(body: &str) -> String {
    format!(
        "server: {{listen: \"127.0.0.1:0\", workers: 1, watch: true}}\nroutes:\n  \"GET /v\": \"OK {body}\"\n"
    )
}

fn body(gw: &Gateway) -> String {
    one(gw.addr, b"GET /v HTTP/1.1\r\nHost: t\r\n\r\n").body_str()
}

/// Starts the binary on the configuration file at `path` (already written).
fn start(path: &Path) -> Gateway {
    let (child, lines) = spawn_serve(path, Stdio::null());
    Gateway::started(child, lines, path.to_path_buf())
}

#[test]
fn editing_the_file_reloads_it_and_a_broken_edit_keeps_the_running_one() {
    let dir = TempDir::new("watch-edit");
    let path = dir.0.join("anygate.yml");
    std::fs::write(&path, config("one")).unwrap();
    let gw = start(&path);
    assert_eq!(body(&gw), "one");
    // Written in place.
    std::fs::write(&path, config("two")).unwrap();
    gw.wait_line("reloaded");
    assert_eq!(body(&gw), "two");
    // A broken edit: reported, the running configuration stays.
    std::fs::write(&path, "routes: {\"GET /v\": [not an action]}\n").unwrap();
    gw.wait_line("failed");
    assert_eq!(body(&gw), "two");
    // Written elsewhere and renamed over it, as editors do.
    let tmp = dir.0.join(".anygate.yml.swp");
    std::fs::write(&tmp, config("three")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    gw.wait_line("reloaded");
    assert_eq!(body(&gw), "three");
}

#[test]
fn a_configmap_style_symlink_swap_reloads_it() {
    // What the kubelet does: `..data` points at a timestamped directory; the file is a
    // symlink through `..data`; an update writes a new directory and renames a new `..data`
    // link over the old one.
    let dir = TempDir::new("watch-configmap");
    let d = &dir.0;
    std::fs::create_dir(d.join("..2026_12_03_01")).unwrap();
    std::fs::write(d.join("..2026_12_03_01/anygate.yml"), config("one")).unwrap();
    std::os::unix::fs::symlink("..2026_12_03_01", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/anygate.yml", d.join("anygate.yml")).unwrap();
    let gw = start(&d.join("anygate.yml"));
    assert_eq!(body(&gw), "one");
    std::fs::create_dir(d.join("..2026_12_03_02")).unwrap();
    std::fs::write(d.join("..2026_12_03_02/anygate.yml"), config("two")).unwrap();
    std::os::unix::fs::symlink("..2026_12_03_02", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..2026_12_03_01")).unwrap();
    gw.wait_line("reloaded");
    assert_eq!(body(&gw), "two");
}

#[test]
fn a_file_the_configuration_names_reloads_it_when_it_changes() {
    let dir = TempDir::new("watch-keys");
    std::fs::create_dir(dir.0.join("secrets")).unwrap();
    std::fs::write(dir.0.join("secrets/keys.txt"), "k-one\n").unwrap();
    let path = dir.0.join("anygate.yml");
    std::fs::write(
        &path,
        "server: {listen: \"127.0.0.1:0\", workers: 1, watch: true}\n\
         plugins:\n  - kind: auth\n    args: { api_key: { keys_file: secrets/keys.txt } }\n\
         routes: {\"GET /v\": \"OK in\"}\n",
    )
    .unwrap();
    let gw = start(&path);
    let with_key = |k: &str| {
        one(
            gw.addr,
            format!("GET /v HTTP/1.1\r\nHost: t\r\nX-API-Key: {k}\r\n\r\n").as_bytes(),
        )
        .status
    };
    assert_eq!(with_key("k-one"), 200);
    assert_eq!(with_key("k-two"), 401);
    std::fs::write(dir.0.join("secrets/keys.txt"), "k-two\n").unwrap();
    gw.wait_line("reloaded");
    assert_eq!(with_key("k-two"), 200);
    assert_eq!(with_key("k-one"), 401);
}
