//! Tasks: a spawned future, its state machine, its waker and its [`JoinHandle`].
//!
//! # State machine
//!
//! One atomic word per task holds these bits:
//!
//! | bit | meaning |
//! |---|---|
//! | `SCHEDULED` | the task is in a run queue (or about to be pushed to one) |
//! | `RUNNING` | a worker is polling it; only that worker touches the future |
//! | `NOTIFIED` | woken while running: the worker reschedules it after the poll |
//! | `COMPLETE` | the output (or the error) is stored; the future is gone |
//! | `CANCELLED` | abort or shutdown asked for it; the next run drops the future |
//! | `JOIN_DROPPED` | the join handle is gone: nobody will read the output |
//!
//! A wake sets `SCHEDULED` (and pushes) when the task is idle, sets `NOTIFIED` when it is
//! running, and does nothing when it is already scheduled or complete, so a task is in at
//! most one queue and is polled by one thread at a time. That exclusivity is what makes the
//! `UnsafeCell` accesses sound. `COMPLETE` is published with release ordering after the
//! output is written; the join handle reads the output after an acquire load sees it.
//!
//! Panics while polling are caught: the task completes with [`JoinError::Panic`] and the
//! worker goes on.
//!
//! **Who drops the output.** Exactly one side: if the join handle was dropped before the
//! task completed (`JOIN_DROPPED` seen by the completing worker), the worker drops it at
//! once, inside `catch_unwind`; if the handle is dropped after completion, the handle drops
//! it. Either way it is not left to whichever thread happens to drop the last waker.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, Wake, Waker};

use crate::loom::cell::UnsafeCell;
use crate::loom::sync::Arc;
use crate::loom::sync::atomic::{AtomicUsize, Ordering::*};
use crate::sched::Shared;
use crate::util::atomic_waker::AtomicWaker;

const SCHEDULED: usize = 1;
const RUNNING: usize = 2;
const NOTIFIED: usize = 4;
const COMPLETE: usize = 8;
const CANCELLED: usize = 16;
const JOIN_DROPPED: usize = 32;

/// What the scheduler sees of a task.
pub(crate) trait Runnable: Send + Sync + 'static {
    /// Polls the future once. Called only by the worker that popped the task.
    fn run(self: Arc<Self>);
    /// Cancels the task and drops its future if no worker is running it.
    fn shutdown(self: Arc<Self>);
    /// Wakes the task as its waker would.
    fn wake_up(self: Arc<Self>);
}

/// A reference to a scheduled task, as stored in run queues.
pub(crate) type Task = Arc<dyn Runnable>;

enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

pub(crate) struct Cell<F: Future> {
    state: AtomicUsize,
    stage: UnsafeCell<Stage<F>>,
    join_waker: AtomicWaker,
    scheduler: Arc<Shared>,
    /// The task's slot in [`crate::sched::OwnedTasks`]: `shard` is fixed at spawn, `key` is
    /// written once before the task is first scheduled.
    shard: usize,
    key: AtomicUsize,
}

// SAFETY: the future and its output move between threads with the task, hence `F: Send` and
// `F::Output: Send`. Shared access to `stage` is serialised by the state machine (module
// docs): only the thread holding RUNNING, or the join handle after COMPLETE, touches it.
unsafe impl<F: Future + Send> Send for Cell<F> where F::Output: Send {}
// SAFETY: as above.
unsafe impl<F: Future + Send> Sync for Cell<F> where F::Output: Send {}

