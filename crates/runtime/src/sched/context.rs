//! The thread-local context: which runtime (and which worker) the current thread serves.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use super::Shared;
use super::worker::Local;
use crate::loom::sync::Arc;
use crate::reactor::Reactor;
use crate::task::Task;

enum Ctx {
    /// A worker thread of a runtime.
    Worker(Rc<Local>),
    /// A thread inside `Runtime::block_on`.
    Blocking(Arc<Shared>),
}

thread_local! {
    static CONTEXT: RefCell<Option<Ctx>> = const { RefCell::new(None) };
}

/// Runs `f` with the current worker, if this thread is one.
pub(crate) fn with_local<R>(f: impl FnOnce(&Local) -> R) -> Option<R> {
    CONTEXT.with(|c| match &*c.borrow() {
        Some(Ctx::Worker(local)) => Some(f(local)),
        _ => None,
    })
}

/// The runtime this thread is in (worker or `block_on`).
pub(crate) fn current() -> Option<Arc<Shared>> {
    CONTEXT.with(|c| match &*c.borrow() {
        Some(Ctx::Worker(local)) => Some(local.shared.clone()),
        Some(Ctx::Blocking(shared)) => Some(shared.clone()),
        None => None,
    })
}

/// The current worker's index if it belongs to `shared`.
pub(crate) fn worker_index_for(shared: &Arc<Shared>) -> Option<usize> {
    with_local(|l| Arc::ptr_eq(&l.shared, shared).then_some(l.index)).flatten()
}

/// Pushes onto the current worker's queue if it belongs to `shared`. `Ok(true)` when the
/// queue holds other tasks too (someone may want to steal).
pub(crate) fn try_push_local(shared: &Arc<Shared>, task: Task) -> Result<bool, Task> {
    CONTEXT.with(|c| match &*c.borrow() {
        Some(Ctx::Worker(local)) if Arc::ptr_eq(&local.shared, shared) => {
            local.queue.push(task);
            Ok(local.queue.len() > 1)
        }
        _ => Err(task),
    })
}

/// The reactor a new I/O object registers with: the current worker's, or round-robin.
pub(crate) fn reactor_for_new_io() -> io::Result<Arc<Reactor>> {
    if let Some(r) = with_local(|l| l.shared.remotes[l.index].reactor.clone()) {
        return Ok(r);
    }
    let shared = current().ok_or_else(no_runtime)?;
    let i = shared.pick_remote();
    Ok(shared.remotes[i].reactor.clone())
}

pub(crate) fn no_runtime() -> io::Error {
    io::Error::other("not inside an anygate runtime (use Runtime::block_on or spawn)")
}

/// Makes this thread a worker for the guard's lifetime.
pub(crate) fn enter_worker(local: Rc<Local>) -> EnterGuard {
    set(Ctx::Worker(local))
}

/// Makes this thread a `block_on` thread for the guard's lifetime.
///
/// # Panics
/// When called on a worker thread: blocking a worker would stall every task queued on it.
pub(crate) fn enter_blocking(shared: Arc<Shared>) -> EnterGuard {
    if with_local(|_| ()).is_some() {
        panic!("Runtime::block_on called from inside a runtime worker; spawn instead");
    }
    set(Ctx::Blocking(shared))
}

fn set(ctx: Ctx) -> EnterGuard {
    let prev = CONTEXT.with(|c| c.borrow_mut().replace(ctx));
    EnterGuard { prev: Some(prev) }
}

/// Restores the previous context on drop.
pub(crate) struct EnterGuard {
    prev: Option<Option<Ctx>>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let prev = self.prev.take().flatten();
        // Take the old value out first and drop it after the borrow ends: dropping a worker's
        // state runs destructors that may look at the context again.
        let old = CONTEXT.with(|c| std::mem::replace(&mut *c.borrow_mut(), prev));
        drop(old);
    }
}
