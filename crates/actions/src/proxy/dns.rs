//! Host names of upstreams, resolved off the workers and cached for `proxy.dns_ttl`.
//!
//! `getaddrinfo` blocks and reports no TTL, so a lookup runs on a thread of its own
//! ([`anygate_runtime::net::resolve`]) and its answer is kept for the configured TTL
//! (nginx's `resolver ... valid=`). When it expires, the next request starts a lookup in
//! the background and goes on with the old addresses meanwhile; only a request that finds
//! no address at all waits for a lookup. A failed lookup is remembered for a second, so a
//! missing name costs one lookup per second, not one per request. IP literals never expire
//! and never touch a resolver.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anygate_runtime::time;
use arc_swap::ArcSwapOption;

/// How long a failed lookup is remembered.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Addresses of a host, valid until `expires`.
#[derive(Debug)]
pub struct Resolved {
    /// In the resolver's order; empty when the name did not resolve.
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
    refreshing: AtomicBool,
}

impl HostEntry {
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
            refreshing: AtomicBool::new(false),
        })
    }

    /// The addresses to use now. Waits only when nothing usable is known (first use, or a
    /// failure that has expired); an expired success is used while it is refreshed.
    pub async fn addrs(self: &Arc<Self>) -> Arc<Resolved> {
        if let Some(r) = self.current.load_full() {
            if r.is_fresh(time::now()) {
                return r;
            }
            if !r.addrs.is_empty() {
                if !self.refreshing.swap(true, Ordering::AcqRel) {
                    let entry = self.clone();
                    anygate_runtime::spawn(async move {
                        entry.lookup().await;
                        entry.refreshing.store(false, Ordering::Release);
                    });
                }
                return r;
            }
        }
        self.lookup().await
    }

    async fn lookup(&self) -> Arc<Resolved> {
        let addrs = anygate_runtime::net::resolve(&self.host, self.port)
            .await
            .unwrap_or_default();
        let ttl = if addrs.is_empty() {
            NEGATIVE_TTL.min(self.ttl)
        } else {
            self.ttl
        };
        let resolved = Arc::new(Resolved {
            addrs,
            expires: Some(time::now() + ttl),
        });
        self.current.store(Some(resolved.clone()));
        resolved
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
