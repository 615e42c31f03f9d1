//! Signals arrive as an async stream. A harness-less test: the process's only threads are
//! `main` and the runtime's workers, all with the signals blocked, so a process-directed
//! `kill` queues on the signalfd instead of killing the test.
//!
//! Regression (signal delivered to a worker during startup): workers used to block the
//! signals themselves when they started, leaving a window in which a just-spawned worker
//! could take a `SIGHUP` and the default action killed the process. The runtime is built
//! immediately before the first `kill` here, which is what exposed it.

use std::time::Duration;

use anygate_runtime::Runtime;
use anygate_runtime::signal::{Signal, Signals};
use anygate_runtime::time::timeout;

fn main() {
    let rt = Runtime::builder().workers(2).build().expect("runtime");
    let received = rt.block_on(async {
        let signals = Signals::new(&[Signal::Hangup, Signal::Terminate, Signal::Interrupt])
            .expect("signalfd");
        let mut got = Vec::new();
        for (sig, expect) in [
            (libc::SIGHUP, Signal::Hangup),
            (libc::SIGTERM, Signal::Terminate),
            (libc::SIGINT, Signal::Interrupt),
        ] {
            // SAFETY: kill with our own pid and a valid signal number; the signal is blocked
            // on every thread, so it is queued for the signalfd.
            assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
            let s = timeout(Duration::from_secs(30), signals.recv())
                .await
                .expect("signal not delivered")
                .unwrap();
            assert_eq!(s, expect);
            got.push(s);
        }
        got
    });
    assert_eq!(received.len(), 3);
    assert_eq!(rt.shutdown(), 2);
    println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}
