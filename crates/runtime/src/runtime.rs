//! The public entry points: [`Builder`], [`Runtime`], [`Handle`], [`spawn`].

use crate::loom::sync::atomic::AtomicBool;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

use crossbeam_deque::Worker;

use crate::loom::sync::Arc;
use crate::loom::sync::atomic::Ordering::*;
use crate::sched::worker::{self, Local};
use crate::sched::{Shared, context};
use crate::task::JoinHandle;

type Hook = Arc<dyn Fn(usize) + Send + Sync>;
/// What a worker runs before each reactor turn.
pub(crate) type TurnHook = Arc<dyn Fn() + Send + Sync>;

/// Configures and builds a [`Runtime`].
#[derive(Clone)]
pub struct Builder {
    workers: usize,
    thread_name: String,
    pin_workers: bool,
    max_events: usize,
    on_thread_start: Option<Hook>,
    on_thread_stop: Option<Hook>,
    on_turn: Option<TurnHook>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field("thread_name", &self.thread_name)
            .field("pin_workers", &self.pin_workers)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Defaults: one worker per available core, not pinned, 1024 events per reactor turn,
    /// 16 KiB buffers, 4096 buffers per worker.
    pub fn new() -> Self {
        Self {
            workers: thread::available_parallelism().map_or(1, |n| n.get()),
            thread_name: "anygate-worker".into(),
            pin_workers: false,
            max_events: 1024,
            on_thread_start: None,
            on_thread_stop: None,
            on_turn: None,
        }
    }

    /// Number of worker threads (at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Pins worker `i` to CPU `i % cores`.
    pub fn pin_workers(mut self, on: bool) -> Self {
        self.pin_workers = on;
        self
    }

    /// Thread name prefix; workers are named `<prefix>-<index>`.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Most events taken from epoll per reactor turn.
    pub fn max_events(mut self, n: usize) -> Self {
        self.max_events = n.max(1);
        self
    }

    /// Called on each worker thread, with its index, before it runs any task.
    pub fn on_thread_start(mut self, f: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_thread_start = Some(Arc::new(f));
        self
    }

    /// Called on each worker thread, with its index, after it stopped running tasks.
    pub fn on_thread_stop(mut self, f: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_thread_stop = Some(Arc::new(f));
        self
    }

    /// Called on each worker thread before each reactor turn: when it is about to park, and
    /// every few dozen tasks while it stays busy (a busy worker still polls for I/O). For
    /// work a worker gathers per thread and hands over in batches (log lines): it runs
    /// often enough that nothing waits long, and rarely enough to batch. Must not block.
    pub fn on_turn(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_turn = Some(Arc::new(f));
        self
    }

    /// Starts the workers.
    pub fn build(self) -> io::Result<Runtime> {
        let queues: Vec<Worker<crate::task::Task>> =
            (0..self.workers).map(|_| Worker::new_fifo()).collect();
        let stealers = queues.iter().map(Worker::stealer).collect();
        #[expect(
            clippy::disallowed_methods,
            reason = "the epoch of the runtime's clock"
        )]
        let epoch = Instant::now();
        let shared = Arc::new(Shared::new(stealers, epoch)?);
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let mut threads = Vec::with_capacity(self.workers);
        let spawned = crate::signal::with_handled_signals_blocked(|| {
            for (index, queue) in queues.into_iter().enumerate() {
                let worker_shared = shared.clone();
                let (start, stop) = (self.on_thread_start.clone(), self.on_thread_stop.clone());
                let on_turn = self.on_turn.clone();
                let (pin, max_events) = (self.pin_workers, self.max_events);
                let t = thread::Builder::new()
                    .name(format!("{}-{index}", self.thread_name))
                    .spawn(move || {
                        if pin {
                            let _ = crate::sys::pin_current_thread(index % cores);
                        }
                        if let Some(f) = &start {
                            f(index);
                        }
                        let local = Rc::new(Local::new(index, worker_shared, queue));
                        worker::run(local, max_events, on_turn.as_deref());
                        if let Some(f) = &stop {
                            f(index);
                        }
                    })?;
                threads.push(t);
            }
            Ok(())
        })
        .and_then(|r: io::Result<()>| r);
        if let Err(e) = spawned {
            shutdown(&shared, &mut threads);
            return Err(e);
        }
        Ok(Runtime {
            handle: Handle { shared },
            threads,
        })
    }
}

