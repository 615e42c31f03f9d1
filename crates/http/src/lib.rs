//! `anygate-http`: the exchange model, the HTTP/1.1 codec, the HTTP/1.1 and HTTP/2
//! connection drivers and the upstream client.
//!
//! # Design
//!
//! - [`message`] is the exchange model, independent of the wire version: [`message::Version`],
//!   [`message::ResponseHead`] (status and an ordered [`message::Fields`] list that filters
//!   may edit until it is encoded), [`message::BodyFraming`], and [`message::Prebuilt`] (a
//!   response encoded once at load time). Sans-I/O.
//! - [`h1`] is the HTTP/1.1 codec, sans-I/O and the only code that reads or writes HTTP/1.1
//!   syntax: [`h1::parse::parse`] (request heads, as offsets: Complete / Partial /
//!   Invalid, on `httparse` plus the checks it leaves to us), [`h1::response`] (upstream
//!   response heads, into the same [`message::ResponseHead`]), [`h1::encode`], and
//!   [`h1::chunked`]. All fuzzed and fed every input split at every byte.
//! - [`server`] drives a connection over any [`anygate_runtime::transport::Transport`]:
//!   keep-alive, pipelining, `HEAD`, `Expect: 100-continue`, HTTP/1.0, limits and deadlines,
//!   graceful drain, a 500 for a panicking handler. An [`server::Acceptor`] prepares each
//!   accepted socket (plain today, TLS later). Handlers implement [`Service`]; each request
//!   is one [`Exchange`], which owns the client connection for its duration: the body, the
//!   response, the head hook (`post` filters), the per-request [`server::Ctx`], and the
//!   driver-owned ways to watch the client and take the connection over after `101`.
//!   HTTP/2 (ALPN `h2`, or prior knowledge on a plain listener with `server.h2c`) is the
//!   `h2` crate's state machine behind the runtime's tokio-io adapter, mapped onto the same
//!   [`Exchange`]: one task per connection, one per stream (`server/http2.rs`).
//! - [`client`] is one upstream connection over any transport: request writes, response
//!   heads and bodies (raw and decoded), the tunnel.
//! - [`error`] is the catalog of what can go wrong, each kind with its status and `AG-…`
//!   code; [`Exchange::error`] is the one place that turns a kind into a response.
//!
//! # Invariants
//!
//! - No panic on any input; a request the parser cannot trust is answered with 400 and the
//!   connection closed (request smuggling: see [`h1::parse::parse`]).
//! - After a connection's buffers have grown to their working size, serving an HTTP/1.1
//!   request allocates nothing in this crate (the counting-allocator tests in
//!   `bin/anygate`). HTTP/2 allocates per stream (`h2`'s header maps, the stream task).
//! - A response cut short never looks complete: over HTTP/1.1 the connection closes, over
//!   HTTP/2 the stream is reset ([`Exchange::abort`]).
//! - Every response carries `Date` and `X-Request-Id`.
//! - The codec and the message model use nothing from the runtime.
//!
//! # Non-goals
//!
//! HTTP/2 to upstreams and gRPC trailers (later); server push and extended CONNECT; TLS
//! (an [`server::Acceptor`] and a transport, in `anygate-tls`); compression (the static
//! action's business).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

pub mod client;
pub mod date;
pub mod error;
pub mod h1;
pub mod limits;
pub mod message;
pub mod request_id;
pub mod server;

pub use error::ErrorKind;
pub use limits::{Http2, Limits, MinRate};
pub use server::{Acceptor, Drain, Exchange, Plain, Request, Service};
