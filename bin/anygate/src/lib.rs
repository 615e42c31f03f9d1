//! The `anygate` binary's library half: the application that answers requests ([`app`]) and
//! the server around it ([`serve`]). The command line (`main.rs`) and the integration tests
//! both use it.

#![forbid(unsafe_code)]

pub mod app;
pub mod serve;
