//! Time: a cached coarse clock, [`sleep`], [`timeout`], backed by one timer wheel per worker.
//!
//! # Design
//!
//! A [`Sleep`] registers on its first poll, into the wheel of the worker it is polled on.
//! Firing and cancelling on that worker touch only its own wheel: no lock, no atomic RMW
//! beyond the entry's state. A sleep polled on a `block_on` thread, or dropped on another
//! worker after its task migrated, sends a [`TimerOp`] to the owning worker's queue; the
//! owner applies it before its next park. Either way cancel is O(1) and happens on drop.
//!
//! Deadlines are whole milliseconds since the runtime's epoch, rounded **up**; the wheel is
//! advanced to the current millisecond rounded **down**. A timer therefore never fires
//! early, and fires on the first reactor turn after its deadline.
//!
//! [`now`] is the worker's cached clock, refreshed at every reactor turn: the hot path reads
//! the time without a syscall.

pub(crate) mod wheel;

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::loom::sync::Arc;
use crate::loom::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::*};
use crate::sched::{Shared, context};
use crate::util::atomic_waker::AtomicWaker;
use wheel::Wheel;

const PENDING: u8 = 0;
const FIRED: u8 = 1;
const CANCELLED: u8 = 2;
const NO_KEY: usize = usize::MAX;

/// A timer registered in one worker's wheel.
#[derive(Debug)]
pub(crate) struct Entry {
    state: AtomicU8,
    waker: AtomicWaker,
    /// Deadline in ms since the epoch. Written by the owning worker only.
    deadline_ms: AtomicU64,
    /// The worker whose wheel holds (or will hold) the entry.
    owner: usize,
    /// The owning runtime's identity (`Arc::as_ptr` of its shared state).
    runtime: usize,
    /// Slab key in the owner's wheel; written and read by the owner only.
    key: AtomicUsize,
}

impl Entry {
    fn new(deadline_ms: u64, owner: usize, runtime: usize) -> Self {
        Self {
            state: AtomicU8::new(PENDING),
            waker: AtomicWaker::new(),
            deadline_ms: AtomicU64::new(deadline_ms),
            owner,
            runtime,
            key: AtomicUsize::new(NO_KEY),
        }
    }

    pub(crate) fn fire(&self) {
        if self
            .state
            .compare_exchange(PENDING, FIRED, AcqRel, Acquire)
            .is_ok()
        {
            self.waker.wake();
        }
    }

    fn is_fired(&self) -> bool {
        self.state.load(Acquire) == FIRED
    }
}

/// A timer operation sent to the owning worker from another thread.
#[derive(Debug)]
pub(crate) enum TimerOp {
    Insert(Arc<Entry>),
    Cancel(Arc<Entry>),
}

/// Inserts on the owner. Returns the entry if it is already due (the caller fires it).
pub(crate) fn insert_local(wheel: &mut Wheel<Arc<Entry>>, entry: Arc<Entry>) -> Option<Arc<Entry>> {
    if entry.state.load(Acquire) != PENDING {
        return None;
    }
    let key = entry.key.load(Relaxed);
    if key != NO_KEY && wheel.get(key).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
        // Already linked (a `reset` on the owner beat a queued remote insert).
        return None;
    }
    let deadline = entry.deadline_ms.load(Relaxed);
    match wheel.insert(deadline, entry.clone()) {
        Ok(key) => {
            entry.key.store(key, Relaxed);
            None
        }
        Err(e) => Some(e),
    }
}

/// Removes on the owner, if the entry is still in the wheel.
pub(crate) fn remove_local(wheel: &mut Wheel<Arc<Entry>>, entry: &Arc<Entry>) {
    let key = entry.key.swap(NO_KEY, Relaxed);
    if key != NO_KEY && wheel.get(key).is_some_and(|e| Arc::ptr_eq(e, entry)) {
        wheel.remove(key);
    }
}

