//! Process identity: users and groups by name, the drop from root, and the descriptors a
//! new binary inherits on an upgrade.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// A user of the password database: its id and primary group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a name"))
}

/// Calls a `get*_r` lookup with a buffer that grows on `ERANGE` (up to 1 MiB).
fn with_buffer(mut call: impl FnMut(&mut [u8]) -> i32) -> io::Result<()> {
    let mut buf = vec![0u8; 1024];
    loop {
        match call(&mut buf) {
            0 => return Ok(()),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The user named `name` (`getpwnam_r`, so NSS sources count), or `None` when there is no
/// such user. A name of digits is a user id: looked up for its group, or taken as it is
/// with the same number as its group when the database does not know it (as Docker's
/// `--user 65532` does).
pub fn user(name: &str) -> io::Result<Option<User>> {
    let c = c_name(name)?;
    // SAFETY: passwd is plain data (integers and pointers); all-zero is a valid value that
    // getpwnam_r overwrites.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    with_buffer(|buf| {
        // SAFETY: `c` is a NUL-terminated string, `pw` and `found` are valid for writes, and
        // `buf` is a writable buffer of the length passed; the strings getpwnam_r stores in
        // `pw` point into `buf`, which is not read after this call.
        unsafe {
            libc::getpwnam_r(
                c.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        }
    })?;
    if !found.is_null() {
        return Ok(Some(User {
            uid: pw.pw_uid,
            gid: pw.pw_gid,
        }));
    }
    let Ok(uid) = name.parse::<u32>() else {
        return Ok(None);
    };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    with_buffer(|buf| {
        // SAFETY: as above, with a user id instead of a name.
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found) }
    })?;
    let gid = if found.is_null() { uid } else { pw.pw_gid };
    Ok(Some(User { uid, gid }))
}

/// The group named `name` (`getgrnam_r`), or `None`; a name of digits is a group id.
pub fn group(name: &str) -> io::Result<Option<u32>> {
    let c = c_name(name)?;
    // SAFETY: group is plain data; all-zero is a valid value that getgrnam_r overwrites.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    with_buffer(|buf| {
        // SAFETY: `c` is NUL-terminated, `gr` and `found` are valid for writes, `buf` is a
        // writable buffer of the length passed and is not read after the call.
        unsafe {
            libc::getgrnam_r(
                c.as_ptr(),
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        }
    })?;
    if !found.is_null() {
        return Ok(Some(gr.gr_gid));
    }
    Ok(name.parse::<u32>().ok())
}

/// Drops from root to `uid`/`gid` for good: supplementary groups cleared, then the group,
/// then the user (the order that leaves no way back), every id checked afterwards, and
/// getting root back checked to fail. glibc applies each call to every thread of the
/// process, so threads started before the drop run as `uid` too.
pub fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    let groups = [gid];
    // SAFETY: `groups` holds one valid gid_t and its length is passed.
    cvt(unsafe { libc::setgroups(1, groups.as_ptr()) })?;
    // SAFETY: setgid and setuid take plain integers.
    cvt(unsafe { libc::setgid(gid) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::setuid(uid) })?;
    // SAFETY: the get*id calls take no arguments and cannot fail.
    let now = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    };
    if now != (uid, uid, gid, gid) {
        return Err(io::Error::other(format!(
            "after the drop the ids are uid {}/{} gid {}/{}, not {uid}/{gid}",
            now.0, now.1, now.2, now.3
        )));
    }
    // SAFETY: as above; success here would mean the drop did not take.
    if uid != 0 && unsafe { libc::setuid(0) } == 0 {
        return Err(io::Error::other("root could be taken back after the drop"));
    }
    Ok(())
}

/// Lets `fd` survive `exec` (clears `FD_CLOEXEC`): a listening socket handed to a new
/// binary on an upgrade.
pub fn inherit(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFD/F_SETFD on a descriptor the caller holds open (borrowed for the call).
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) })?;
    Ok(())
}

/// Takes ownership of a descriptor the parent process handed over (named in an
/// environment variable), after checking it is open; marks it close-on-exec again. A
/// descriptor that then fails its caller's check is closed: it was this process's to own.
fn take_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor table; an unopened number gives EBADF.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the descriptor is open (checked above) and was handed to this process to own:
    // the parent names each one once and nothing else here uses it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD on the descriptor just taken.
    cvt(unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(owned)
}

/// Takes ownership of an inherited listening TCP socket (an upgrade's), checked to be one.
pub fn adopt_listener(fd: RawFd) -> io::Result<std::net::TcpListener> {
    let owned = take_inherited(fd)?;
    let mut listening: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `listening` and `len` are valid for writes and `len` holds its size.
    cvt(unsafe {
        libc::getsockopt(
            owned.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut listening).cast(),
            &mut len,
        )
    })?;
    if listening == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is not a listening socket"),
        ));
    }
    Ok(std::net::TcpListener::from(owned))
}

/// Takes ownership of an inherited pipe (an upgrade's readiness pipe), checked to be one.
pub fn adopt_pipe(fd: RawFd) -> io::Result<std::fs::File> {
    let owned = take_inherited(fd)?;
    // SAFETY: stat is plain data; all-zero is a valid value that fstat overwrites.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writes; the descriptor is open.
    cvt(unsafe { libc::fstat(owned.as_raw_fd(), &mut st) })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is not a pipe"),
        ));
    }
    Ok(std::fs::File::from(owned))
}

/// Waits until one of `fds` is readable (or has hung up), at most `timeout` (`None`:
/// without a bound); which ones are. Empty when the time ran out or a signal interrupted.
pub fn wait_readable(
    fds: &[std::os::fd::BorrowedFd<'_>],
    timeout: Option<std::time::Duration>,
) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX)
    });
    let n = libc::nfds_t::try_from(pfds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors"))?;
    // SAFETY: `pfds` holds `n` valid pollfd entries for the descriptors borrowed (open for
    // the call).
    match cvt(unsafe { libc::poll(pfds.as_mut_ptr(), n, ms) }) {
        Ok(0) => Ok(Vec::new()),
        Ok(_) => Ok(pfds.iter().map(|p| p.revents != 0).collect()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
