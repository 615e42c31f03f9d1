//! Bounded pools of fixed-size I/O buffers.
//!
//! Each worker owns a pool (see [`crate::Builder::buffers`]). [`checkout`] returns `None`
//! when the pool is exhausted: the caller applies backpressure (stops reading, answers 503)
//! instead of allocating without bound. Buffers are allocated lazily up to the pool's
//! capacity and recycled through a lock-free queue, so a buffer may be returned from any
//! thread (a task that migrated). [`BufPool::in_use`] is the gauge of checked-out buffers.

use std::fmt;
use std::ops::{Deref, DerefMut};

use crossbeam_queue::ArrayQueue;

use crate::loom::sync::Arc;
use crate::loom::sync::atomic::{AtomicUsize, Ordering::*};

struct Inner {
    free: ArrayQueue<Box<[u8]>>,
    buf_size: usize,
    capacity: usize,
    allocated: AtomicUsize,
    in_use: AtomicUsize,
}

/// A bounded pool of `buf_size`-byte buffers.
#[derive(Clone)]
pub struct BufPool {
    inner: Arc<Inner>,
}

impl BufPool {
    /// A pool of at most `capacity` buffers of `buf_size` bytes each.
    pub fn new(buf_size: usize, capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                free: ArrayQueue::new(capacity.max(1)),
                buf_size,
                capacity,
                allocated: AtomicUsize::new(0),
                in_use: AtomicUsize::new(0),
            }),
        }
    }

    /// A buffer, or `None` when all `capacity` buffers are checked out.
    pub fn checkout(&self) -> Option<Buf> {
        let inner = &self.inner;
        let data = match inner.free.pop() {
            Some(b) => b,
            None => {
                inner
                    .allocated
                    .fetch_update(AcqRel, Acquire, |n| (n < inner.capacity).then_some(n + 1))
                    .ok()?;
                vec![0u8; inner.buf_size].into_boxed_slice()
            }
        };
        inner.in_use.fetch_add(1, Relaxed);
        Some(Buf {
            data: Some(data),
            pool: self.inner.clone(),
        })
    }

    /// Buffers currently checked out (a gauge).
    pub fn in_use(&self) -> usize {
        self.inner.in_use.load(Relaxed)
    }

    /// Buffers allocated so far (at most the capacity).
    pub fn allocated(&self) -> usize {
        self.inner.allocated.load(Relaxed)
    }

    /// The size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }
}

impl fmt::Debug for BufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufPool")
            .field("buf_size", &self.inner.buf_size)
            .field("capacity", &self.inner.capacity)
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// A buffer checked out of a [`BufPool`]; it goes back on drop.
pub struct Buf {
    data: Option<Box<[u8]>>,
    pool: Arc<Inner>,
}

impl Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.data.as_deref().unwrap_or_default()
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.data.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            // Never full: at most `capacity` buffers exist.
            let _ = self.pool.free.push(data);
            self.pool.in_use.fetch_sub(1, Relaxed);
        }
    }
}

impl fmt::Debug for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buf").field("len", &self.len()).finish()
    }
}

/// A buffer from the current worker's pool; `None` when it is exhausted or when called off
/// a worker thread.
pub fn checkout() -> Option<Buf> {
    crate::sched::context::with_local(|l| l.bufs.checkout()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_bounded_and_recycles() {
        let pool = BufPool::new(1024, 3);
        let a = pool.checkout().unwrap();
        let b = pool.checkout().unwrap();
        let mut c = pool.checkout().unwrap();
        assert_eq!(c.len(), 1024);
        c[0] = 7;
        assert!(pool.checkout().is_none(), "exhausted pool refuses");
        assert_eq!(pool.in_use(), 3);
        drop(b);
        assert_eq!(pool.in_use(), 2);
        let d = pool.checkout().expect("a returned buffer is reused");
        assert_eq!(pool.allocated(), 3, "no allocation beyond capacity");
        drop((a, c, d));
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn buffers_return_from_other_threads() {
        let pool = BufPool::new(64, 8);
        let bufs: Vec<_> = (0..8).map(|_| pool.checkout().unwrap()).collect();
        std::thread::spawn(move || drop(bufs)).join().unwrap();
        assert_eq!(pool.in_use(), 0);
        assert!(pool.checkout().is_some());
    }
}
