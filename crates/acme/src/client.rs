//! The control-plane loop: for each managed name, load what the storage holds, order when
//! there is nothing valid or renewal is due, and install the result without a restart.
//!
//! Once a second ([`TICK`]) the thread looks at the storage directory: a certificate file
//! that changed (written by this instance, another one sharing the directory, or an
//! operator) is read and installed; the challenge directories are mirrored into the live
//! answers. A name is due when it has no usable certificate, or from
//! `max(not_after − renew_before, not_before + lifetime / 3)` on (so a `renew_before`
//! longer than the CA's lifetime renews at a third of it instead of in a loop). An order
//! needs the name's lease ([`crate::lease`]); after a failure the name waits
//! `retry_min · 2^(failures−1)` (capped at `retry_max`, ±10 % jitter) or the CA's
//! `Retry-After`, whichever is longer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anygate_obs::log::{self, Level};
use anygate_tls::{Certificate, Managed};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus,
};

use crate::exec::block_on;
use crate::http::Http;
use crate::lease::{self, Lease};
use crate::store::{self, NameState, Stamp, Storage, now_unix};
use crate::{Challenge, Settings};

/// How often the storage directory is looked at.
pub const TICK: Duration = Duration::from_secs(1);
/// After publishing a challenge, how long other instances get to pick it up from the
/// storage directory before the CA is told to validate (more than one [`TICK`]).
const PROPAGATION: Duration = Duration::from_secs(3);
/// The longest a shared backoff (or a CA's `Retry-After`) is believed: a `next_attempt`
/// further ahead was written by a wrong clock (or by hand) and is ignored.
const MAX_SHARED_WAIT: Duration = Duration::from_secs(86_400);
/// An order that is not done after this has failed.
const ORDER_DEADLINE: Duration = Duration::from_secs(120);

/// One managed name.
#[derive(Debug)]
struct Name {
    name: String,
    /// The certificate file as last installed.
    stamp: Stamp,
    /// `notBefore`, `notAfter` of the installed certificate.
    validity: Option<(i64, i64)>,
    /// No order before this (after a failure).
    not_before: Option<Instant>,
    /// The day (since the Unix epoch) of the last expiry warning.
    warned: i64,
}

/// The ACME client's state on its thread.
pub(crate) struct Client {
    settings: Settings,
    managed: Arc<Managed>,
    store: Storage,
    http: Http,
    holder: String,
    account: Option<Account>,
    names: Vec<Name>,
    /// The answers live now (this instance's and the mirrored ones), to skip identical
    /// updates.
    live: Answers,
    /// The answers of this instance's order under way, and the files it wrote for them.
    own: Own,
    /// The name being ordered (so that a panic during its order is recorded as a failure).
    ordering: Option<usize>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("names", &self.names)
            .field("storage", &self.store)
            .finish_non_exhaustive()
    }
}

/// Why an attempt did not produce a certificate.
type Failure = String;

/// What an attempt says when the loop is stopped during it: abandoned, not failed.
const STOPPED: &str = "stopped";

/// Challenge answers: HTTP-01 token → key authorization, TLS-ALPN-01 name → digest.
#[derive(Debug, Default, PartialEq, Eq)]
struct Answers {
    http01: HashMap<String, Box<str>>,
    alpn: Vec<(String, [u8; 32])>,
}

/// This instance's published answers.
#[derive(Debug, Default)]
struct Own {
    http01: HashMap<String, Box<str>>,
    alpn: Vec<(String, [u8; 32])>,
    files: Vec<std::path::PathBuf>,
}

