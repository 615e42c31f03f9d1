//! A lease on a name, so that of several instances sharing one storage directory exactly
//! one orders or renews a given certificate.
//!
//! Two locks, because each fails somewhere: an exclusive `flock` on `locks/NAME.lock`
//! (released by the kernel when the holder dies; on NFS it may only be local to each
//! client), and inside the file a lease `{holder, expires}` that another instance respects
//! until it expires (a crashed holder's lease runs out after [`TTL`]). The holder renews
//! the lease while it works; dropping the [`Lease`] clears it and unlocks.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{annotate, now_unix};

/// How long a lease lasts without renewal: longer than any order takes.
pub(crate) const TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Record {
    holder: String,
    /// Seconds since the Unix epoch.
    expires: i64,
}

/// A held lease (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct Lease {
    file: File,
    holder: String,
}

/// Linux's "no locks available" (NFS without a lock daemon).
const ENOLCK: i32 = 37;

/// Whether `other` (`host:pid:start`) names a process of this machine (`me`'s host) that
/// no longer exists.
fn holder_is_dead_here(other: &str, me: &str) -> bool {
    let mut parts = other.rsplitn(3, ':');
    let (_start, pid, host) = (parts.next(), parts.next(), parts.next());
    let my_host = me.rsplitn(3, ':').nth(2);
    match (host, pid.and_then(|p| p.parse::<u32>().ok())) {
        (Some(h), Some(pid)) if Some(h) == my_host => !Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}

/// Whether `file` was written within `d`.
fn modified_within(file: &File, d: Duration) -> bool {
    file.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < d)
}

/// This process, as a lease holder: `host:pid:start`.
pub(crate) fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}:{}", std::process::id(), now_unix())
}

impl Lease {
    /// Takes the lease at `path` for `holder`, or `None` while another holds it.
    pub(crate) fn acquire(path: &Path, holder: &str) -> io::Result<Option<Self>> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| annotate(e, path))?;
        let flocked = match file.try_lock() {
            Ok(()) => true,
            Err(TryLockError::WouldBlock) => return Ok(None),
            // No flock here (or NFS without a lock daemon): the record alone decides.
            Err(TryLockError::Error(e))
                if e.kind() == io::ErrorKind::Unsupported || e.raw_os_error() == Some(ENOLCK) =>
            {
                false
            }
            Err(TryLockError::Error(e)) => return Err(annotate(e, path)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let now = now_unix();
        let ttl = i64::try_from(TTL.as_secs()).unwrap_or(i64::MAX);
        match serde_json::from_slice::<Record>(&bytes) {
            Ok(r) if r.holder.is_empty() || r.holder == holder => {}
            // Expired, or absurdly far ahead (a wrong clock): free.
            Ok(r) if r.expires <= now || r.expires > now.saturating_add(2 * ttl) => {}
            // A holder on this machine whose process is gone (killed before it could let
            // go): its flock went with it, and so does its lease.
            Ok(r) if flocked && holder_is_dead_here(&r.holder, holder) => {}
            Ok(_) => return Ok(None),
            // Being rewritten right now (another instance without flock), or garbage: busy
            // for a moment, then free.
            Err(_) if !bytes.is_empty() && modified_within(&file, Duration::from_secs(10)) => {
                return Ok(None);
            }
            Err(_) => {}
        }
        let mut lease = Self {
            file,
            holder: holder.to_owned(),
        };
        lease.renew()?;
        Ok(Some(lease))
    }

    /// Extends the lease by [`TTL`] from now.
    pub(crate) fn renew(&mut self) -> io::Result<()> {
        let ttl = i64::try_from(TTL.as_secs()).unwrap_or(i64::MAX);
        let record = Record {
            holder: self.holder.clone(),
            expires: now_unix().saturating_add(ttl),
        };
        self.write(&serde_json::to_vec(&record).map_err(io::Error::other)?)
    }

    /// Overwrites the record in place, then cuts what is left of a longer one (a reader
    /// never sees an empty file).
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.rewind()?;
        self.file.write_all(bytes)?;
        self.file.set_len(bytes.len() as u64)?;
        self.file.sync_data()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = self.write(b"{}");
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("anygate-lease-{tag}-{}", std::process::id()))
    }

    #[test]
    fn one_holder_at_a_time_and_the_lease_is_free_once_dropped() {
        let p = path("one");
        let _ = std::fs::remove_file(&p);
        let a = Lease::acquire(&p, "a").expect("io").expect("a takes it");
        assert!(
            Lease::acquire(&p, "b").expect("io").is_none(),
            "b must wait"
        );
        drop(a);
        let b = Lease::acquire(&p, "b").expect("io");
        assert!(b.is_some(), "free after a let go");
        drop(b);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_dead_holder_on_this_machine_loses_its_lease_and_a_far_future_one_is_ignored() {
        let p = path("dead");
        let me = holder_id();
        let host = me.rsplitn(3, ':').nth(2).expect("host").to_owned();
        // No process has pid 4194304 (above Linux's pid_max).
        let dead = Record {
            holder: format!("{host}:4194304:1"),
            expires: now_unix() + 60,
        };
        std::fs::write(&p, serde_json::to_vec(&dead).expect("json")).expect("write");
        assert!(
            Lease::acquire(&p, &me).expect("io").is_some(),
            "a dead holder's lease is taken over"
        );
        let alive = Record {
            holder: format!("{host}:{}:1", std::process::id()),
            expires: now_unix() + 60,
        };
        std::fs::write(&p, serde_json::to_vec(&alive).expect("json")).expect("write");
        assert!(
            Lease::acquire(&p, &me).expect("io").is_none(),
            "a live one is respected"
        );
        let wrong_clock = Record {
            holder: "elsewhere:1:1".into(),
            expires: now_unix() + 365 * 86_400,
        };
        std::fs::write(&p, serde_json::to_vec(&wrong_clock).expect("json")).expect("write");
        assert!(
            Lease::acquire(&p, &me).expect("io").is_some(),
            "a year ahead is not a lease"
        );
        std::fs::write(&p, b"{\"holder\":\"half-writ").expect("write");
        assert!(
            Lease::acquire(&p, &me).expect("io").is_none(),
            "being rewritten: busy"
        );
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn an_unexpired_record_of_another_holder_is_respected_without_flock_and_an_expired_one_is_not()
    {
        let p = path("record");
        // As an instance on another NFS client would leave it: no flock seen here.
        let live = Record {
            holder: "other:1:1".into(),
            expires: now_unix() + 60,
        };
        std::fs::write(&p, serde_json::to_vec(&live).expect("json")).expect("write");
        assert!(Lease::acquire(&p, "me").expect("io").is_none());
        let dead = Record {
            holder: "other:1:1".into(),
            expires: now_unix() - 1,
        };
        std::fs::write(&p, serde_json::to_vec(&dead).expect("json")).expect("write");
        let l = Lease::acquire(&p, "me")
            .expect("io")
            .expect("expired: taken over");
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(text.contains("\"me\""), "{text}");
        drop(l);
        let _ = std::fs::remove_file(&p);
    }
}
