//! A one-shot event that any number of tasks wait for, on any workers; setting it wakes
//! them all.
//!
//! For rare waits off the per-request path (the proxy's requests waiting for the one
//! upstream connection a worker is opening): waiting takes a lock to add a waker, setting
//! it takes the lock once to take them all. A task that moved to another worker while it
//! waited is still woken: nothing here is per worker.
//!
//! # Protocol
//! `set` stores the flag, then drains the wakers under the lock; `poll_wait` checks the
//! flag under the same lock before adding its waker. Either the waiter sees the flag, or
//! its waker is in the list before `set` drains it: no wake is lost.

use std::task::{Context, Poll, Waker};

use crate::loom::sync::atomic::{AtomicBool, Ordering::*};

/// See the [module docs](self).
#[derive(Debug, Default)]
pub struct Event {
    set: AtomicBool,
    #[expect(
        clippy::disallowed_types,
        reason = "taken by a waiter to add its waker and once by `set`: only while a rare \
                  event is pending, never per request"
    )]
    waiters: std::sync::Mutex<Vec<Waker>>,
}

impl Event {
    /// An event not set yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        // No code panics while holding it; recover the list if it ever did.
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether [`Event::set`] was called.
    pub fn is_set(&self) -> bool {
        self.set.load(Acquire)
    }

    /// Sets the event and wakes every task waiting for it.
    pub fn set(&self) {
        self.set.store(true, Release);
        let waiters = std::mem::take(&mut *self.waiters());
        for w in waiters {
            w.wake();
        }
    }

    /// Ready once the event is set; otherwise the task is woken when it is.
    pub fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_set() {
            return Poll::Ready(());
        }
        let mut waiters = self.waiters();
        if self.is_set() {
            return Poll::Ready(());
        }
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn setting_wakes_every_waiter_once_and_later_waits_are_ready() {
        let event = Event::new();
        let counts: Vec<Arc<Count>> = (0..3)
            .map(|_| Arc::new(Count(AtomicUsize::new(0))))
            .collect();
        for c in &counts {
            let waker = Waker::from(c.clone());
            let mut cx = Context::from_waker(&waker);
            assert!(event.poll_wait(&mut cx).is_pending());
            // Registering twice keeps one waker.
            assert!(event.poll_wait(&mut cx).is_pending());
        }
        event.set();
        for c in &counts {
            assert_eq!(c.0.load(SeqCst), 1);
            let waker = Waker::from(c.clone());
            assert!(event.poll_wait(&mut Context::from_waker(&waker)).is_ready());
        }
    }

    #[test]
    fn a_waiter_racing_the_set_on_another_thread_is_never_lost() {
        for _ in 0..200 {
            let event = Arc::new(Event::new());
            let count = Arc::new(Count(AtomicUsize::new(0)));
            let setter = {
                let event = event.clone();
                std::thread::spawn(move || event.set())
            };
            let waker = Waker::from(count.clone());
            let ready = event.poll_wait(&mut Context::from_waker(&waker)).is_ready();
            setter.join().unwrap();
            // Either it saw the event, or the set woke it.
            assert!(ready || count.0.load(SeqCst) == 1);
        }
    }
}
