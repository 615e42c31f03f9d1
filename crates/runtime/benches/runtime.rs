//! Runtime micro-benchmarks. Each answers one question:
//!
//! - `spawn_complete`: what does a task cost, spawned from a worker and awaited?
//! - `timer_insert_cancel`: what does arming and cancelling a timer cost (the idle-timeout
//!   pattern of every keep-alive connection)?
//! - `echo_rtt`: what does one 64-byte request/response round trip over loopback cost on this
//!   runtime, against tokio in the same run (current-thread vs 1 worker; multi-thread vs 2)?

#![expect(
    clippy::disallowed_methods,
    reason = "benchmarks measure wall-clock time"
)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use anygate_runtime::net::{TcpListener, TcpStream};
use anygate_runtime::time::sleep;
use anygate_runtime::{Runtime, spawn};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const TASKS: usize = 1000;

fn spawn_complete(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_complete");
    g.throughput(Throughput::Elements(TASKS as u64));
    for workers in [1, 2] {
        let rt = Runtime::builder().workers(workers).build().unwrap();
        g.bench_function(BenchmarkId::new("anygate", workers), |b| {
            b.iter(|| {
                rt.block_on(rt.spawn(async {
                    let handles: Vec<_> = (0..TASKS).map(|i| spawn(async move { i })).collect();
                    let mut sum = 0;
                    for h in handles {
                        sum += h.await.unwrap();
                    }
                    sum
                }))
                .unwrap()
            });
        });
    }
    g.finish();
}

fn timer_insert_cancel(c: &mut Criterion) {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let mut g = c.benchmark_group("timer_insert_cancel");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sleep_register_then_drop", |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let mut cx = Context::from_waker(Waker::noop());
                let start = Instant::now();
                for i in 0..iters {
                    // Spread deadlines over the wheel's levels.
                    let mut s = sleep(Duration::from_millis(1 + (i % 100_000)));
                    let _ = Pin::new(&mut s).poll(&mut cx);
                    drop(s);
                }
                start.elapsed()
            }))
            .unwrap()
        });
    });
    g.bench_function("sleep_reset_in_place", |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let mut cx = Context::from_waker(Waker::noop());
                let mut s = sleep(Duration::from_secs(60));
                let _ = Pin::new(&mut s).poll(&mut cx);
                let base = anygate_runtime::time::now();
                let start = Instant::now();
                for i in 0..iters {
                    s.reset(base + Duration::from_millis(60_000 + (i % 1000)));
                }
                start.elapsed()
            }))
            .unwrap()
        });
    });
    g.finish();
}

const MSG: usize = 64;

async fn anygate_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = spawn(async move { listener.accept().await.unwrap().0 });
    let client = TcpStream::connect(addr).await.unwrap();
    (client, accept.await.unwrap())
}

async fn anygate_read_exact(s: &TcpStream, buf: &mut [u8]) {
    let mut n = 0;
    while n < buf.len() {
        n += s.read(&mut buf[n..]).await.unwrap();
    }
}

fn echo_rtt_anygate(rt: &Runtime, iters: u64) -> Duration {
    rt.block_on(rt.spawn(async move {
        let (client, server) = anygate_pair().await;
        let echo = spawn(async move {
            let mut buf = [0u8; MSG];
            loop {
                let mut n = 0;
                while n < MSG {
                    match server.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                server.write_all(&buf).await.unwrap();
            }
        });
        let msg = [7u8; MSG];
        let mut buf = [0u8; MSG];
        let start = Instant::now();
        for _ in 0..iters {
            client.write_all(&msg).await.unwrap();
            anygate_read_exact(&client, &mut buf).await;
        }
        let elapsed = start.elapsed();
        drop(client);
        echo.await.unwrap();
        elapsed
    }))
    .unwrap()
}

fn echo_rtt_tokio(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = [0u8; MSG];
            while s.read_exact(&mut buf).await.is_ok() {
                s.write_all(&buf).await.unwrap();
            }
        });
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client.set_nodelay(true).unwrap();
        let msg = [7u8; MSG];
        let mut buf = [0u8; MSG];
        let start = Instant::now();
        for _ in 0..iters {
            client.write_all(&msg).await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
        }
        let elapsed = start.elapsed();
        drop(client);
        echo.await.unwrap();
        elapsed
    })
}

fn echo_rtt(c: &mut Criterion) {
    let mut g = c.benchmark_group("echo_rtt_64B");
    g.throughput(Throughput::Elements(1));
    let ours1 = Runtime::builder().workers(1).build().unwrap();
    let ours2 = Runtime::builder().workers(2).build().unwrap();
    let tokio_ct = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tokio_mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    g.bench_function("anygate_1_worker", |b| {
        b.iter_custom(|n| echo_rtt_anygate(&ours1, n));
    });
    g.bench_function("tokio_current_thread", |b| {
        b.iter_custom(|n| echo_rtt_tokio(&tokio_ct, n));
    });
    g.bench_function("anygate_2_workers", |b| {
        b.iter_custom(|n| echo_rtt_anygate(&ours2, n));
    });
    g.bench_function("tokio_multi_thread_2", |b| {
        b.iter_custom(|n| echo_rtt_tokio(&tokio_mt, n));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = spawn_complete, timer_insert_cancel, echo_rtt
}
criterion_main!(benches);
