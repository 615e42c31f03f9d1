//! Driving instant-acme's futures on the control-plane thread.
//!
//! Our [`HttpClient`](crate::http::Http) answers synchronously, so every future instant-acme
//! builds is ready at its first poll; `block_on` still parks correctly for one that is not.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `fut` to completion on this thread.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::block_on;
    use std::future::poll_fn;
    use std::task::Poll;

    #[test]
    fn a_future_that_wakes_itself_later_completes() {
        let mut polls = 0;
        let v = block_on(poll_fn(|cx| {
            polls += 1;
            if polls < 3 {
                let w = cx.waker().clone();
                std::thread::spawn(move || w.wake());
                Poll::Pending
            } else {
                Poll::Ready(polls)
            }
        }));
        assert_eq!(v, 3);
    }
}
