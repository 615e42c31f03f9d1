//! Filesystem helpers the static-file action needs and std lacks.

use std::fs::File;
use std::io;

use crate::sys;

/// Opens `path`, relative to the directory `dir`, read-only, with the kernel refusing every
/// resolution that would leave `dir`: `..` above it, absolute symlinks, symlinks pointing
/// outside, `/proc` magic links. Symlinks that stay inside are followed.
///
/// A refused escape is an error of kind `CrossesDevices` (`EXDEV`); a kernel older than 5.6
/// gives `Unsupported` (`ENOSYS`), and the caller must then check the resolved path itself.
/// The call blocks (as every `open` does); files served are expected in the page cache.
pub fn open_beneath(dir: &File, path: &[u8]) -> io::Result<File> {
    sys::fs::open_beneath(dir, path)
}
