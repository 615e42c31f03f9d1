//! `anygate-runtime`: the small, fast, `std::future`-based async runtime AnyGate runs on.
//!
//! # Purpose
//!
//! A gateway's hot path is "readiness event → parse → route → write". This crate gives it
//! exactly what it needs and nothing else: per-worker edge-triggered epoll reactors, a
//! work-stealing scheduler, per-worker timer wheels with a cached clock, TCP with
//! `writev`/`sendfile`, bounded buffer pools, signals, and an adapter so `h2` can run on it.
//! It knows nothing about HTTP.
//!
//! # Design
//!
//! - **Workers** ([`Builder::workers`], default one per core) each own a FIFO run queue, an
//!   epoll instance, a timer wheel and a buffer pool. Tasks woken on a worker run there;
//!   idle workers take from the global injector and steal from busy ones
//!   (`crossbeam-deque`). The idle and shutdown protocols are written in `sched`'s docs.
//! - **The reactor** (`reactor`) registers each descriptor once, edge-triggered, for both
//!   directions. Readiness and a tick share one atomic so a task that migrated between
//!   workers never loses a wake-up. The edge-triggered contract is in `sys::epoll`.
//! - **Tasks** (`task`) are one allocation holding the future inline, its state word, and
//!   its output. Panics are caught per poll; the worker goes on.
//! - **Time** ([`time`]): hierarchical wheel, millisecond ticks, O(1) insert and cancel,
//!   cancel on drop, never early.
//! - **FFI** lives in `sys`; it is the only module with `unsafe`, apart from the task cell,
//!   the atomic waker and the reactor's token, each with a `// SAFETY:` argument.
//!
//! # Invariants
//!
//! - A task is in at most one run queue and polled by at most one thread at a time.
//! - A readiness event that arrives after a task observed readiness is never cleared by it.
//! - A timer never fires before its deadline; a cancelled timer never fires.
//! - Worker threads never receive `SIGHUP`/`SIGTERM`/`SIGINT` (see [`signal`]).
//! - `shutdown` returns only after every worker thread has been joined and every remaining
//!   task's future dropped.
//!
//! # Non-goals
//!
//! io_uring, UDP, file I/O other than `sendfile`, `spawn_blocking`, a general-purpose
//! channel library, and portability beyond Linux.
//!
//! # Measured on the development machine (2 cores, `cargo bench -p anygate-runtime`)
//!
//! See `benches/runtime.rs`; figures are recorded in `docs/RUNTIME.md`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod loom;
mod reactor;
mod runtime;
mod sched;
mod sys;
mod task;
mod util;

pub mod buf;
pub mod compat;
pub mod net;
pub mod signal;
pub mod time;

pub use runtime::{Builder, Handle, Runtime, spawn, worker_index};
pub use sys::raise_fd_limit;
pub use task::{JoinError, JoinHandle};
