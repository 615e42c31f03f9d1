//! The `anygate` binary's library half: the server around the request pipeline
//! ([`serve`]), and the reports of `check` and `explain`. The command line (`main.rs`) and
//! the integration tests both use it; the request path itself is `anygate-pipeline`.

#![forbid(unsafe_code)]

pub mod acme;
pub mod admin;
pub mod args;
pub mod check;
pub mod describe;
pub mod diagnose;
pub mod explain;
pub mod notify;
pub mod privilege;
pub mod serial;
pub mod serve;
pub mod tls;
pub mod upgrade;
pub mod watch;
