//! One job at a time, and no request lost: [`Serial`], the protocol reloads follow.
//!
//! A caller raises `again`, then tries to become the runner. The runner runs the job while
//! `again` is raised; after it lowers `running` it looks at `again` once more, so a
//! request raised just before the runner let go is never lost: either that caller became
//! the runner itself, or the runner runs once more. Every call is therefore followed by a
//! run that starts after the call began.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// Serialises a job (a reload) between threads; a request during a run makes the runner
/// run again when it is done.
#[derive(Debug, Default)]
pub struct Serial {
    running: AtomicBool,
    again: AtomicBool,
}

impl Serial {
    /// Runs `job` (as many times as requests arrive meanwhile, back to back), or, when
    /// another thread is running it, asks that thread to run it once more and returns
    /// `None` at once. `Some(out)`: the last run's output. `None` is also what a caller
    /// gets in the rare case that the runner before it already ran after its request.
    pub fn run<T>(&self, mut job: impl FnMut() -> T) -> Option<T> {
        self.again.store(true, SeqCst);
        if self.running.swap(true, SeqCst) {
            return None;
        }
        // Lowered even if the job panics, so that later calls are not refused.
        struct Running<'a>(&'a AtomicBool);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.store(false, SeqCst);
            }
        }
        let mut out = None;
        loop {
            let running = Running(&self.running);
            while self.again.swap(false, SeqCst) {
                out = Some(job());
            }
            // Tests widen the window in which a request can arrive as the runner lets go.
            #[cfg(test)]
            std::thread::yield_now();
            drop(running);
            if !self.again.load(SeqCst) || self.running.swap(true, SeqCst) {
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn regression_review_a_reload_asked_for_as_the_runner_finishes_is_not_lost() {
        // Each caller bumps `asked` before calling; each run notes how many had asked when
        // it started. Once every caller has returned, the last run must have started after
        // the last request: it saw them all. Two callers at once, many times over, so that
        // one of them often arrives as the other lets go.
        for _ in 0..2000 {
            let serial = Arc::new(Serial::default());
            let asked = Arc::new(AtomicUsize::new(0));
            let seen = Arc::new(AtomicUsize::new(0));
            let start = Arc::new(std::sync::Barrier::new(2));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (serial, asked, seen, start) =
                        (serial.clone(), asked.clone(), seen.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        asked.fetch_add(1, SeqCst);
                        serial.run(|| seen.store(asked.load(SeqCst), SeqCst));
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(seen.load(SeqCst), asked.load(SeqCst));
        }
    }

    #[test]
    fn a_panicking_job_does_not_leave_it_running() {
        let serial = Serial::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            serial.run(|| panic!("boom"));
        }));
        assert!(r.is_err());
        assert_eq!(serial.run(|| 7), Some(7));
    }
}