impl Client {
    pub(crate) fn new(
        settings: Settings,
        managed: Arc<Managed>,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, String> {
        let store = Storage::open(&settings.storage)
            .map_err(|e| format!("acme.storage {}: {e}", settings.storage.display()))?;
        let http =
            Http::new(settings.ca_bundle.as_deref()).map_err(|e| format!("acme.ca_bundle: {e}"))?;
        let names = settings
            .domains
            .iter()
            .map(|n| Name {
                name: n.clone(),
                stamp: None,
                validity: None,
                not_before: None,
                warned: -1,
            })
            .collect();
        Ok(Self {
            settings,
            managed,
            store,
            http,
            holder: lease::holder_id(),
            account: None,
            names,
            live: Answers::default(),
            own: Own::default(),
            ordering: None,
            stop,
        })
    }

    /// Loads every stored certificate (before the listeners serve), so that a restart
    /// serves at once what it had.
    pub(crate) fn load_stored(&mut self) {
        log::server(
            Level::Info,
            &format!(
                "acme: {} name(s) by {} from {}, storage {}, as instance {}",
                self.names.len(),
                self.settings.challenge.as_str(),
                self.settings.directory,
                self.settings.storage.display(),
                self.holder
            ),
        );
        for i in 0..self.names.len() {
            self.load_if_changed(i, false);
        }
    }

    /// The loop, until `stop`.
    pub(crate) fn run(&mut self) {
        while !self.stopped() {
            self.mirror_challenges();
            for i in 0..self.names.len() {
                if self.stopped() {
                    return;
                }
                self.load_if_changed(i, false);
                if self.due(i) {
                    self.attempt(i);
                }
                self.warn_if_expiring(i);
            }
            thread::park_timeout(TICK);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Waits `d` unless stopped first (`false` then), mirroring the other instances'
    /// challenges at every tick meanwhile (an order here must not stop this instance
    /// from answering theirs).
    pub(crate) fn pause(&mut self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while !self.stopped() {
            let now = Instant::now();
            if now >= end {
                return true;
            }
            thread::park_timeout((end - now).min(TICK));
            self.mirror_challenges();
        }
        false
    }

    /// Installs the stored certificate of name `i` if its file changed since. A pair that
    /// does not load is moved aside only `under_lease` (no other instance is writing it
    /// then); otherwise it may be half of a pair being replaced, and is looked at again.
    fn load_if_changed(&mut self, i: usize, under_lease: bool) {
        let name = self.names[i].name.clone();
        let cert_path = self.store.cert(&name);
        let stamp = store::stamp(&cert_path);
        // Unchanged: looked at again only under the lease, and only if it did not load.
        let unchanged = stamp == self.names[i].stamp;
        if stamp.is_none() || (unchanged && (!under_lease || self.names[i].validity.is_some())) {
            return;
        }
        let loaded = self.store.load(&name);
        let problem = match loaded {
            Ok(cert) => {
                let facts = cert.facts();
                if facts
                    .dns_names
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(&name))
                {
                    self.names[i].validity = Some((facts.not_before, facts.not_after));
                    self.managed.install(&name, &cert);
                    self.names[i].stamp = stamp;
                    let days = (facts.not_after - now_unix()) / 86_400;
                    log::server(
                        Level::Info,
                        &format!(
                            "acme: serving the stored certificate of `{name}` (expires in {days} days)"
                        ),
                    );
                    return;
                }
                format!("it does not name `{name}`")
            }
            Err(e) => e,
        };
        self.names[i].stamp = stamp;
        self.names[i].validity = None;
        if under_lease {
            let said = store::quarantine(&cert_path);
            log::server(
                Level::Error,
                &format!(
                    "acme: `{}` is not a usable certificate and key for `{name}` ({problem}); {said}; a new one will be ordered",
                    cert_path.display()
                ),
            );
        }
    }

    /// Warns, once a day, about a served certificate within
    /// [`EXPIRY_WARNING_DAYS`](anygate_tls::EXPIRY_WARNING_DAYS) of its expiry (with the
    /// default `renew_before`, one whose renewal keeps failing), as for a configured one.
    fn warn_if_expiring(&mut self, i: usize) {
        let Some((_, not_after)) = self.names[i].validity else {
            return;
        };
        let now = now_unix();
        let left = not_after.saturating_sub(now);
        let today = now / 86_400;
        if left < anygate_tls::EXPIRY_WARNING_DAYS * 86_400 && self.names[i].warned != today {
            self.names[i].warned = today;
            let why = match &self.store.state(&self.names[i].name).last_error {
                Some(e) => format!("; the last order failed: {e}"),
                None => String::new(),
            };
            log::server(
                Level::Warn,
                &format!(
                    "acme: the certificate of `{}` expires in {} days{why}",
                    self.names[i].name,
                    left / 86_400
                ),
            );
        }
    }

    /// When name `i` should be renewed (Unix seconds); `None`: now (nothing valid).
    fn renew_at(&self, i: usize) -> Option<i64> {
        let (not_before, not_after) = self.names[i].validity?;
        if not_after <= now_unix() {
            return None;
        }
        let before = i64::try_from(self.settings.renew_before.as_secs()).unwrap_or(i64::MAX);
        let third = (not_after - not_before).max(0) / 3;
        Some((not_after.saturating_sub(before)).max(not_before + third))
    }

    fn due(&self, i: usize) -> bool {
        if self.names[i].not_before.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        self.renew_at(i).is_none_or(|at| now_unix() >= at)
    }

    /// Orders a certificate for name `i` if its lease can be had.
    fn attempt(&mut self, i: usize) {
        let name = self.names[i].name.clone();
        let mut lease = match Lease::acquire(&self.store.lock(&name), &self.holder) {
            Ok(Some(l)) => l,
            Ok(None) => return, // another instance is at it: its result is picked up
            Err(e) => {
                log::server(Level::Error, &format!("acme: `{name}`: the lease: {e}"));
                self.names[i].not_before = Some(Instant::now() + self.settings.retry_min);
                return;
            }
        };
        // Another instance may have finished just before the lease was free.
        self.load_if_changed(i, true);
        if !self.due(i) {
            return;
        }
        let mut state = self.store.state(&name);
        let ahead = state
            .next_attempt
            .map(|next| Duration::from_secs(u64::try_from(next - now_unix()).unwrap_or(0)));
        if let Some(wait) = ahead
            && !wait.is_zero()
            && wait <= self.settings.retry_max.max(MAX_SHARED_WAIT)
        {
            // An instance failed recently (this one before a restart, or another): respect
            // its backoff.
            self.names[i].not_before = Some(Instant::now() + wait);
            return;
        }
        state.last_attempt = Some(now_unix());
        state.orders = state.orders.saturating_add(1);
        let _ = self.store.set_state(&name, &state);
        let renewing = self.names[i].validity.is_some();
        log::server(
            Level::Info,
            &format!(
                "acme: {} a certificate for `{name}` ({})",
                if renewing { "renewing" } else { "ordering" },
                self.settings.challenge.as_str()
            ),
        );
        let _ = lease.renew();
        let _ = self.http.take_retry_after();
        self.ordering = Some(i);
        // Checked whole (it loads, and it names the domain) before anything is written: an
        // unusable answer from the CA is a failed order, the stored pair stays.
        let result = self.order(&name).and_then(|(chain, key)| {
            let cert = Certificate::from_pem(chain.as_bytes(), key.as_bytes())
                .map_err(|e| format!("the CA's certificate is not usable: {e}"))?;
            if !cert
                .facts()
                .dns_names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&name))
            {
                return Err("the CA's certificate does not name the domain".to_owned());
            }
            self.store
                .put_certificate(&name, chain.as_bytes(), key.as_bytes())
                .map_err(|e| format!("cannot store the new certificate: {e}"))?;
            Ok(cert)
        });
        self.clear_challenges();
        self.ordering = None;
        match result {
            Err(why) if why == STOPPED => {
                // Abandoned at shutdown: neither a failure nor a backoff for the next start.
                state.orders = state.orders.saturating_sub(1);
                let _ = self.store.set_state(&name, &state);
                return;
            }
            Ok(cert) => {
                anygate_obs::metrics::acme_order(true);
                let f = cert.facts();
                self.names[i].validity = Some((f.not_before, f.not_after));
                self.managed.install(&name, &cert);
                self.names[i].stamp = store::stamp(&self.store.cert(&name));
                log::server(
                    Level::Info,
                    &format!(
                        "acme: `{name}`: new certificate installed (expires in {} days)",
                        (f.not_after - now_unix()) / 86_400
                    ),
                );
                state.last_error = None;
                state.failures = 0;
                state.next_attempt = None;
                self.names[i].not_before = None;
            }
            Err(why) => self.failed(i, &mut state, &why),
        }
        let _ = self.store.set_state(&name, &state);
        drop(lease);
    }

