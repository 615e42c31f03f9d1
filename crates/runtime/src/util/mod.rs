//! Small data structures used across the runtime.

pub(crate) mod atomic_waker;
pub(crate) mod event;
pub(crate) mod slab;
