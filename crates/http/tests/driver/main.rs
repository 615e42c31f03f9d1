//! The connection driver over real loopback sockets, with a test service.
#![allow(
    clippy::disallowed_methods,
    reason = "the client side measures wall-clock time, off the runtime"
)]

mod body;
mod h2;
mod lifecycle;
mod limits;
mod protocol;
mod regressions;
mod smuggling;
mod support;
