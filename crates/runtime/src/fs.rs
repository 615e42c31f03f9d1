//! Filesystem helpers the static-file action needs and std lacks.

use std::fs::File;
use std::io;

use crate::sys;

/// Opens `path`, relative to the directory `dir`, read-only and non-blocking, with the
/// kernel refusing every resolution that would leave `dir`: `..` above it, absolute
/// symlinks, symlinks pointing outside, `/proc` magic links. Symlinks that stay inside are
/// followed.
///
/// A refused escape is an error of kind `CrossesDevices` (`EXDEV`). On kernels without
/// `openat2` (before 5.6, or where a seccomp filter hides it) the path is walked one
/// component at a time with [`open_beneath_no_symlinks`]. The call blocks as every `open`
/// does; files served are expected in the page cache. Non-blocking: a FIFO in the tree does
/// not stall the caller.
pub fn open_beneath(dir: &File, path: &[u8]) -> io::Result<File> {
    sys::fs::open_beneath(dir, path)
}

/// The fallback of [`open_beneath`]: one `openat(O_NOFOLLOW)` per component, refusing `.`,
/// `..`, empty components and every symlink (inside the directory or not) with `EXDEV`.
pub fn open_beneath_no_symlinks(dir: &File, path: &[u8]) -> io::Result<File> {
    sys::fs::open_walk_normalised(dir, path)
}
