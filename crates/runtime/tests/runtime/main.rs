//! Integration tests of the runtime over real loopback sockets. One binary, one module per
//! subject. No test sleeps to synchronise: every wait is on an event, bounded by a timeout
//! that turns a lost wake-up into a failure instead of a hang.

#![expect(clippy::disallowed_methods, reason = "tests measure wall-clock time")]
#![expect(clippy::disallowed_types, reason = "test-only synchronisation")]

mod echo;
mod fs;
mod h2;
mod net;
mod sched;
mod support;
mod timers;
