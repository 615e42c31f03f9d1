//! Helpers shared by the runtime tests.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anygate_runtime::{Runtime, time};

/// Every test bounds its waits with this: a lost wake-up fails the test instead of hanging.
pub const LIMIT: Duration = Duration::from_secs(60);

pub fn runtime(workers: usize) -> Runtime {
    let _ = anygate_runtime::raise_fd_limit();
    Runtime::builder()
        .workers(workers)
        .build()
        .expect("runtime builds")
}

/// Runs `f` on `rt` with the global time limit.
pub fn run<F: Future>(rt: &Runtime, f: F) -> F::Output {
    rt.block_on(async {
        time::timeout(LIMIT, f)
            .await
            .expect("test exceeded its time limit")
    })
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}
