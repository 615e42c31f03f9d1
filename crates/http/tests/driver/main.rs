//! The connection driver over real loopback sockets, with a test service.

mod body;
mod lifecycle;
mod limits;
mod protocol;
mod smuggling;
mod support;
