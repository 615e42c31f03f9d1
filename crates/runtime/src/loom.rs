//! The one import point for synchronisation primitives.
//!
//! Every atomic and `Arc` of the scheduler, the reactor and the wakers comes through here
//! (the pattern of `tokio/src/loom`). Today these are std's own: there is no `cfg(loom)`
//! build and loom is not a dependency. The facade keeps adding one a local change: a
//! `cfg(loom)` branch here, and model tests beside the queue and the waker.

pub(crate) mod sync {
    pub(crate) use std::sync::Arc;

    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{
            AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
        };
    }
}

pub(crate) mod cell {
    pub(crate) use std::cell::UnsafeCell;
}
