//! Regression (review finding "shutdown leaks the runtime"): tasks left in run queues,
//! wakers parked in released I/O entries and queued timer operations formed cycles back to
//! the runtime's shared state, so every shutdown leaked the epoll and eventfd descriptors of
//! every worker. Harness-less so that no other test opens descriptors meanwhile.

use std::time::Duration;

use anygate_runtime::net::TcpListener;
use anygate_runtime::time::sleep;
use anygate_runtime::{Runtime, spawn};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn main() {
    let baseline = open_fds();
    for round in 0..5 {
        let rt = Runtime::builder().workers(2).build().expect("runtime");
        rt.block_on(async {
            for _ in 0..20 {
                let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                // Parked on a socket; dropped at shutdown, its registration is released.
                spawn(async move {
                    let _ = listener.accept().await;
                });
                // Parked on a timer inserted from block_on (a remote timer operation).
                let s = sleep(Duration::from_secs(3600));
                spawn(s);
            }
            // Queued work that never runs: a busy task keeps its worker occupied.
            spawn(async {
                for _ in 0..50 {
                    spawn(async {});
                }
                std::future::pending::<()>().await;
            });
        });
        rt.shutdown();
        let now = open_fds();
        assert_eq!(
            now,
            baseline,
            "round {round}: {} descriptors leaked by shutdown",
            now.saturating_sub(baseline)
        );
    }
    println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}
