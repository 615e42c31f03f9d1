//! The work-stealing scheduler.
//!
//! # Shape
//!
//! N workers, one OS thread each. A worker owns a FIFO run queue (`crossbeam_deque::Worker`),
//! an epoll [`Reactor`], a timer [`Wheel`](crate::time::wheel::Wheel) and a buffer pool. A
//! task woken on a worker goes to that worker's queue; a task woken or spawned from any other
//! thread goes to the global injector. A worker with nothing to run takes a batch from the
//! injector, then steals half of another worker's queue, then parks in `epoll_wait`.
//!
//! # Parking and notification (the idle protocol)
//!
//! `Idle::num_idle` counts parked workers and `Idle::num_searching` counts workers that
//! were woken to look for work and have not found any yet.
//!
//! 1. A worker that runs dry sets its `Remote::parked` flag, increments `num_idle`, issues a
//!    `SeqCst` fence and checks every queue once more. If it finds work it un-parks itself.
//! 2. A pusher pushes, issues a `SeqCst` fence, then reads `num_idle` and `num_searching`.
//!    If someone is parked and nobody is searching, it claims one parked worker by swapping
//!    its `parked` flag from true to false, moves it from idle to searching, and writes that
//!    worker's eventfd.
//!
//! The two fences order "push, then read num_idle" against "publish parked, then read the
//! queues": at least one side sees the other, so a pushed task is never stranded while every
//! worker sleeps. A worker that wakes and finds its `parked` flag already cleared knows it
//! was claimed and is counted as searching; it leaves that state when it finds a task (and
//! then wakes one more worker, so wake-ups chain while work remains) or parks again.
//!
//! Local pushes notify only when the queue holds more than the task just pushed: the common
//! case "one I/O event wakes one task on this worker" costs no cross-thread wake-up.
//!
//! # Shutdown protocol
//!
//! 1. `Shared::shutdown` is set and every worker's eventfd is written.
//! 2. Each worker sees the flag at the top of its loop (every task run or reactor turn),
//!    stops polling tasks and exits its thread, dropping its queue and timer wheel.
//! 3. The runtime joins every worker thread.
//! 4. [`OwnedTasks::close_and_shutdown`] closes the registry (later spawns are cancelled at
//!    once) and cancels every task still alive, dropping its future on the calling thread.
//!    This breaks the reference cycles task → future → I/O → waker → task.
//! 5. The injector is drained. Wakes after step 1 drop their task reference instead of
//!    queueing it; they never cancel inline (see [`Shared::schedule`]).

pub(crate) mod context;
pub(crate) mod worker;

use std::future::Future;
use std::io;
use std::time::Instant;

use crossbeam_deque::{Injector, Stealer};
use crossbeam_queue::SegQueue;

use crate::loom::sync::Arc;
use crate::loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*, fence};
use crate::reactor::Reactor;
use crate::task::{Cell, JoinHandle, Task};
use crate::time::TimerOp;
use crate::util::slab::Slab;

/// What other threads may touch of one worker.
#[derive(Debug)]
pub(crate) struct Remote {
    pub(crate) stealer: Stealer<Task>,
    pub(crate) reactor: Arc<Reactor>,
    /// Timer inserts and cancels made from other threads, applied by the owner.
    pub(crate) timer_ops: SegQueue<TimerOp>,
    parked: AtomicBool,
    /// Timers armed on this worker, as of its last reactor turn (for `/debug/runtime`).
    pub(crate) timers: AtomicUsize,
}

#[derive(Debug, Default)]
struct Idle {
    num_idle: AtomicUsize,
    num_searching: AtomicUsize,
}