impl<F> Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    pub(crate) fn new(future: F, scheduler: Arc<Shared>, shard: usize) -> Arc<Self> {
        Arc::new(Self {
            state: AtomicUsize::new(SCHEDULED),
            stage: UnsafeCell::new(Stage::Running(future)),
            join_waker: AtomicWaker::new(),
            scheduler,
            shard,
            key: AtomicUsize::new(usize::MAX),
        })
    }

    pub(crate) fn set_key(&self, key: usize) {
        self.key.store(key, Relaxed);
    }

    /// Sets SCHEDULED if the task is idle; returns whether the caller must push it.
    fn transition_to_scheduled(&self) -> bool {
        let mut cur = self.state.load(Acquire);
        loop {
            let next = if cur & COMPLETE != 0 || cur & SCHEDULED != 0 {
                return false;
            } else if cur & RUNNING != 0 {
                if cur & NOTIFIED != 0 {
                    return false;
                }
                cur | NOTIFIED
            } else {
                cur | SCHEDULED
            };
            match self.state.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) => return next & SCHEDULED != 0,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Stores the result, drops the future, publishes COMPLETE. Caller holds RUNNING.
    fn complete(self: &Arc<Self>, result: Result<F::Output, JoinError>) {
        // Drop the future first (its destructor may panic; that must not escape either).
        // SAFETY: we hold RUNNING, so no other thread touches `stage`.
        let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
            *self.stage.get() = Stage::Consumed;
        }));
        let result = match (result, dropped) {
            (Ok(v), Err(p)) => {
                let _ = catch_unwind(AssertUnwindSafe(move || drop(v)));
                Err(JoinError::Panic(p))
            }
            (r, _) => r,
        };
        // SAFETY: still exclusive: COMPLETE is not yet published.
        unsafe { *self.stage.get() = Stage::Finished(result) };
        // Out of the live set before COMPLETE is published: a joiner may see COMPLETE on any
        // poll, woken or not, and must then find the task gone (regression: `live_tasks()`
        // still counted a task whose handle had resolved, first when the removal followed
        // the wake, then when it followed COMPLETE). The caller's `Arc` keeps `self` alive
        // past the removal; shutdown's drain no longer sees the task, which is finishing here.
        self.scheduler
            .owned
            .remove(self.shard, self.key.load(Relaxed));
        let prev = self
            .state
            .fetch_update(AcqRel, Acquire, |cur| {
                Some((cur & (CANCELLED | JOIN_DROPPED)) | COMPLETE)
            })
            .unwrap_or_default();
        if prev & JOIN_DROPPED != 0 {
            // Nobody will read the output: drop it here, contained.
            // SAFETY: the handle set JOIN_DROPPED before COMPLETE, so it will not touch
            // `stage` (see `drop_join`), and no worker runs a COMPLETE task.
            let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
                *self.stage.get() = Stage::Consumed;
            }));
        }
        let _ = catch_unwind(AssertUnwindSafe(|| self.join_waker.wake()));
    }
}

impl<F> Runnable for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn run(self: Arc<Self>) {
        let mut cur = self.state.load(Acquire);
        loop {
            if cur & (COMPLETE | RUNNING) != 0 {
                return;
            }
            let next = (cur & !SCHEDULED) | RUNNING;
            match self.state.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        if cur & CANCELLED != 0 {
            return self.complete(Err(JoinError::Cancelled));
        }
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let polled = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: we hold RUNNING, so this thread has exclusive access to `stage`. The
            // future lives inside the task's `Arc` allocation and is dropped in place, never
            // moved, which upholds the `Pin` contract.
            let stage = unsafe { &mut *self.stage.get() };
            match stage {
                // SAFETY: see above: the future is never moved out of the allocation.
                Stage::Running(fut) => unsafe { Pin::new_unchecked(fut) }.poll(&mut cx),
                _ => Poll::Pending,
            }
        }));
        match polled {
            Ok(Poll::Ready(out)) => self.complete(Ok(out)),
            Err(payload) => self.complete(Err(JoinError::Panic(payload))),
            Ok(Poll::Pending) => {
                let mut cur = self.state.load(Acquire);
                loop {
                    if cur & CANCELLED != 0 {
                        return self.complete(Err(JoinError::Cancelled));
                    }
                    let reschedule = cur & NOTIFIED != 0;
                    let next = if reschedule {
                        (cur & !(RUNNING | NOTIFIED)) | SCHEDULED
                    } else {
                        cur & !RUNNING
                    };
                    match self.state.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                        Ok(_) => {
                            if reschedule {
                                let sched = self.scheduler.clone();
                                sched.schedule(self);
                            }
                            return;
                        }
                        Err(actual) => cur = actual,
                    }
                }
            }
        }
    }

    fn wake_up(self: Arc<Self>) {
        Wake::wake(self);
    }

    fn shutdown(self: Arc<Self>) {
        let mut cur = self.state.fetch_or(CANCELLED, AcqRel) | CANCELLED;
        loop {
            if cur & (COMPLETE | RUNNING) != 0 {
                // Complete already, or the running worker sees CANCELLED after its poll.
                return;
            }
            let next = (cur & !SCHEDULED) | RUNNING;
            match self.state.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) => return self.complete(Err(JoinError::Cancelled)),
                Err(actual) => cur = actual,
            }
        }
    }
}