    /// After a panic of the loop: the order under way (if any) counts as failed, with its
    /// backoff, and its challenges are withdrawn.
    pub(crate) fn recover(&mut self) {
        self.clear_challenges();
        if let Some(i) = self.ordering.take() {
            let name = self.names[i].name.clone();
            let mut state = self.store.state(&name);
            self.failed(i, &mut state, "the ACME loop panicked during the order");
        }
    }

    /// Records a failed order of name `i` in `state` and schedules the next one.
    fn failed(&mut self, i: usize, state: &mut NameState, why: &str) {
        let name = self.names[i].name.clone();
        anygate_obs::metrics::acme_order(false);
        state.failures = state.failures.saturating_add(1);
        let wait = self.backoff(state.failures);
        state.last_error = Some(why.to_owned());
        state.next_attempt =
            Some(now_unix().saturating_add(i64::try_from(wait.as_secs().max(1)).unwrap_or(0)));
        self.names[i].not_before = Some(Instant::now() + wait);
        let current = match self.names[i].validity {
            Some((_, not_after)) => format!(
                "; the current certificate stays in service (expires in {} days)",
                (not_after - now_unix()) / 86_400
            ),
            None => String::new(),
        };
        // Stored before it is said: whoever reads the line (a test, an operator) finds the
        // state that goes with it (regression: the state file still said one failure less).
        let _ = self.store.set_state(&name, state);
        log::server(
            Level::Error,
            &format!(
                "acme: `{name}`: the order failed ({why}); next attempt in {}s{current}",
                wait.as_secs(),
            ),
        );
    }