/// The runtime's state shared by every worker and handle.
pub(crate) struct Shared {
    pub(crate) remotes: Box<[Remote]>,
    pub(crate) injector: Injector<Task>,
    idle: Idle,
    pub(crate) owned: OwnedTasks,
    shutdown: AtomicBool,
    next_remote: AtomicUsize,
    /// The epoch of the runtime's millisecond clock.
    pub(crate) epoch: Instant,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("workers", &self.remotes.len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(stealers: Vec<Stealer<Task>>, epoch: Instant) -> io::Result<Self> {
        let n = stealers.len();
        let remotes = stealers
            .into_iter()
            .map(|stealer| {
                Ok(Remote {
                    stealer,
                    reactor: Arc::new(Reactor::new()?),
                    timer_ops: SegQueue::new(),
                    parked: AtomicBool::new(false),
                    timers: AtomicUsize::new(0),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            remotes: remotes.into_boxed_slice(),
            injector: Injector::new(),
            idle: Idle::default(),
            owned: OwnedTasks::new(n),
            shutdown: AtomicBool::new(false),
            next_remote: AtomicUsize::new(0),
            epoch,
        })
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Acquire)
    }

    /// Step 1 of the shutdown protocol.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.store(true, Release);
        for r in self.remotes.iter() {
            r.reactor.unpark();
        }
    }

    /// Steps 4 and 5 of the shutdown protocol, after the workers are joined: cancel every
    /// task, then empty everything in `Shared` that can hold a task or a waker (run queues,
    /// the injector, released I/O entries, timer operations), which would otherwise form a
    /// cycle back to `Shared` and leak the runtime.
    pub(crate) fn finish_shutdown(&self) {
        self.owned.close_and_shutdown();
        drain(|| self.injector.steal());
        for r in self.remotes.iter() {
            drain(|| r.stealer.steal());
            r.reactor.drain_released();
            while r.timer_ops.pop().is_some() {}
        }
    }

    /// A worker index for work that has no worker of its own (round-robin).
    pub(crate) fn pick_remote(&self) -> usize {
        self.next_remote.fetch_add(1, Relaxed) % self.remotes.len()
    }

    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shard = context::worker_index_for(self).unwrap_or_else(|| self.pick_remote());
        let cell = Cell::new(future, self.clone(), shard);
        let task: Task = cell.clone();
        match self.owned.insert(shard, task) {
            Some(key) => cell.set_key(key),
            None => return JoinHandle::cancelled(),
        }
        let handle = JoinHandle::new(cell.clone());
        self.schedule(cell);
        handle
    }

    /// Queues a task whose state was just set to SCHEDULED.
    ///
    /// After shutdown began, the reference is dropped instead. That never drops the future:
    /// every unfinished task is still held by [`OwnedTasks`], whose drain cancels it from the
    /// shutdown thread. Cancelling here instead would run the future's destructors inside
    /// `wake`, where the caller may hold a lock those destructors need (h2 does).
    pub(crate) fn schedule(self: &Arc<Self>, task: Task) {
        if self.is_shutdown() {
            drop(task);
            return;
        }
        match context::try_push_local(self, task) {
            Ok(more_queued) => {
                if more_queued {
                    self.notify_one();
                }
            }
            Err(task) => {
                self.injector.push(task);
                self.notify_one();
            }
        }
    }

    /// Wakes one parked worker if none is already searching (idle protocol, step 2).
    pub(crate) fn notify_one(&self) {
        fence(SeqCst);
        if self.idle.num_searching.load(SeqCst) != 0 || self.idle.num_idle.load(SeqCst) == 0 {
            return;
        }
        // Count the searcher before claiming: the claimed worker may wake for another reason
        // and end its search before this thread runs another instruction.
        self.idle.num_searching.fetch_add(1, SeqCst);
        for r in self.remotes.iter() {
            if r.parked
                .compare_exchange(true, false, SeqCst, Relaxed)
                .is_ok()
            {
                self.idle.num_idle.fetch_sub(1, SeqCst);
                r.reactor.unpark();
                return;
            }
        }
        self.idle.num_searching.fetch_sub(1, SeqCst);
    }

