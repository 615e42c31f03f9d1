//! The one import point for synchronisation primitives.
//!
//! Every atomic and `Arc` of the scheduler, the reactor and the wakers comes through here, so
//! that a `cfg(loom)` build can swap in loom's model-checked versions without touching the
//! algorithms (the pattern of `tokio/src/loom`).

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