    /// The wait after `failures` failures in a row (see the [module docs](self)).
    fn backoff(&self, failures: u32) -> Duration {
        // ±10 % so that instances failing together do not retry together.
        let seed = u64::from(std::process::id())
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos()),
            ));
        backoff(
            self.settings.retry_min,
            self.settings.retry_max,
            failures,
            seed,
            self.http.take_retry_after(),
        )
    }

    /// The account: loaded from storage, or created once (under the `account` lease)
    /// and stored.
    fn account(&mut self) -> Result<Account, Failure> {
        if let Some(a) = &self.account {
            return Ok(a.clone());
        }
        let path = self.store.account(&self.settings.directory);
        let http = || Box::new(self.http.clone());
        let stored = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<AccountCredentials>(&bytes) {
                Ok(c) => Some(c),
                Err(e) => {
                    let said = store::quarantine(&path);
                    log::server(
                        Level::Error,
                        &format!(
                            "acme: `{}` is not an account ({e}); {said}; a new account will be made",
                            path.display()
                        ),
                    );
                    None
                }
            },
            Err(_) => None,
        };
        let account = match stored {
            Some(c) => block_on(Account::builder_with_http(http()).from_credentials(c))
                .map_err(|e| format!("the stored account: {e}"))?,
            None => {
                let Some(_lease) = Lease::acquire(&self.store.lock("account"), &self.holder)
                    .map_err(|e| e.to_string())?
                else {
                    return Err("another instance is creating the account".to_owned());
                };
                // It may have been made while the lease was held elsewhere.
                if let Ok(bytes) = std::fs::read(&path)
                    && let Ok(c) = serde_json::from_slice::<AccountCredentials>(&bytes)
                {
                    block_on(Account::builder_with_http(http()).from_credentials(c))
                        .map_err(|e| format!("the stored account: {e}"))?
                } else {
                    let contact = self.settings.email.as_ref().map(|e| format!("mailto:{e}"));
                    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                    let (account, credentials) =
                        block_on(Account::builder_with_http(http()).create(
                            &NewAccount {
                                contact: &contacts,
                                terms_of_service_agreed: true,
                                only_return_existing: false,
                            },
                            self.settings.directory.clone(),
                            None,
                        ))
                        .map_err(|e| format!("creating the account: {e}"))?;
                    let json = serde_json::to_vec_pretty(&credentials)
                        .map_err(|e| format!("the account: {e}"))?;
                    store::write_atomic(&path, &json, store::SECRET)
                        .map_err(|e| format!("storing the account: {e}"))?;
                    log::server(
                        Level::Info,
                        &format!("acme: account created at {}", self.settings.directory),
                    );
                    account
                }
            }
        };
        self.account = Some(account.clone());
        Ok(account)
    }

    /// One order for `name`: the chain and the private key, both PEM.
    fn order(&mut self, name: &str) -> Result<(String, String), Failure> {
        let account = self.account()?;
        let ids = [Identifier::Dns(name.to_owned())];
        let mut order = block_on(account.new_order(&NewOrder::new(&ids)))
            .map_err(|e| format!("new order: {e}"))?;
        let kind = match self.settings.challenge {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        // Publish every challenge first, then tell the CA.
        let mut http01 = HashMap::new();
        let mut alpn = Vec::new();
        let mut ready_urls = 0;
        block_on(async {
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
                if authz.status == AuthorizationStatus::Valid {
                    continue;
                }
                let Some(challenge) = authz.challenge(kind.clone()) else {
                    return Err(format!(
                        "the CA offers no {} challenge for `{name}`",
                        self.settings.challenge.as_str()
                    ));
                };
                let key_auth = challenge.key_authorization();
                match self.settings.challenge {
                    Challenge::Http01 => {
                        http01.insert(challenge.token.clone(), key_auth.as_str().into());
                    }
                    Challenge::TlsAlpn01 => {
                        let mut digest = [0u8; 32];
                        digest.copy_from_slice(key_auth.digest().as_ref());
                        alpn.push((name.to_owned(), digest));
                    }
                }
                ready_urls += 1;
            }
            Ok::<(), Failure>(())
        })?;
        if ready_urls > 0 {
            self.publish(&http01, &alpn)?;
            if !self.pause(PROPAGATION) {
                return Err(STOPPED.to_owned());
            }
            block_on(async {
                let mut authzs = order.authorizations();
                while let Some(authz) = authzs.next().await {
                    let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
                    if authz.status != AuthorizationStatus::Pending {
                        continue;
                    }
                    if let Some(mut c) = authz.challenge(kind.clone()) {
                        c.set_ready()
                            .await
                            .map_err(|e| format!("challenge ready: {e}"))?;
                    }
                }
                Ok::<(), Failure>(())
            })?;
        }
        // Wait for validation, politely.
        let start = Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            let status = block_on(order.refresh())
                .map_err(|e| format!("order status: {e}"))?
                .status;
            match status {
                OrderStatus::Ready | OrderStatus::Valid => break,
                OrderStatus::Invalid => return Err(self.why_invalid(&mut order)),
                OrderStatus::Pending | OrderStatus::Processing => {}
            }
            if start.elapsed() > ORDER_DEADLINE {
                return Err("the CA did not validate within 2 minutes".to_owned());
            }
            if !self.pause(delay) {
                return Err(STOPPED.to_owned());
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        // Our own key (ECDSA P-256) and CSR.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("key: {e}"))?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])
            .map_err(|e| format!("CSR: {e}"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| format!("CSR: {e}"))?;
        if order.state().status != OrderStatus::Ready {
            // Finalized by someone else (a reused order): its key is not ours.
            return Err("the CA's order was already finalized with another key".to_owned());
        }
        block_on(order.finalize_csr(csr.der())).map_err(|e| format!("finalize: {e}"))?;
        let mut delay = Duration::from_millis(250);
        let chain = loop {
            match block_on(order.certificate()).map_err(|e| format!("certificate: {e}"))? {
                Some(chain) => break chain,
                None if start.elapsed() > ORDER_DEADLINE => {
                    return Err("the CA did not issue within 2 minutes".to_owned());
                }
                None => {
                    if !self.pause(delay) {
                        return Err(STOPPED.to_owned());
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        Ok((chain, key.serialize_pem()))
    }

    /// What the CA said about an invalid order (each failed challenge's problem).
    fn why_invalid(&self, order: &mut instant_acme::Order) -> Failure {
        let mut why: Vec<String> = Vec::new();
        if let Some(p) = &order.state().error {
            why.push(p.to_string());
        }
        block_on(async {
            let mut authzs = order.authorizations();
            while let Some(Ok(authz)) = authzs.next().await {
                for c in &authz.challenges {
                    if let Some(p) = &c.error {
                        why.push(p.to_string());
                    }
                }
            }
        });
        if why.is_empty() {
            "the CA refused the order".to_owned()
        } else {
            format!("the CA refused the order: {}", why.join("; "))
        }
    }

    /// Makes the answers live here at once and visible to the other instances.
    fn publish(
        &mut self,
        http01: &HashMap<String, Box<str>>,
        alpn: &[(String, [u8; 32])],
    ) -> Result<(), Failure> {
        for (token, key_auth) in http01 {
            if token.is_empty()
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "the CA sent a token that is not base64url: `{token}`"
                ));
            }
            let path = self.store.http01_dir().join(token);
            store::write_atomic(&path, key_auth.as_bytes(), store::PUBLIC)
                .map_err(|e| e.to_string())?;
            self.own.files.push(path);
            self.own.http01.insert(token.clone(), key_auth.clone());
        }
        for (name, digest) in alpn {
            let mut hex = Vec::with_capacity(64);
            anygate_obs::escape::hex(&mut hex, digest);
            let path = self.store.alpn_dir().join(name);
            store::write_atomic(&path, &hex, store::PUBLIC).map_err(|e| e.to_string())?;
            self.own.files.push(path);
            self.own.alpn.push((name.clone(), *digest));
        }
        self.mirror_challenges();
        Ok(())
    }

    /// Removes the challenges this instance published (another's stay).
    fn clear_challenges(&mut self) {
        for path in std::mem::take(&mut self.own.files) {
            let _ = std::fs::remove_file(path);
        }
        self.own = Own::default();
        self.mirror_challenges();
    }

    /// The live answers: this instance's own, and whatever the challenge directories hold
    /// (another instance's order), read at every tick (a few small files; no timestamp is
    /// trusted, NFS caches them). A file older than twice an order's deadline was left by
    /// an instance that died mid-order and is removed.
    fn mirror_challenges(&mut self) {
        // Far beyond any order's life, and beyond any clock skew between instances.
        let stale = Duration::from_secs(3_600);
        let mut http01 = self.own.http01.clone();
        for (token, key_auth) in store::read_challenges(&self.store.http01_dir(), stale) {
            http01
                .entry(token)
                .or_insert_with(|| key_auth.into_boxed_str());
        }
        let mut alpn = self.own.alpn.clone();
        for (name, hex) in store::read_challenges(&self.store.alpn_dir(), stale) {
            let mut d = [0u8; 32];
            if anygate_obs::escape::unhex(hex.as_bytes(), &mut d).is_some()
                && !alpn.iter().any(|(n, _)| *n == name)
            {
                alpn.push((name, d));
            }
        }
        alpn.sort();
        if self.live.http01 != http01 {
            self.managed.set_http01(http01.clone());
            self.live.http01 = http01;
        }
        if self.live.alpn != alpn {
            if let Err(e) = self.managed.set_tls_alpn01(&alpn) {
                log::server(Level::Error, &format!("acme: TLS-ALPN-01 answer: {e}"));
            }
            self.live.alpn = alpn;
        }
    }
}

/// `retry_min · 2^(failures−1)`, at most `retry_max`, scaled by 0.9–1.1 from `seed`; the
/// CA's `Retry-After` when it is longer.
fn backoff(
    retry_min: Duration,
    retry_max: Duration,
    failures: u32,
    seed: u64,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = retry_min
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(retry_max);
    let jitter = (seed % 201) as f64 / 1000.0 - 0.1;
    let waited = exp.mul_f64(1.0 + jitter);
    retry_after.map_or(waited, |after| waited.max(after))
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_within_its_bounds_and_a_longer_retry_after_wins() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(3_600));
        for seed in [0, 100, 200, 12_345] {
            for (failures, base) in [(1, 60), (2, 120), (3, 240), (7, 3_600), (40, 3_600)] {
                let w = backoff(min, max, failures, seed, None).as_secs_f64();
                let base = f64::from(base);
                assert!(
                    w >= base * 0.9 - 1e-6 && w <= base * 1.1 + 1e-6,
                    "{failures}: {w}"
                );
            }
        }
        let after = Duration::from_secs(7_200);
        assert_eq!(backoff(min, max, 1, 0, Some(after)), after);
        let short = Duration::from_secs(1);
        assert!(backoff(min, max, 1, 0, Some(short)) >= Duration::from_secs(54));
    }

    #[test]
    fn hex_digests_round_trip_and_bad_ones_are_refused() {
        // The TLS-ALPN-01 challenge files' format, written and read with anygate-obs's hex.
        let d: [u8; 32] = std::array::from_fn(|i| (i * 7) as u8);
        let mut hex = Vec::new();
        anygate_obs::escape::hex(&mut hex, &d);
        let mut back = [0u8; 32];
        assert_eq!(anygate_obs::escape::unhex(&hex, &mut back), Some(()));
        assert_eq!(back, d);
        assert_eq!(anygate_obs::escape::unhex(b"00", &mut back), None);
        assert_eq!(
            anygate_obs::escape::unhex("zz".repeat(32).as_bytes(), &mut back),
            None
        );
    }
}
