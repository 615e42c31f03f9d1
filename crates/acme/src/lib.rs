//! `anygate-acme`: automatic certificates from an ACME CA (RFC 8555), on a control-plane
//! thread.
//!
//! # What is here
//! - [`Acme::start`]: loads the certificates the storage directory holds (served at once),
//!   then runs the loop of [`client`] on its own thread: order when a name has no usable
//!   certificate, renew before `renew_before`, retry with exponential backoff, and pick up
//!   what other instances sharing the directory obtained.
//! - Challenges: HTTP-01 answers and TLS-ALPN-01 certificates are published into
//!   [`anygate_tls::Managed`], which the plain listener's gate and the TLS handshake read;
//!   and into the storage directory, so that an instance that did not place the order
//!   answers too.
//! - [`store`]: the files (atomic writes, keys `0600`, corrupt files moved aside);
//!   [`lease`]: one instance orders a given name at a time.
//!
//! # Design
//! - instant-acme does the protocol (JWS, nonces, the `badNonce` retry) with an HTTP client
//!   of ours: blocking ureq on this thread, our crypto provider, explicit roots. Its
//!   futures complete at their first poll; its `poll_*` helpers (a tokio timer) are never
//!   called: the loop waits with `thread::park_timeout`.
//! - Never on a worker: workers only read the `ArcSwap`ped tables of `Managed`.
//!
//! # Invariants
//! - The certificate in service stays in service until its replacement is installed.
//! - A failed order never turns into a request storm: one order per name at a time, and
//!   exponential backoff shared through the storage directory.
//!
//! # Non-goals (for now)
//! DNS-01 (and so wildcards), ACME Renewal Information (RFC 9773; the CA on this machine,
//! Pebble 2.4, has none to test against), External Account Binding, revocation.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// The control plane: this crate's clock and its one lock (the HTTP client's last
// `Retry-After`) are used on the ACME thread only, never by a request.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod client;
mod exec;
mod http;
pub mod lease;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anygate_tls::Managed;

pub use client::TICK;

/// How long [`Acme::stop`] waits for the ACME thread.
pub const STOP_WAIT: Duration = Duration::from_secs(2);
pub use store::NameState;

/// The challenge the CA validates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP-01 (port 80).
    #[default]
    Http01,
    /// TLS-ALPN-01 (port 443, ALPN `acme-tls/1`).
    TlsAlpn01,
}

impl Challenge {
    /// The RFC 8555 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// What the client works from (the `acme` section, paths resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The CA's directory URL.
    pub directory: String,
    /// The account's contact.
    pub email: Option<String>,
    /// The roots the CA's HTTPS is verified against (default: the system's).
    pub ca_bundle: Option<PathBuf>,
    /// The challenge to answer.
    pub challenge: Challenge,
    /// The storage directory.
    pub storage: PathBuf,
    /// The names, one certificate each.
    pub domains: Vec<String>,
    /// Renew this long before `notAfter`.
    pub renew_before: Duration,
    /// The first wait after a failure.
    pub retry_min: Duration,
    /// The longest wait after failures.
    pub retry_max: Duration,
}

/// The running client (see the [crate docs](crate)); stopped when dropped.
#[derive(Debug)]
pub struct Acme {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Says when the loop has ended.
    done: std::sync::mpsc::Receiver<()>,
}

impl Acme {
    /// Installs the stored certificates into `managed`, then starts the loop on a thread
    /// made by `spawn` (the binary's side-thread spawner). An unusable storage directory
    /// or CA bundle is an error here, before anything is served.
    pub fn start(
        settings: Settings,
        managed: Arc<Managed>,
        spawn: impl FnOnce(Box<dyn FnOnce() + Send>) -> std::io::Result<JoinHandle<()>>,
    ) -> Result<Self, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut client = client::Client::new(settings, managed, stop.clone())?;
        client.load_stored();
        let (tx, done) = std::sync::mpsc::sync_channel(1);
        let thread = spawn(Box::new(move || {
            // A panic must not end renewals for good: said, and the loop starts again
            // from what the storage holds.
            let guarded = |f: &mut dyn FnMut()| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok()
            };
            while !guarded(&mut || client.run()) {
                anygate_obs::log::server(
                    anygate_obs::log::Level::Error,
                    "acme: the ACME loop panicked; the order under way counts as failed, \
                     the loop starts again in a minute",
                );
                // Even the clean-up is guarded: nothing here may end renewals for good.
                let mut stopped = false;
                let _ = guarded(&mut || {
                    client.recover();
                    stopped = !client.pause(Duration::from_secs(60));
                });
                if stopped {
                    break;
                }
            }
            let _ = tx.send(());
        }))
        .map_err(|e| format!("cannot start the ACME thread: {e}"))?;
        Ok(Self {
            stop,
            thread: Some(thread),
            done,
        })
    }

    /// Stops the loop: an order under way is abandoned at its next wait (not counted as
    /// a failure; its lease is let go). Waits up to [`STOP_WAIT`] for the thread, which
    /// may be inside one HTTP request to the CA; past that it is left to end with the
    /// process.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            if self.done.recv_timeout(STOP_WAIT).is_ok() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Acme {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the storage directory says of `name` (for `anygate diagnose`): its state, and
/// the stored certificate's `notAfter` (seconds since the Unix epoch) if it loads.
pub fn status(storage: &std::path::Path, name: &str) -> (NameState, Option<i64>) {
    let s = store::Storage::at(storage);
    let not_after = s.load(name).ok().map(|c| c.facts().not_after);
    (s.state(name), not_after)
}
