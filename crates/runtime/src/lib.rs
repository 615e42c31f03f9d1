//! `anygate-runtime`: the small, fast, `std::future`-based async runtime AnyGate runs on.
//!
//! # Purpose
//!
//! A gateway's hot path is "readiness event → parse → route → write". This crate gives it
//! exactly what it needs and nothing else: per-worker edge-triggered epoll reactors, a
//! work-stealing scheduler, per-worker timer wheels with a cached clock, TCP with
//! `writev`/`sendfile`, the [`transport::Transport`] seam every byte stream implements,
//! signals, and an adapter so `h2` can run on it. It knows nothing about HTTP.
//!
//! # Design
//!
//! - **Workers** ([`Builder::workers`], default one per core) each own a FIFO run queue, an
//!   epoll instance and a timer wheel. Tasks woken on a worker run there;
//!   idle workers take from the global injector and steal from busy ones
//!   (`crossbeam-deque`). The idle and shutdown protocols are written in `sched`'s docs.
//! - **The reactor** (`reactor`) registers each descriptor once, edge-triggered, for both
//!   directions. Readiness and a tick share one atomic so a task that migrated between
//!   workers never loses a wake-up. The edge-triggered contract is in `sys::epoll`.
//! - **Tasks** (`task`) are one allocation holding the future inline, its state word, and
//!   its output. Panics are caught per poll; the worker goes on.
//! - **Time** ([`time`]): hierarchical wheel, millisecond ticks, O(1) insert and cancel,
//!   cancel on drop, never early.
//! - **FFI** lives in `sys` (epoll, eventfd, signalfd, `openat2`/`fstat`, the `syscall!`
//!   helper); sockets go through socket2. Outside `sys`, `unsafe` appears in four places,
//!   each with a `// SAFETY:` argument: the task cell (`task`), the atomic waker
//!   (`util::atomic_waker`), the reactor's registration token (`reactor`), and the counting
//!   allocator for tests (`alloc`).
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
//! # Measured (`cargo bench -p anygate-runtime`, 2-core dev machine, 2026-11-22)
//!
//! - `spawn_complete`: spawn from a worker and await 1 000 trivial tasks: ~290 ns per task
//!   (1 worker), ~270 ns (2 workers).
//! - `timer_insert_cancel`: arm and cancel a `Sleep` (allocates its entry): ~97 ns;
//!   `Sleep::reset` of an armed timer in place (no allocation): ~53 ns.
//! - `echo_rtt_64B`: one 64-byte round trip over loopback, both ends on the runtime:
//!   12.3 µs on 1 worker vs 13.0 µs for tokio's current-thread runtime (0.95×); 12.3 µs on
//!   2 workers vs 67 µs for tokio's 2-thread multi-thread runtime (0.18×: the two tasks stay
//!   on one worker instead of waking each other across threads). Most of the 12 µs is the
//!   kernel's loopback path.
//!
//! Method and history: `docs/RUNTIME.md`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod loom;
mod reactor;
mod runtime;
mod sched;
mod sys;
mod task;
mod util;

pub mod alloc;
pub mod compat;
pub mod fs;
pub mod net;
pub mod signal;
/// Process identity and hand-over: users and groups, the drop from root, and the
/// listening sockets a new binary inherits on an upgrade (FFI in `sys::process`).
pub mod process {
    pub use crate::sys::process::{
        User, adopt_listener, adopt_pipe, drop_privileges, euid, group, inherit, user,
        wait_readable,
    };
}
/// Directory watches (inotify) for reloading when files change (FFI in `sys::inotify`).
pub mod watch {
    pub use crate::sys::inotify::Watch;
}
pub mod sync {
    //! Synchronisation primitives for tasks.
    pub use crate::util::atomic_waker::AtomicWaker;
    pub use crate::util::event::Event;
}
pub mod time;
pub mod transport;

pub use runtime::{Builder, Handle, Runtime, WorkerStats, spawn, worker_index};
pub use sys::raise_fd_limit;
pub use task::{JoinError, JoinHandle, yield_now};
