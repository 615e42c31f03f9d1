//! A waker slot that one task registers into and any thread wakes.
//!
//! # Protocol
//!
//! `state` is `WAITING`, `REGISTERING`, `WAKING` or `REGISTERING | WAKING`.
//! - `register` moves `WAITING → REGISTERING`, stores the waker, then tries
//!   `REGISTERING → WAITING`. If a wake arrived meanwhile the state is `REGISTERING | WAKING`:
//!   the registrant takes the waker back out and wakes it itself, so the wake is not lost.
//! - `wake` sets `WAKING` with `fetch_or`. If the old state was `WAITING` it owns the slot,
//!   takes the waker and clears `WAKING`. Otherwise a registration or another wake is in
//!   progress and that party delivers the wake.
//!
//! The slot is touched only by the party that moved the state out of `WAITING`, which is
//! why the `UnsafeCell` accesses below are exclusive. Acquire/release on `state` order those
//! accesses between threads. The same algorithm as `futures::task::AtomicWaker`.

use std::task::Waker;

use crate::loom::cell::UnsafeCell;
use crate::loom::sync::atomic::{AtomicUsize, Ordering::*};

const WAITING: usize = 0;
const REGISTERING: usize = 1;
const WAKING: usize = 2;

/// One waker slot: a task registers, any thread wakes; a wake is never lost (see the
/// module docs).
pub struct AtomicWaker {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the `UnsafeCell` is accessed only by the thread that won the state transition out
// of WAITING (see the module docs), and `Waker` is Send + Sync.
unsafe impl Send for AtomicWaker {}
// SAFETY: as above.
unsafe impl Sync for AtomicWaker {}

impl AtomicWaker {
    /// An empty slot.
    pub const fn new() -> Self {
        Self {
            state: AtomicUsize::new(WAITING),
            waker: UnsafeCell::new(None),
        }
    }

    /// Stores `waker` to be woken by the next [`wake`](Self::wake).
    pub fn register(&self, waker: &Waker) {
        match self
            .state
            .compare_exchange(WAITING, REGISTERING, Acquire, Acquire)
        {
            Ok(_) => {
                // SAFETY: we moved the state to REGISTERING, so we own the slot.
                let slot = unsafe { &mut *self.waker.get() };
                if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *slot = Some(waker.clone());
                }
                if self
                    .state
                    .compare_exchange(REGISTERING, WAITING, AcqRel, Acquire)
                    .is_err()
                {
                    // A wake came in while we registered: deliver it ourselves.
                    // SAFETY: the waker observed REGISTERING and left the slot to us.
                    let taken = unsafe { (*self.waker.get()).take() };
                    self.state.swap(WAITING, AcqRel);
                    if let Some(w) = taken {
                        w.wake();
                    }
                }
            }
            // A wake is in progress: make sure the task polls again.
            Err(_) => waker.wake_by_ref(),
        }
    }

    /// Wakes the registered waker, if any.
    pub fn wake(&self) {
        if let Some(w) = self.take() {
            w.wake();
        }
    }

    /// Removes the registered waker, if any.
    pub fn take(&self) -> Option<Waker> {
        match self.state.fetch_or(WAKING, AcqRel) {
            WAITING => {
                // SAFETY: we moved the state from WAITING to WAKING, so we own the slot.
                let w = unsafe { (*self.waker.get()).take() };
                self.state.fetch_and(!WAKING, Release);
                w
            }
            _ => None,
        }
    }
}

impl Default for AtomicWaker {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for AtomicWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicWaker")
            .field("state", &self.state.load(Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::AtomicWaker;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wake_after_register_wakes_once() {
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        let w = Waker::from(c.clone());
        let aw = AtomicWaker::new();
        aw.wake();
        assert_eq!(c.0.load(Ordering::SeqCst), 0, "nothing registered yet");
        aw.register(&w);
        aw.wake();
        aw.wake();
        assert_eq!(c.0.load(Ordering::SeqCst), 1, "the slot empties on wake");
    }

    #[test]
    fn concurrent_register_and_wake_never_loses_a_wake() {
        for _ in 0..200 {
            let c = Arc::new(Counter(AtomicUsize::new(0)));
            let w = Waker::from(c.clone());
            let aw = Arc::new(AtomicWaker::new());
            aw.register(&w);
            let aw2 = aw.clone();
            let t = std::thread::spawn(move || aw2.wake());
            aw.register(&w);
            t.join().unwrap();
            // Whatever the interleaving, the wake was delivered at least once.
            assert!(c.0.load(Ordering::SeqCst) >= 1);
        }
    }
}
