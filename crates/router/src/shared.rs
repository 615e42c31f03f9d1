//! Atomic replacement of a whole router (RCU).
//!
//! A reload builds a new [`Router`] off the hot path, then [`SharedRouter::store`] swaps
//! it in atomically: lookups already running keep the old table until they finish, new ones
//! see the new table, nobody waits. Workers read through a per-worker [`arc_swap::Cache`]
//! ([`SharedRouter::cache`]), which costs one relaxed load per request while the table is
//! unchanged. Never hold a loaded table across an I/O wait: take it, route, drop it.

use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};

use crate::tree::Router;

/// The current router, replaceable while lookups continue.
#[derive(Debug)]
pub struct SharedRouter<T> {
    current: Arc<ArcSwap<Router<T>>>,
}

impl<T> Clone for SharedRouter<T> {
    fn clone(&self) -> Self {
        Self {
            current: self.current.clone(),
        }
    }
}

impl<T> SharedRouter<T> {
    /// Starts with `router`.
    pub fn new(router: Router<T>) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(router)),
        }
    }

    /// The current router.
    pub fn load(&self) -> Arc<Router<T>> {
        self.current.load_full()
    }

    /// Replaces the router; returns the previous one.
    pub fn store(&self, router: Router<T>) -> Arc<Router<T>> {
        self.current.swap(Arc::new(router))
    }

    /// A per-worker read cache.
    pub fn cache(&self) -> Cache<Arc<ArcSwap<Router<T>>>, Arc<Router<T>>> {
        Cache::new(self.current.clone())
    }
}
