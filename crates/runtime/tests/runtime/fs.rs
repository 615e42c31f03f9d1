//! `fs::open_beneath` and its fallback: files inside open, escapes are refused, a FIFO
//! does not block.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileTypeExt;

use anygate_runtime::fs::{open_beneath, open_beneath_no_symlinks};

fn tree(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("anygate-fs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("root/sub")).unwrap();
    std::fs::write(dir.join("secret"), "secret").unwrap();
    std::fs::write(dir.join("root/sub/file"), "inside").unwrap();
    std::os::unix::fs::symlink("../secret", dir.join("root/out")).unwrap();
    std::os::unix::fs::symlink(dir.join("secret"), dir.join("root/abs")).unwrap();
    std::os::unix::fs::symlink("sub/file", dir.join("root/in")).unwrap();
    std::os::unix::fs::symlink("..", dir.join("root/up")).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(dir.join("root/fifo"))
            .status()
            .unwrap()
            .success()
    );
    dir
}

fn read(f: File) -> String {
    let mut s = String::new();
    (&f).read_to_string(&mut s).unwrap();
    s
}

#[test]
fn open_beneath_follows_inside_links_and_refuses_escapes() {
    let dir = tree("beneath");
    let root = File::open(dir.join("root")).unwrap();
    assert_eq!(read(open_beneath(&root, b"sub/file").unwrap()), "inside");
    assert_eq!(read(open_beneath(&root, b"in").unwrap()), "inside");
    for escape in [
        &b"out"[..],
        b"abs",
        b"up/secret",
        b"../secret",
        b"sub/../../secret",
        b"/etc/passwd",
    ] {
        let e = open_beneath(&root, escape).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::CrossesDevices,
            "{}",
            String::from_utf8_lossy(escape)
        );
    }
    assert_eq!(
        open_beneath(&root, b"nope").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // A socket cannot be opened: as absent as a missing file.
    let _socket = std::os::unix::net::UnixListener::bind(dir.join("root/sock")).unwrap();
    assert_eq!(
        open_beneath(&root, b"sock").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // A FIFO with no writer would block a plain open forever.
    let fifo = open_beneath(&root, b"fifo").unwrap();
    assert!(fifo.metadata().unwrap().file_type().is_fifo());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_fallback_refuses_every_symlink_and_dot_segment() {
    let dir = tree("walk");
    let root = File::open(dir.join("root")).unwrap();
    assert_eq!(
        read(open_beneath_no_symlinks(&root, b"sub/file").unwrap()),
        "inside"
    );
    for refused in [
        &b"in"[..],
        b"out",
        b"abs",
        b"up/secret",
        b"../secret",
        b"sub/./file",
        b"sub//file",
        b"",
    ] {
        let e = open_beneath_no_symlinks(&root, refused).unwrap_err();
        assert!(
            e.kind() == ErrorKind::CrossesDevices || e.kind() == ErrorKind::InvalidInput,
            "{}: {e}",
            String::from_utf8_lossy(refused)
        );
    }
    let fifo = open_beneath_no_symlinks(&root, b"fifo").unwrap();
    assert!(fifo.metadata().unwrap().file_type().is_fifo());
    std::fs::remove_dir_all(&dir).unwrap();
}
