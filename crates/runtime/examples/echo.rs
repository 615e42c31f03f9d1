//! A TCP echo server on the runtime: one `SO_REUSEPORT` listener per worker.
//!
//! `cargo run --release -p anygate-runtime --example echo -- 127.0.0.1:7000`, then
//! `nc 127.0.0.1 7000`. Ctrl-C (or SIGTERM) stops it.

use std::net::SocketAddr;

use anygate_runtime::net::{ListenerOptions, TcpStream};
use anygate_runtime::signal::{Signal, Signals};
use anygate_runtime::{Runtime, spawn};

async fn echo(stream: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        if stream.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let rt = Runtime::builder().build()?;
    let workers = rt.handle().workers();
    rt.block_on(async move {
        let signals = Signals::new(&[Signal::Terminate, Signal::Interrupt])?;
        let opts = ListenerOptions::default().reuse_port(true);
        for _ in 0..workers {
            let listener = opts.bind(addr)?;
            spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    spawn(echo(stream));
                }
            });
        }
        eprintln!("echo: listening on {addr} with {workers} workers; Ctrl-C stops");
        let sig = signals.recv().await?;
        eprintln!("echo: {sig:?}, shutting down");
        Ok::<_, std::io::Error>(())
    })?;
    rt.shutdown();
    Ok(())
}
