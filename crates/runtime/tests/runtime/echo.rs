//! An echo server with 1 000 concurrent clients, each verifying its own bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anygate_runtime::net::{TcpListener, TcpStream};
use anygate_runtime::spawn;

use crate::support::{loopback, run, runtime};

async fn echo(stream: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A payload unique to client `id`: a mismatch means bytes crossed connections.
fn payload(id: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (id.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8)
        .collect()
}

#[test]
fn thousand_concurrent_clients_get_their_own_bytes_back() {
    let rt = runtime(2);
    let verified = Arc::new(AtomicUsize::new(0));
    let v = verified.clone();
    run(&rt, async move {
        let listener = TcpListener::bind(loopback()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                spawn(echo(stream));
            }
        });
        let clients: Vec<_> = (0..1000)
            .map(|id| {
                let v = v.clone();
                spawn(async move {
                    let stream = TcpStream::connect(addr).await.expect("connect");
                    let sent = payload(id, 1024 + id * 13);
                    // Several rounds on one connection, so each client waits on
                    // readiness many times.
                    for round in 0..3 {
                        let chunk = &sent[round * sent.len() / 3..(round + 1) * sent.len() / 3];
                        stream.write_all(chunk).await.expect("write");
                        let mut got = vec![0u8; chunk.len()];
                        let mut filled = 0;
                        while filled < got.len() {
                            let n = stream.read(&mut got[filled..]).await.expect("read");
                            assert_ne!(n, 0, "server closed early");
                            filled += n;
                        }
                        assert_eq!(got, chunk, "client {id} round {round} got foreign bytes");
                    }
                    v.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        for c in clients {
            c.await.expect("client task");
        }
        server.abort();
    });
    assert_eq!(verified.load(Ordering::SeqCst), 1000);
    assert_eq!(rt.shutdown(), 2);
}
