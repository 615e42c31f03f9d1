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
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => {
                // No flock here: the lease record alone decides.
            }
            Err(TryLockError::Error(e)) => return Err(annotate(e, path)),
        }
        // Anything but a live lease of another holder (garbage included) is free.
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        if let Ok(r) = serde_json::from_slice::<Record>(&bytes)
            && r.holder != holder
            && !r.holder.is_empty()
            && r.expires > now_unix()
        {
            return Ok(None);
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

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(bytes)?;
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