/// Milliseconds since `epoch`, rounded down.
pub(crate) fn clock_ms(epoch: Instant) -> u64 {
    #[expect(
        clippy::disallowed_methods,
        reason = "the clock source behind the cached clock"
    )]
    let now = Instant::now();
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds from `epoch` to `deadline`, rounded up.
fn deadline_ms(epoch: Instant, deadline: Instant) -> u64 {
    let nanos = deadline.saturating_duration_since(epoch).as_nanos();
    u64::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// The current time: on a worker, the cached clock of its last reactor turn (millisecond
/// resolution, never ahead of the real time); elsewhere, the real clock.
pub fn now() -> Instant {
    context::with_local(|l| l.shared.epoch + Duration::from_millis(l.now_ms.get())).unwrap_or_else(
        #[expect(clippy::disallowed_methods, reason = "no cached clock off a worker")]
        Instant::now,
    )
}

/// The real monotonic clock (a vDSO call, ~20 ns): for measuring a request's duration,
/// where the cached clock's millisecond would round most of them to zero. Read it only
/// for requests something observes.
pub fn precise_now() -> Instant {
    #[expect(
        clippy::disallowed_methods,
        reason = "observed requests are timed to the microsecond"
    )]
    Instant::now()
}

/// Completes after `duration`, measured from the real clock (so never early, however
/// stale the worker's cached clock is).
pub fn sleep(duration: Duration) -> Sleep {
    #[expect(
        clippy::disallowed_methods,
        reason = "a deadline must not start in the past"
    )]
    let start = Instant::now();
    sleep_until(start.checked_add(duration).unwrap_or_else(far_future))
}

/// Completes at `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        entry: None,
    }
}

fn far_future() -> Instant {
    // About 30 years: further than any timeout this program will ask for.
    now() + Duration::from_secs(86_400 * 365 * 30)
}

/// A future that completes at a deadline. Cancelled (in O(1)) when dropped.
///
/// # Panics
/// Polling a `Sleep` outside a runtime (neither a worker nor `block_on`) panics.
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    entry: Option<Arc<Entry>>,
}

impl Sleep {
    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed and been observed by the timer.
    pub fn is_elapsed(&self) -> bool {
        self.entry.as_ref().is_some_and(|e| e.is_fired())
    }

    /// Makes the timer fire no later than `deadline`. A timer already set earlier is left
    /// alone (lazy re-arming): a keep-alive connection pushes its idle deadline forward on
    /// every request, and moving the timer each time would cost a wheel removal and
    /// insertion per request. [`Sleep::poll_expired`] re-arms when an early timer fires.
    pub fn arm(&mut self, deadline: Instant) {
        if self.deadline > deadline || self.is_elapsed() {
            self.reset(deadline);
        }
    }

    /// Polls the timer for `deadline`: true only once the deadline itself has passed (a
    /// timer left at an earlier deadline by [`Sleep::arm`] is moved to the real one when it
    /// fires).
    pub fn poll_expired(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        loop {
            if Pin::new(&mut *self).poll(cx).is_pending() {
                return false;
            }
            if now() >= deadline || self.deadline >= deadline {
                return true;
            }
            self.reset(deadline);
        }
    }

