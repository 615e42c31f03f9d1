//! Scheduler behaviour: cross-thread wakes, stealing, panics, cancellation, shutdown.

use std::future::{Future, poll_fn};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use anygate_runtime::net::TcpListener;
use anygate_runtime::{Runtime, spawn, worker_index};

use crate::support::{loopback, run, runtime};

/// A turn-taking baton between two tasks: each waits for its turn, passes it, and wakes the
/// other from whichever worker it runs on.
struct Baton {
    turn: AtomicU64,
    wakers: [Mutex<Option<Waker>>; 2],
}

impl Baton {
    fn wait_turn(&self, side: usize, value: u64) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.turn.load(Ordering::Acquire) == value {
                return Poll::Ready(());
            }
            *self.wakers[side].lock().unwrap() = Some(cx.waker().clone());
            if self.turn.load(Ordering::Acquire) == value {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    fn pass(&self, to_side: usize, value: u64) {
        self.turn.store(value, Ordering::Release);
        if let Some(w) = self.wakers[to_side].lock().unwrap().take() {
            w.wake();
        }
    }
}

/// 1 000 000 cross-task wakes through 100 ping-pong pairs on 2 workers: none is lost (a lost
/// wake would stall a pair and trip the time limit).
#[test]
fn a_million_cross_thread_wakes_none_lost() {
    let rt = runtime(2);
    const PAIRS: u64 = 100;
    const ROUNDS: u64 = 5_000; // 2 wakes per round per pair
    let wakes = Arc::new(AtomicU64::new(0));
    let migrated = Arc::new(AtomicBool::new(false));
    let (w, m) = (wakes.clone(), migrated.clone());
    run(&rt, async move {
        let mut handles = Vec::new();
        for _ in 0..PAIRS {
            let baton = Arc::new(Baton {
                turn: AtomicU64::new(0),
                wakers: Default::default(),
            });
            for side in 0..2usize {
                let (baton, w, m) = (baton.clone(), w.clone(), m.clone());
                handles.push(spawn(async move {
                    let first = worker_index();
                    for round in 0..ROUNDS {
                        let mine = 2 * round + side as u64;
                        baton.wait_turn(side, mine).await;
                        if worker_index() != first {
                            m.store(true, Ordering::Relaxed);
                        }
                        baton.pass(1 - side, mine + 1);
                        w.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
        }
        for h in handles {
            h.await.expect("ping-pong task");
        }
    });
    assert_eq!(wakes.load(Ordering::Relaxed), PAIRS * ROUNDS * 2);
    assert!(
        migrated.load(Ordering::Relaxed),
        "tasks never moved between workers"
    );
}

/// Tasks spawned on a worker that stays busy complete on the other worker: the only way
/// they can run is by being stolen.
#[test]
fn work_is_stolen_from_a_busy_worker() {
    let rt = runtime(2);
    let (spawner, others) = run(&rt, async {
        spawn(async {
            let me = worker_index().expect("on a worker");
            let done = Arc::new(AtomicUsize::new(0));
            let ran_on = Arc::new(Mutex::new(Vec::new()));
            for _ in 0..64 {
                let (done, ran_on) = (done.clone(), ran_on.clone());
                spawn(async move {
                    ran_on.lock().unwrap().push(worker_index().unwrap());
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            // Keep this worker busy (never yield) until every task ran elsewhere.
            let deadline = Instant::now() + crate::support::LIMIT;
            while done.load(Ordering::SeqCst) < 64 {
                assert!(Instant::now() < deadline, "spawned tasks were never stolen");
                std::hint::spin_loop();
            }
            let ran_on = ran_on.lock().unwrap().clone();
            (me, ran_on)
        })
        .await
        .unwrap()
    });
    assert_eq!(others.len(), 64);
    assert!(
        others.iter().all(|&w| w != spawner),
        "a task ran on the busy worker: {others:?}"
    );
}

#[test]
fn a_panicking_task_does_not_take_its_worker_down() {
    let rt = runtime(1);
    run(&rt, async {
        let err = spawn(async { panic!("boom in a task") }).await.unwrap_err();
        assert!(err.is_panic());
        assert_eq!(err.panic_message(), Some("boom in a task"));
        // The single worker survived and keeps serving tasks and I/O.
        assert_eq!(spawn(async { 6 * 7 }).await.unwrap(), 42);
        let listener = TcpListener::bind(loopback()).unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = spawn(async move { listener.accept().await.map(|_| ()) });
        anygate_runtime::net::TcpStream::connect(addr)
            .await
            .unwrap();
        accept.await.unwrap().unwrap();
    });
}

#[test]
fn join_handles_return_values_and_abort_cancels() {
    let rt = runtime(2);
    run(&rt, async {
        let h = spawn(async { String::from("value") });
        assert_eq!(h.await.unwrap(), "value");

        let dropped = Arc::new(AtomicBool::new(false));
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let guard = SetOnDrop(dropped.clone());
        let h = spawn(async move {
            let _g = guard;
            std::future::pending::<()>().await;
        });
        h.abort();
        assert!(h.await.unwrap_err().is_cancelled());
        assert!(dropped.load(Ordering::SeqCst), "aborted future was dropped");
    });
}

#[test]
fn spawn_from_outside_any_worker_runs_on_a_worker() {
    let rt = runtime(2);
    let h = rt.handle().spawn(async { worker_index() });
    let idx = rt.block_on(h).unwrap();
    assert!(idx.is_some_and(|i| i < 2));
}

/// Shutdown joins every worker and drops the futures of tasks that would never finish,
/// including ones parked on sockets.
#[test]
fn shutdown_joins_every_worker_and_drops_pending_tasks() {
    let stopped = Arc::new(AtomicUsize::new(0));
    let s = stopped.clone();
    let rt = Runtime::builder()
        .workers(4)
        .on_thread_stop(move |_| {
            s.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let d = dropped.clone();
    rt.block_on(async move {
        for _ in 0..50 {
            let guard = CountDrop(d.clone());
            let listener = TcpListener::bind(loopback()).unwrap();
            spawn(async move {
                let _g = guard;
                let _ = listener.accept().await; // never connected to
            });
        }
    });
    assert_eq!(rt.handle().live_tasks(), 50);
    let handle = rt.handle().clone();
    let t0 = Instant::now();
    assert_eq!(rt.shutdown(), 4);
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        4,
        "every worker thread ran to its end"
    );
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        50,
        "pending futures were dropped"
    );
    assert_eq!(handle.live_tasks(), 0);
    // Spawning after shutdown is refused cleanly.
    let late = handle.spawn(async { 1 });
    assert!(late.is_finished());
}

#[test]
fn block_on_drives_io_and_timers_from_outside_the_workers() {
    let rt = runtime(2);
    run(&rt, async {
        let t0 = Instant::now();
        anygate_runtime::time::sleep(Duration::from_millis(20)).await;
        assert!(t0.elapsed() >= Duration::from_millis(20), "woke early");
        let listener = TcpListener::bind(loopback()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = futures_join(
            listener.accept(),
            anygate_runtime::net::TcpStream::connect(addr),
        )
        .await;
        let (server, _) = a.unwrap();
        let client = b.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        let mut n = 0;
        while n < 4 {
            n += server.read(&mut buf[n..]).await.unwrap();
        }
        assert_eq!(&buf, b"ping");
    });
}

/// Polls two futures to completion on one task.
async fn futures_join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut ra, mut rb) = (None, None);
    poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}

/// The safety net of every test here: a future that never completes is cut off by
/// `timeout` when it is awaited from `block_on` (the timer lives on a worker).
#[test]
fn timeout_in_block_on_cuts_off_a_hung_future() {
    let rt = runtime(2);
    let res = rt.block_on(anygate_runtime::time::timeout(
        Duration::from_millis(50),
        std::future::pending::<()>(),
    ));
    assert!(res.is_err());
}

/// Regression: during shutdown, a task's destructor that wakes another task while holding a
/// lock (as h2 does with its stream store) deadlocked, because `wake` cancelled the woken
/// task inline and its destructor took the same lock. Wakes must never run destructors.
#[test]
fn wake_during_shutdown_does_not_drop_the_woken_future_inside_wake() {
    type Slot = Arc<Mutex<Option<Waker>>>;
    struct WakeUnderLock(Slot);
    impl Drop for WakeUnderLock {
        fn drop(&mut self) {
            let guard = self.0.lock().unwrap();
            if let Some(w) = guard.as_ref() {
                w.wake_by_ref();
            }
        }
    }
    struct LockOnDrop(Slot);
    impl Drop for LockOnDrop {
        fn drop(&mut self) {
            drop(self.0.lock().unwrap());
        }
    }
    let slot: Slot = Arc::default();
    let rt = runtime(1);
    let (a, b) = (slot.clone(), slot.clone());
    let registered = rt.block_on(async move {
        // Spawned first, so shutdown cancels it first.
        spawn(async move {
            let _g = WakeUnderLock(a);
            std::future::pending::<()>().await;
        });
        let waiting = spawn(async move {
            let g = LockOnDrop(b);
            poll_fn(|cx| {
                *g.0.lock().unwrap() = Some(cx.waker().clone());
                Poll::<()>::Pending
            })
            .await;
        });
        // Let B register its waker: poll until the slot is filled.
        poll_fn(|cx| {
            if slot.lock().unwrap().is_some() {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
        !waiting.is_finished()
    });
    assert!(registered);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt.shutdown();
        let _ = tx.send(());
    });
    rx.recv_timeout(crate::support::LIMIT)
        .expect("shutdown deadlocked in a wake");
}

/// Regression (review finding "a detached task's output is dropped at an arbitrary time"):
/// with the join handle gone, the output must be dropped when the task completes, even if
/// some clone of the task's waker lives on elsewhere (here: in a slot the test keeps).
#[test]
fn detached_output_is_dropped_at_completion_not_with_the_last_waker() {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let rt = runtime(1);
    let dropped = Arc::new(AtomicBool::new(false));
    let lingering: Arc<Mutex<Option<Waker>>> = Arc::default();
    let (d, l) = (dropped.clone(), lingering.clone());
    run(&rt, async move {
        let handle = spawn(async move {
            // Leave a clone of this task's waker somewhere that outlives the task.
            poll_fn(|cx| {
                *l.lock().unwrap() = Some(cx.waker().clone());
                Poll::Ready(())
            })
            .await;
            Flag(d)
        });
        drop(handle);
        // Wait (bounded by the test limit) for the worker to finish the task.
        poll_fn(|cx| {
            if dropped.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
    });
    assert!(
        lingering.lock().unwrap().is_some(),
        "the waker clone is still alive"
    );
}

#[test]
fn wake_all_wakes_tasks_that_registered_nowhere() {
    let rt = runtime(2);
    let flag = Arc::new(AtomicBool::new(false));
    let polled = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (flag, polled) = (flag.clone(), polled.clone());
            rt.spawn(poll_fn(move |_cx| {
                polled.fetch_add(1, Ordering::SeqCst);
                // Deliberately keeps no waker: only `wake_all` can poll it again.
                if flag.load(Ordering::SeqCst) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }))
        })
        .collect();
    run(&rt, async {
        // Every task has been polled once and is parked without a waker.
        poll_fn(|cx| {
            if polled.load(Ordering::SeqCst) >= 100 {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
        flag.store(true, Ordering::SeqCst);
        rt.handle().wake_all();
        for h in handles {
            h.await.unwrap();
        }
    });
    assert_eq!(rt.handle().live_tasks(), 0);
}

#[test]
fn yield_now_lets_the_other_tasks_of_a_worker_run() {
    // One worker: a task that never waits on anything would keep it forever; one that
    // yields lets the other task run, and sees its effect.
    let rt = runtime(1);
    let flag = Arc::new(AtomicBool::new(false));
    let (f1, f2) = (flag.clone(), flag.clone());
    let spinner = rt.spawn(async move {
        for turns in 0..1_000_000u32 {
            if f1.load(Ordering::SeqCst) {
                return turns;
            }
            anygate_runtime::yield_now().await;
        }
        panic!("the other task never ran");
    });
    let setter = rt.spawn(async move { f2.store(true, Ordering::SeqCst) });
    run(&rt, async {
        setter.await.unwrap();
        assert!(spinner.await.unwrap() < 1_000_000);
    });
}

#[test]
fn regression_live_tasks_is_zero_once_every_join_handle_resolved() {
    // The task left the live set only after waking its joiner, so a joiner on another
    // worker could see it counted for a moment.
    let rt = Runtime::builder().workers(2).build().unwrap();
    for _ in 0..50 {
        let handles: Vec<_> = (0..200).map(|i| rt.spawn(async move { i })).collect();
        run(&rt, async {
            for h in handles {
                h.await.unwrap();
            }
        });
        assert_eq!(rt.handle().live_tasks(), 0);
    }
}

/// The turn hook runs on a busy worker (every few dozen tasks, with its non-blocking
/// reactor turn) and before a worker parks: what gathers per thread (log lines) is handed
/// over whether the worker is saturated or idle.
#[test]
fn the_turn_hook_runs_while_a_worker_is_busy_and_before_it_parks() {
    let turns = Arc::new(AtomicUsize::new(0));
    let t = turns.clone();
    let rt = Runtime::builder()
        .workers(1)
        .on_turn(move || {
            t.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .expect("runtime builds");
    let t = turns.clone();
    let (busy, parked) = run(&rt, async move {
        let h = spawn(async move {
            // Busy: 6 100 yields keep the worker's queue non-empty, so it never parks.
            let before = t.load(Ordering::Relaxed);
            for _ in 0..6_100 {
                anygate_runtime::yield_now().await;
            }
            let busy = t.load(Ordering::Relaxed) - before;
            // Idle: the worker parks on the timer, running the hook first.
            let before = t.load(Ordering::Relaxed);
            anygate_runtime::time::sleep(Duration::from_millis(5)).await;
            (busy, t.load(Ordering::Relaxed) - before)
        });
        h.await.expect("the task ends")
    });
    assert!(busy >= 50, "the hook ran {busy} times in 6 100 busy tasks");
    assert!(parked >= 1, "the hook did not run before the worker parked");
}
