//! `anygate-actions`: what a rule does once it has matched.
//!
//! - [`Fixed`]: the response is serialized when the configuration is loaded; serving it
//!   copies bytes (or, for a large body, hands a shared buffer to `writev`) and allocates
//!   nothing.
//! - [`Echo`]: a JSON description of the request, the body cut at a configured size.
//! - [`Static`]: files from a directory, for sites and SPAs (see [`static_files`]).
//! - [`Proxy`]: the request relayed to an upstream over HTTP/1.1, both bodies streamed, with
//!   pooled keep-alive connections (see [`proxy`]). `https://` upstreams are not in this
//!   version; such a rule answers 501 (`AG-ACT-5010`).
//!
//! [`Action`] holds any of them; the pipeline dispatches with a `match` on it, not a trait
//! object: the hot path knows every action.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::disallowed_types, clippy::disallowed_methods)]

mod action;
mod echo;
mod fixed;
pub mod proxy;
pub mod static_files;

pub use action::{Action, Matched};
pub use echo::Echo;
pub use fixed::Fixed;
pub use proxy::{HostMode, Proxy, ProxyOptions, Upstreams};
pub use static_files::{Static, StaticOptions};
