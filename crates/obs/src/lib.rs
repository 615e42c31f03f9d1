//! `anygate-obs`: what the gateway tells its operators (SPEC §8): access-log lines, the
//! server's own log, and metrics.
//!
//! # Design
//!
//! - [`access`] formats one request into a line (JSON with the fields in the SPEC's fixed
//!   order, or a human format) from borrowed fields: nothing is copied before formatting,
//!   and the line is written into a recycled buffer.
//! - [`redact`] masks secrets (query parameters, header and cookie values whose names look
//!   secret) and strips userinfo from URLs, before anything is written.
//! - [`log`] is the one writer: a thread that drains two bounded lock-free queues (access
//!   lines, and the server's own lines, which go first) into stdout, stderr or files. A
//!   worker never blocks on it: when a queue is full the line is dropped and counted
//!   ([`log::dropped`]). Files are reopened on request ([`log::reopen`], `SIGUSR1`), for
//!   logrotate.
//! - [`metrics`] keeps one shard per recording thread (a worker), written only by that
//!   thread with plain loads and stores (no lock, no read-modify-write, no cache line shared
//!   with another writer), and summed when scraped. Labels come from bounded sets only:
//!   route labels and upstream names of the configuration (interned once per load),
//!   method and status classes, error codes of the catalog.
//! - [`trace`] reads and writes W3C `traceparent` and makes ids; [`otlp`] exports finished
//!   traces in batches from a side thread (OTLP/HTTP, JSON), through a bounded queue that
//!   drops and counts.
//!
//! # Invariants
//! - Nothing here blocks a worker or takes a lock on the request path.
//! - A secret name's value never reaches a log line.
//!
//! # Non-goals
//! Parsing the HTTP exchange (callers pass the fields); building spans from a request
//! (`anygate-pipeline`); the admin listener (`bin/anygate`); OTLP over gRPC or TLS.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod access;
pub mod escape;
pub mod log;
pub mod metrics;
pub mod otlp;
pub mod redact;
pub mod time;
pub mod trace;