/// A running set of workers. Dropping it shuts it down (see [`Runtime::shutdown`]).
#[derive(Debug)]
pub struct Runtime {
    handle: Handle,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Runtime {
    /// A [`Builder`] with the defaults.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// A cloneable handle to spawn onto this runtime from anywhere.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Spawns a task.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs `future` on the calling thread until it completes; tasks it spawns run on the
    /// workers, and I/O or timers it creates register with them.
    ///
    /// # Panics
    /// When called from a worker thread of any runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _guard = context::enter_blocking(self.handle.shared.clone());
        let parker = Arc::new(Parker {
            thread: thread::current(),
            notified: AtomicBool::new(false),
        });
        let waker = Waker::from(parker.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        loop {
            if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                return v;
            }
            while !parker.notified.swap(false, Acquire) {
                thread::park();
            }
        }
    }

    /// Stops the workers and joins them: running tasks finish their current poll, then
    /// every task still alive is cancelled and its future dropped. Returns the number of
    /// worker threads joined.
    pub fn shutdown(mut self) -> usize {
        let n = self.threads.len();
        shutdown(&self.handle.shared, &mut self.threads);
        n
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        shutdown(&self.handle.shared, &mut self.threads);
    }
}

fn shutdown(shared: &Arc<Shared>, threads: &mut Vec<thread::JoinHandle<()>>) {
    if threads.is_empty() && shared.is_shutdown() {
        return;
    }
    // Joining from one of our own workers would wait for ourselves forever.
    assert!(
        context::worker_index_for(shared).is_none(),
        "a Runtime was shut down (or dropped) on one of its own worker threads"
    );
    shared.begin_shutdown();
    for t in threads.drain(..) {
        // A worker never panics (tasks' panics are caught); if one did, shut down anyway.
        let _ = t.join();
    }
    shared.finish_shutdown();
}

struct Parker {
    thread: Thread,
    notified: AtomicBool,
}

impl Wake for Parker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.notified.store(true, Release);
        self.thread.unpark();
    }
}

/// A cloneable reference to a runtime.
#[derive(Clone, Debug)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// The runtime of the current thread (a worker, or inside `block_on`).
    pub fn current() -> Option<Handle> {
        context::current().map(|shared| Handle { shared })
    }

    /// Spawns a task onto this runtime.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared.spawn(future)
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.shared.remotes.len()
    }

    /// Wakes every live task once. A future must tolerate spurious wakes, so this is always
    /// safe; it is how a server makes its idle connections look at a shutdown flag without
    /// registering each of them anywhere.
    pub fn wake_all(&self) {
        self.shared.owned.wake_all();
    }

    /// Tasks spawned and not yet completed.
    pub fn live_tasks(&self) -> usize {
        self.shared.owned.len()
    }

    /// Each worker's state now, by index: for diagnostics (`/debug/runtime`), read
    /// without stopping anyone.
    pub fn worker_stats(&self) -> Vec<WorkerStats> {
        self.shared
            .remotes
            .iter()
            .map(|r| WorkerStats {
                queued: r.stealer.len(),
                timers: r.timers.load(Relaxed),
                registered_io: r.reactor.registered(),
            })
            .collect()
    }

    /// Descriptors registered with the workers' reactors.
    pub fn registered_io(&self) -> usize {
        self.shared
            .remotes
            .iter()
            .map(|r| r.reactor.registered())
            .sum()
    }
}

/// One worker's state, as [`Handle::worker_stats`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks in its run queue, waiting to run.
    pub queued: usize,
    /// Timers armed (as of its last reactor turn).
    pub timers: usize,
    /// Descriptors registered with its reactor.
    pub registered_io: usize,
}

/// Spawns a task onto the current runtime.
///
/// # Panics
/// Outside a runtime (neither a worker thread nor inside `block_on`).
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let shared = context::current().expect("anygate_runtime::spawn called outside a runtime");
    shared.spawn(future)
}

/// The index of the worker running the current task, if this is a worker thread.
pub fn worker_index() -> Option<usize> {
    context::with_local(|l| l.index)
}