    /// Idle protocol, step 1 (first half): announce that worker `index` is parking.
    pub(crate) fn announce_parked(&self, index: usize) {
        self.remotes[index].parked.store(true, SeqCst);
        self.idle.num_idle.fetch_add(1, SeqCst);
        fence(SeqCst);
    }

    /// After a park: returns true when another thread claimed this worker (it is now
    /// counted as searching), false when it woke by itself.
    pub(crate) fn unannounce_parked(&self, index: usize) -> bool {
        if self.remotes[index].parked.swap(false, SeqCst) {
            self.idle.num_idle.fetch_sub(1, SeqCst);
            false
        } else {
            true
        }
    }

    pub(crate) fn end_search(&self) {
        self.idle.num_searching.fetch_sub(1, SeqCst);
    }

    /// Whether any queue holds a task (idle protocol, step 1, the re-check).
    pub(crate) fn has_queued_work(&self) -> bool {
        !self.injector.is_empty() || self.remotes.iter().any(|r| !r.stealer.is_empty())
    }
}

/// Steals (and drops) until the queue reports empty.
fn drain(steal: impl Fn() -> crossbeam_deque::Steal<Task>) {
    loop {
        match steal() {
            crossbeam_deque::Steal::Empty => return,
            crossbeam_deque::Steal::Success(task) => drop(task),
            crossbeam_deque::Steal::Retry => {}
        }
    }
}

/// Every live task, so that shutdown can drop the futures of tasks nobody will wake.
///
/// Sharded by worker: a task is inserted into its spawning worker's shard and removed when it
/// completes. Each shard is a mutex around a slab, taken twice per task (spawn and
/// completion), almost always uncontended because a shard belongs to one worker.
pub(crate) struct OwnedTasks {
    #[expect(
        clippy::disallowed_types,
        reason = "taken only at spawn and completion, per worker shard; not per poll"
    )]
    shards: Box<[std::sync::Mutex<Shard>]>,
}

struct Shard {
    closed: bool,
    tasks: Slab<Task>,
}

impl OwnedTasks {
    #[expect(clippy::disallowed_types, reason = "see the field")]
    fn new(n: usize) -> Self {
        let shards = (0..n.max(1))
            .map(|_| {
                std::sync::Mutex::new(Shard {
                    closed: false,
                    tasks: Slab::default(),
                })
            })
            .collect();
        Self { shards }
    }

    #[expect(clippy::disallowed_types, reason = "see the field")]
    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        let m: &std::sync::Mutex<Shard> = &self.shards[shard % self.shards.len()];
        // A panic never happens while a shard is locked; recover the data if one did.
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns the task's key, or `None` when the runtime is shutting down.
    fn insert(&self, shard: usize, task: Task) -> Option<usize> {
        let mut s = self.lock(shard);
        if s.closed {
            return None;
        }
        Some(s.tasks.insert(task))
    }

    pub(crate) fn remove(&self, shard: usize, key: usize) {
        // Drop the task reference after the lock is released: it may be the last one, and
        // dropping a future can re-enter the registry.
        let removed = self.lock(shard).tasks.remove(key);
        drop(removed);
    }

    /// Wakes every live task once. The references are cloned under each shard's lock and
    /// woken after it is released (a wake may schedule onto this very shard's worker).
    pub(crate) fn wake_all(&self) {
        for i in 0..self.shards.len() {
            let tasks: Vec<Task> = self.lock(i).tasks.values().cloned().collect();
            for t in tasks {
                t.wake_up();
            }
        }
    }

    /// Number of live tasks (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).tasks.len())
            .sum()
    }

    fn close_and_shutdown(&self) {
        for i in 0..self.shards.len() {
            let tasks = {
                let mut s = self.lock(i);
                s.closed = true;
                s.tasks.drain()
            };
            for t in tasks {
                t.shutdown();
            }
        }
    }
}
