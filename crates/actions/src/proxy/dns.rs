//! Host names of upstreams, resolved off the workers and cached for `proxy.dns_ttl`.
//!
//! `getaddrinfo` blocks and reports no TTL, so a lookup runs on a thread of its own
//! ([`anygate_runtime::net::resolve`]) and its answer is kept for the configured TTL
//! (nginx's `resolver ... valid=`).
//!
//! - At most one lookup per host is in flight; every request that needs it awaits the same
//!   one, and a detached task stores its answer even if they all give up.
//! - An expired answer is used while the next lookup runs in the background (stale while
//!   revalidate); a failed lookup keeps the previous addresses (stale if error) and is tried
//!   again a second later.
//! - Only a request that finds no address at all waits, bounded by the connect timeout.
//! - IP literals never expire and never touch a resolver.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anygate_runtime::net::Resolve;
use anygate_runtime::time;
use arc_swap::ArcSwapOption;

/// How long a failed lookup is remembered before the next one.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Addresses of a host, valid until `expires`.
#[derive(Debug)]
pub struct Resolved {
    /// In the resolver's order; empty when the name did not resolve (and nothing was known
    /// before).
    pub addrs: Vec<SocketAddr>,
    expires: Option<Instant>,
}

impl Resolved {
    fn is_fresh(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

/// One `host:port` and its cached addresses.
#[derive(Debug)]
pub struct HostEntry {
    host: String,
    port: u16,
    ttl: Duration,
    current: ArcSwapOption<Resolved>,
    /// The lookup in flight, if any.
    inflight: ArcSwapOption<Resolve>,
}

impl HostEntry {
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as written (a name or an IP address), for TLS's server name.
    pub fn name(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// An entry for `host` (a name, an IPv4 address or a bracketed IPv6 address).
    pub fn new(host: &str, port: u16, ttl: Duration) -> Arc<Self> {
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        Arc::new(Self {
            host: host.to_owned(),
            port,
            ttl,
            current: ArcSwapOption::new(literal.map(|ip| {
                Arc::new(Resolved {
                    addrs: vec![SocketAddr::new(ip, port)],
                    expires: None,
                })
            })),
            inflight: ArcSwapOption::empty(),
        })
    }

    /// The addresses to use now. Waits only when nothing usable is known (first use, or a
    /// failure that has expired); an expired success is used while it is refreshed.
    pub async fn addrs(self: &Arc<Self>) -> Arc<Resolved> {
        let current = self.current.load_full();
        if let Some(r) = &current {
            if r.is_fresh(time::now()) {
                return r.clone();
            }
            let lookup = self.lookup();
            if !r.addrs.is_empty() {
                return r.clone();
            }
            drop(lookup);
        }
        // Nothing usable: wait for the lookup. Its task stores the answer; this request
        // uses the answer it got (a later lookup may already have replaced it).
        let answer = self.lookup().await.unwrap_or_default();
        Arc::new(Resolved {
            addrs: answer,
            expires: Some(time::now()),
        })
    }

    /// The lookup in flight, started if there is none (with a task that stores its answer).
    fn lookup(self: &Arc<Self>) -> Resolve {
        if let Some(r) = self.inflight.load_full() {
            return (*r).clone();
        }
        let lookup = Resolve::new(&self.host, self.port);
        let previous = self
            .inflight
            .compare_and_swap(&None::<Arc<Resolve>>, Some(Arc::new(lookup.clone())));
        if let Some(other) = &*previous {
            // Another request started one at the same moment: share it.
            return (**other).clone();
        }
        lookup.start();
        let entry = self.clone();
        let mine = lookup.clone();
        anygate_runtime::spawn(async move {
            let answer = mine.await;
            entry.store(answer.unwrap_or_default());
            entry.inflight.store(None);
        });
        lookup
    }

    /// Stores a lookup's addresses; an empty answer keeps the previous addresses if any.
    fn store(&self, addrs: Vec<SocketAddr>) {
        let now = time::now();
        if addrs.is_empty() {
            let kept = self
                .current
                .load_full()
                .map(|r| r.addrs.clone())
                .unwrap_or_default();
            self.current.store(Some(Arc::new(Resolved {
                addrs: kept,
                expires: Some(now + NEGATIVE_TTL.min(self.ttl)),
            })));
        } else {
            self.current.store(Some(Arc::new(Resolved {
                addrs,
                expires: Some(now + self.ttl),
            })));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_resolve_without_a_lookup_and_never_expire() {
        for (host, ip) in [("127.0.0.1", "127.0.0.1"), ("[::1]", "::1")] {
            let e = HostEntry::new(host, 80, Duration::from_millis(1));
            let r = e.current.load_full().expect("resolved at once");
            assert_eq!(r.addrs, vec![SocketAddr::new(ip.parse().unwrap(), 80)]);
            assert!(r.is_fresh(time::now() + Duration::from_secs(3600)));
        }
    }
}