    /// Moves the deadline. On the owning worker this moves the entry inside the wheel and
    /// allocates nothing, so a connection can re-arm its idle timer on every request.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        let Some(entry) = &self.entry else { return };
        let moved = context::with_local(|l| {
            if l.index != entry.owner || Arc::as_ptr(&l.shared) as usize != entry.runtime {
                return false;
            }
            let mut wheel = l.wheel.borrow_mut();
            match entry.state.load(Acquire) {
                PENDING => remove_local(&mut wheel, entry),
                FIRED => entry.state.store(PENDING, Release),
                _ => return false,
            }
            entry
                .deadline_ms
                .store(deadline_ms(l.shared.epoch, deadline), Relaxed);
            if let Some(due) = insert_local(&mut wheel, entry.clone()) {
                drop(wheel);
                due.fire();
            }
            true
        });
        if moved != Some(true) {
            self.cancel();
        }
    }

    fn register(&mut self, waker: &Waker) -> Poll<()> {
        let deadline = self.deadline;
        let local = context::with_local(|l| {
            let ms = deadline_ms(l.shared.epoch, deadline);
            if ms <= l.now_ms.get() {
                return None;
            }
            let entry = Arc::new(Entry::new(ms, l.index, Arc::as_ptr(&l.shared) as usize));
            entry.waker.register(waker);
            let due = insert_local(&mut l.wheel.borrow_mut(), entry.clone());
            Some((entry, due.is_some()))
        });
        let (entry, due) = match local {
            Some(Some(r)) => r,
            Some(None) => return Poll::Ready(()),
            None => match register_remote(deadline, waker) {
                Some(e) => (e, false),
                None => return Poll::Ready(()),
            },
        };
        if due {
            entry.state.store(FIRED, Release);
        }
        let fired = entry.is_fired();
        self.entry = Some(entry);
        if fired {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn cancel(&mut self) {
        let Some(entry) = self.entry.take() else {
            return;
        };
        if entry
            .state
            .compare_exchange(PENDING, CANCELLED, AcqRel, Acquire)
            .is_err()
        {
            return; // fired already: nothing is left in any wheel
        }
        // The entry may wait in a queue or a wheel until its owner gets to it; it must not
        // keep the task alive meanwhile.
        entry.waker.take();
        let removed_here = context::with_local(|l| {
            let owner = Arc::as_ptr(&l.shared) as usize == entry.runtime && l.index == entry.owner;
            if owner {
                remove_local(&mut l.wheel.borrow_mut(), &entry);
            }
            owner
        });
        if removed_here != Some(true)
            && let Some(shared) = context::current()
            && Arc::as_ptr(&shared) as usize == entry.runtime
        {
            shared.remotes[entry.owner]
                .timer_ops
                .push(TimerOp::Cancel(entry));
        }
        // Off any runtime thread the entry stays CANCELLED in its wheel and is dropped,
        // unfired, when its deadline comes.
    }
}

fn register_remote(deadline: Instant, waker: &Waker) -> Option<Arc<Entry>> {
    let shared: Arc<Shared> = context::current()
        .expect("a Sleep was polled outside an anygate runtime (use block_on or spawn)");
    let ms = deadline_ms(shared.epoch, deadline);
    if ms <= clock_ms(shared.epoch) {
        return None;
    }
    let owner = shared.pick_remote();
    let entry = Arc::new(Entry::new(ms, owner, Arc::as_ptr(&shared) as usize));
    entry.waker.register(waker);
    let remote = &shared.remotes[owner];
    remote.timer_ops.push(TimerOp::Insert(entry.clone()));
    remote.reactor.unpark();
    Some(entry)
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match &this.entry {
            None => this.register(cx.waker()),
            Some(entry) => {
                if entry.is_fired() {
                    return Poll::Ready(());
                }
                entry.waker.register(cx.waker());
                if entry.is_fired() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The error of [`timeout`]: the deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Runs `future` for at most `duration`. The future is polled first, so one that is ready
/// at once wins even with a zero duration.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    timeout_at(now() + duration, future).await
}

/// Runs `future` until `deadline` at most. The future is polled first, and the timer is
/// only created once it is pending: a future that is ready at once (a cached answer) costs
/// no timer at all.
pub async fn timeout_at<F: Future>(deadline: Instant, future: F) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    let mut sleep: Option<Sleep> = None;
    poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let sleep = sleep.get_or_insert_with(|| sleep_until(deadline));
        match Pin::new(sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review finding "timer fires early"): a `reset` on the owner followed by a
    /// queued remote insert of the same entry linked it twice; the stale copy fired at the
    /// old deadline.
    #[test]
    fn an_entry_is_never_linked_twice() {
        let mut wheel = Wheel::new(0);
        let entry = Arc::new(Entry::new(50, 0, 0));
        assert!(insert_local(&mut wheel, entry.clone()).is_none());
        assert!(insert_local(&mut wheel, entry.clone()).is_none());
        let mut fired = 0;
        wheel.advance(100, |_| fired += 1);
        assert_eq!(fired, 1);
    }
}
