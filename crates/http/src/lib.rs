//! `anygate-http`: HTTP/1.1 for AnyGate.
//!
//! # Design
//!
//! - [`h1`] is sans-I/O: [`h1::parse::parse`] turns the bytes at the start of a buffer into
//!   a [`h1::parse::Head`] of offsets (Complete / Partial / Invalid), on `httparse` plus the
//!   checks it leaves to us; [`h1::chunked`] decodes and encodes the chunked coding as an
//!   explicit state machine. Both are fuzzed and fed every input split at every byte.
//! - [`server`] drives a connection on `anygate-runtime`: keep-alive, pipelining, `HEAD`,
//!   `Expect: 100-continue`, HTTP/1.0, limits and deadlines, graceful drain, a 500 for a
//!   panicking handler. Handlers implement [`Service`].
//! - [`error`] is the catalog of what can go wrong, each kind with its status and `AG-…`
//!   code; [`Response::error`] is the one place that turns a kind into a response.
//!
//! # Invariants
//!
//! - No panic on any input; a request the parser cannot trust is answered with 400 and the
//!   connection closed (request smuggling: see [`h1::parse::parse`]).
//! - After a connection's buffers have grown to their working size, serving a request
//!   allocates nothing in this crate.
//! - Every response carries `Date` and `X-Request-Id`.
//!
//! # Non-goals
//!
//! HTTP/2 (the `h2` crate, behind `anygate_runtime::compat`, comes separately); responses
//! compressed on the fly; client-side HTTP (the proxy's upstream client lives with it).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod client;
pub mod date;
pub mod error;
pub mod h1;
pub mod json;
pub mod limits;
pub mod message;
pub mod request_id;
pub mod server;

pub use error::ErrorKind;
pub use limits::Limits;
pub use server::{Acceptor, Drain, Exchange, Plain, Request, Service};
