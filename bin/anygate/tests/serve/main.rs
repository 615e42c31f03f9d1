//! `anygate serve` end to end: the real binary (signals, reload, shutdown) and the server
//! in-process (the SPEC's scenarios over raw sockets).

mod acme;
mod balance;
mod deploy;
mod filters;
mod grpc;
mod helpers;
mod hosts;
#[path = "../../../../crates/http/tests/driver/support.rs"]
#[allow(dead_code)] // the HTTP driver tests' client; its test service is not used here
mod http;
mod http2;
mod lifecycle;
mod observability;
mod plugins;
mod privilege;
mod proxy;
mod resilience;
mod scenarios;
mod slowloris;
mod static_files;
mod support;
mod tls;
mod transport;
mod upgrade;
mod watch;