impl<F> Wake for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn wake(self: Arc<Self>) {
        if self.transition_to_scheduled() {
            let sched = self.scheduler.clone();
            sched.schedule(self);
        }
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.transition_to_scheduled() {
            self.scheduler.schedule(self.clone());
        }
    }
}

/// Lets the other tasks of this worker run before this one goes on: the task is woken
/// at once and put back in the run queue. For loops that could otherwise stay ready for a
/// long time (a client that keeps its socket full).
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// The join side of a task, erased over the future type.
trait Join<T>: Send + Sync {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>>;
    fn abort(&self);
    fn is_finished(&self) -> bool;
    /// The handle is being dropped without having taken the output.
    fn drop_join(&self);
}

impl<F> Join<F::Output> for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        if self.state.load(Acquire) & COMPLETE == 0 {
            self.join_waker.register(cx.waker());
            if self.state.load(Acquire) & COMPLETE == 0 {
                return Poll::Pending;
            }
        }
        // SAFETY: COMPLETE was observed with acquire ordering, so the output is written and
        // no worker touches `stage` again; the unique JoinHandle takes it once.
        let stage = unsafe { &mut *self.stage.get() };
        match std::mem::replace(stage, Stage::Consumed) {
            Stage::Finished(res) => Poll::Ready(res),
            _ => Poll::Ready(Err(JoinError::Cancelled)),
        }
    }

    fn abort(&self) {
        self.state.fetch_or(CANCELLED, AcqRel);
    }

    fn is_finished(&self) -> bool {
        self.state.load(Acquire) & COMPLETE != 0
    }

    fn drop_join(&self) {
        let prev = self.state.fetch_or(JOIN_DROPPED, AcqRel);
        if prev & COMPLETE != 0 {
            // SAFETY: COMPLETE was observed (acquire), and the worker saw no JOIN_DROPPED when
            // it completed, so it leaves `stage` to us; we are the only handle.
            let stage = unsafe { &mut *self.stage.get() };
            drop(std::mem::replace(stage, Stage::Consumed));
        }
    }
}

/// Awaits the output of a spawned task.
///
/// Dropping the handle detaches the task; it keeps running. [`JoinHandle::abort`] cancels it:
/// its future is dropped at the next point it would be polled.
pub struct JoinHandle<T> {
    join: Option<Arc<dyn Join<T>>>,
    wake: Option<Waker>,
}

impl<T: Send + 'static> JoinHandle<T> {
    pub(crate) fn new<F>(cell: Arc<Cell<F>>) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        let wake = Waker::from(cell.clone());
        Self {
            join: Some(cell),
            wake: Some(wake),
        }
    }

    /// A handle for a task that was never started (spawned after shutdown).
    pub(crate) fn cancelled() -> Self {
        Self {
            join: None,
            wake: None,
        }
    }

    /// Cancels the task. Awaiting the handle then yields [`JoinError::Cancelled`], unless
    /// the task had already completed.
    pub fn abort(&self) {
        if let (Some(join), Some(wake)) = (&self.join, &self.wake) {
            join.abort();
            // Schedule it so a worker drops the future promptly.
            wake.wake_by_ref();
        }
    }

    /// Whether the task has completed (with output, panic or cancellation).
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(|j| j.is_finished())
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(join) = self.join.as_ref() else {
            return Poll::Ready(Err(JoinError::Cancelled));
        };
        let res = std::task::ready!(join.poll_join(cx));
        self.join = None;
        self.wake = None;
        Poll::Ready(res)
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(join) = self.join.take() {
            join.drop_join();
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("detached", &self.join.is_none())
            .finish()
    }
}

/// Why a task produced no output.
pub enum JoinError {
    /// The task was aborted, or the runtime shut down before it completed.
    Cancelled,
    /// The task panicked; the payload is the panic's.
    Panic(Box<dyn Any + Send + 'static>),
}

impl JoinError {
    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panic(_))
    }

    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// The panic message, when the payload is a string.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            JoinError::Panic(p) => p
                .downcast_ref::<&'static str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str)),
            JoinError::Cancelled => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("JoinError::Cancelled"),
            JoinError::Panic(_) => write!(f, "JoinError::Panic({:?})", self.panic_message()),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("task was cancelled"),
            JoinError::Panic(_) => match self.panic_message() {
                Some(m) => write!(f, "task panicked: {m}"),
                None => f.write_str("task panicked"),
            },
        }
    }
}

impl std::error::Error for JoinError {}
