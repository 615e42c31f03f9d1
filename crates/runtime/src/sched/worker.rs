//! One worker: its run loop, its parking, its reactor turns and its timers.
//!
//! # The run loop
//!
//! ```text
//! loop {
//!     shutdown?                         -> exit (shutdown protocol, step 2)
//!     every EVENT_INTERVAL tasks        -> turn hook, non-blocking reactor turn + timers
//!     every GLOBAL_INTERVAL tasks       -> injector first (fairness for remote spawns)
//!     local queue | injector | steal    -> run one task
//!     nothing                           -> turn hook, park: reactor turn until the next timer
//! }
//! ```
//!
//! The cached clock ([`Local::now_ms`]) is refreshed on every reactor turn, so a busy worker
//! reads the time at most once per `EVENT_INTERVAL` tasks.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crossbeam_deque::{Steal, Worker};

use super::Shared;
use crate::loom::sync::Arc;
use crate::loom::sync::atomic::Ordering::Relaxed;
use crate::sys::epoll::Events;
use crate::task::Task;
use crate::time::{TimerOp, wheel::Wheel};

/// Tasks between two non-blocking reactor turns (I/O and timer fairness).
const EVENT_INTERVAL: u32 = 61;
/// Tasks between two looks at the injector before the local queue.
const GLOBAL_INTERVAL: u32 = 31;

/// The worker-private state, reachable from the thread-local context.
pub(crate) struct Local {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) queue: Worker<Task>,
    pub(crate) wheel: RefCell<Wheel<Arc<crate::time::Entry>>>,
    /// Milliseconds since `Shared::epoch`, refreshed at each reactor turn.
    pub(crate) now_ms: Cell<u64>,
}

impl Local {
    pub(crate) fn new(index: usize, shared: Arc<Shared>, queue: Worker<Task>) -> Self {
        let now = crate::time::clock_ms(shared.epoch);
        Self {
            index,
            shared,
            queue,
            wheel: RefCell::new(Wheel::new(now)),
            now_ms: Cell::new(now),
        }
    }

    fn next_task(&self, tick: u32) -> Option<Task> {
        if tick.is_multiple_of(GLOBAL_INTERVAL)
            && let Some(t) = self.steal_injector()
        {
            return Some(t);
        }
        if let Some(t) = self.queue.pop() {
            return Some(t);
        }
        self.steal_injector().or_else(|| self.steal_others())
    }

    fn steal_injector(&self) -> Option<Task> {
        loop {
            match self.shared.injector.steal_batch_and_pop(&self.queue) {
                Steal::Success(t) => return Some(t),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }

    fn steal_others(&self) -> Option<Task> {
        let n = self.shared.remotes.len();
        for offset in 1..n {
            let victim = &self.shared.remotes[(self.index + offset) % n];
            loop {
                match victim.stealer.steal_batch_and_pop(&self.queue) {
                    Steal::Success(t) => return Some(t),
                    Steal::Empty => break,
                    Steal::Retry => {}
                }
            }
        }
        None
    }

    /// Applies timer operations queued by other threads.
    fn apply_timer_ops(&self) {
        let ops = &self.shared.remotes[self.index].timer_ops;
        if ops.is_empty() {
            return;
        }
        let mut taken = Vec::new();
        while let Some(op) = ops.pop() {
            taken.push(op);
        }
        let mut fired = Vec::new();
        {
            let mut wheel = self.wheel.borrow_mut();
            for op in &taken {
                match op {
                    TimerOp::Insert(entry) => {
                        if let Some(e) = crate::time::insert_local(&mut wheel, entry.clone()) {
                            fired.push(e);
                        }
                    }
                    TimerOp::Cancel(entry) => crate::time::remove_local(&mut wheel, entry),
                }
            }
        }
        // The wheel is released before anything is woken or dropped: a drop may end a task
        // whose destructors use this worker's timers.
        for e in fired {
            e.fire();
        }
        drop(taken);
    }

    /// A reactor turn with `timeout`, then the clock and the timers.
    fn turn(&self, events: &mut Events, timeout: Option<Duration>, after_wait: impl FnOnce()) {
        let reactor = &self.shared.remotes[self.index].reactor;
        if let Err(e) = reactor.turn(events, timeout, after_wait) {
            // epoll_wait fails only on programming errors (EBADF, EFAULT, EINVAL).
            debug_assert!(false, "epoll_wait failed: {e}");
        }
        self.advance_timers();
    }

    fn advance_timers(&self) {
        let now = crate::time::clock_ms(self.shared.epoch);
        self.now_ms.set(now);
        let mut due = Vec::new();
        let mut wheel = self.wheel.borrow_mut();
        wheel.advance(now, |entry| due.push(entry));
        // Published for the admin listener; stored only when it changed, so a quiet
        // worker does not dirty a line other threads read.
        let armed = wheel.len();
        drop(wheel);
        let timers = &self.shared.remotes[self.index].timers;
        if timers.load(Relaxed) != armed {
            timers.store(armed, Relaxed);
        }
        // Wake outside the wheel borrow: a woken task may run code that touches timers
        // only when polled, but the waker itself may drop the last reference to a task.
        for entry in due {
            entry.fire();
        }
    }

    /// Parks until I/O, a timer, or a notification. Returns whether this worker is now
    /// searching (it was claimed by a notifier).
    fn park(&self, events: &mut Events) -> bool {
        // Timer operations first: one may be due and wake a task onto this very queue, which
        // the re-check below must see.
        self.apply_timer_ops();
        self.shared.announce_parked(self.index);
        if self.shared.has_queued_work() || self.shared.is_shutdown() {
            return self.shared.unannounce_parked(self.index);
        }
        let timeout = self.wheel.borrow().next_deadline().map(|d| {
            Duration::from_millis(d.saturating_sub(crate::time::clock_ms(self.shared.epoch)))
        });
        // Leave the parked state before delivering events: wakes delivered below must not
        // make a notifier claim this very worker.
        let mut searching = false;
        self.turn(events, timeout, || {
            searching = self.shared.unannounce_parked(self.index);
        });
        searching
    }
}

/// The body of a worker thread.
pub(crate) fn run(local: Rc<Local>, max_events: usize, on_turn: Option<&(dyn Fn() + Send + Sync)>) {
    let _guard = super::context::enter_worker(local.clone());
    let shared = local.shared.clone();
    let mut events = Events::with_capacity(max_events);
    let mut tick: u32 = 0;
    let mut searching = false;
    loop {
        if shared.is_shutdown() {
            break;
        }
        tick = tick.wrapping_add(1);
        if tick.is_multiple_of(EVENT_INTERVAL) {
            if let Some(f) = on_turn {
                f();
            }
            local.apply_timer_ops();
            local.turn(&mut events, Some(Duration::ZERO), || ());
        }
        match local.next_task(tick) {
            Some(task) => {
                if searching {
                    searching = false;
                    shared.end_search();
                    // Chain: there may be more work than this worker can take.
                    shared.notify_one();
                }
                task.run();
            }
            None => {
                if searching {
                    shared.end_search();
                }
                if let Some(f) = on_turn {
                    f();
                }
                searching = local.park(&mut events);
            }
        }
    }
    if searching {
        shared.end_search();
    }
}
