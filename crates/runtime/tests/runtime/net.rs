//! TCP details: writev, sendfile, readiness on close, connect errors, socket options.

use std::io::{IoSlice, Write};
use std::net::Shutdown;

use anygate_runtime::net::{ListenerOptions, TcpListener, TcpStream};
use anygate_runtime::spawn;

use crate::support::{loopback, run, runtime};

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = spawn(async move { listener.accept().await.unwrap().0 });
    let client = TcpStream::connect(addr).await.unwrap();
    (client, accept.await.unwrap())
}

async fn read_exact(s: &TcpStream, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut n = 0;
    while n < len {
        let got = s.read(&mut out[n..]).await.unwrap();
        assert_ne!(got, 0, "peer closed after {n} of {len} bytes");
        n += got;
    }
    out
}

#[test]
fn writev_sends_all_slices_in_order() {
    let rt = runtime(2);
    run(&rt, async {
        let (a, b) = pair().await;
        let n = a
            .writev(&[
                IoSlice::new(b"HTTP/1.1 200 OK\r\n\r\n"),
                IoSlice::new(b"body"),
            ])
            .await
            .unwrap();
        assert_eq!(n, 23);
        assert_eq!(read_exact(&b, 23).await, b"HTTP/1.1 200 OK\r\n\r\nbody");
    });
}

#[test]
fn sendfile_streams_a_file_larger_than_the_socket_buffer() {
    let rt = runtime(2);
    let mut tmp = std::env::temp_dir();
    tmp.push(format!("anygate-sendfile-{}", std::process::id()));
    let content: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    std::fs::File::create(&tmp)
        .unwrap()
        .write_all(&content)
        .unwrap();
    let path = tmp.clone();
    let expected = content.clone();
    run(&rt, async move {
        let (a, b) = pair().await;
        let reader = spawn(async move { read_exact(&b, expected.len()).await == expected });
        let file = std::fs::File::open(&path).unwrap();
        let mut offset = 0u64;
        while (offset as usize) < content.len() {
            let remaining = content.len() - offset as usize;
            let n = a.sendfile(&file, &mut offset, remaining).await.unwrap();
            assert_ne!(n, 0);
        }
        assert!(reader.await.unwrap(), "received bytes differ from the file");
    });
    let _ = std::fs::remove_file(tmp);
}

#[test]
fn read_returns_zero_after_peer_shutdown() {
    let rt = runtime(2);
    run(&rt, async {
        let (a, b) = pair().await;
        a.write_all(b"last words").await.unwrap();
        a.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_exact(&b, 10).await, b"last words");
        let mut buf = [0u8; 16];
        assert_eq!(b.read(&mut buf).await.unwrap(), 0);
        assert_eq!(b.read(&mut buf).await.unwrap(), 0, "closed state is sticky");
    });
}

#[test]
fn connect_to_a_closed_port_fails_cleanly() {
    let rt = runtime(1);
    run(&rt, async {
        // Bind then drop to get a port nobody listens on.
        let addr = {
            let l = std::net::TcpListener::bind(loopback()).unwrap();
            l.local_addr().unwrap()
        };
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    });
}

/// Linux copies TCP_NODELAY from the listener to accepted sockets, which is why
/// `ListenerOptions::nodelay` costs no syscall per connection. Pin that assumption.
#[test]
fn accepted_sockets_inherit_nodelay_from_the_listener() {
    let rt = runtime(1);
    run(&rt, async {
        for on in [true, false] {
            let listener = ListenerOptions::default()
                .nodelay(on)
                .bind(loopback())
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let accept =
                spawn(async move { listener.accept().await.unwrap().0.nodelay().unwrap() });
            let _client = TcpStream::connect(addr).await.unwrap();
            assert_eq!(accept.await.unwrap(), on);
        }
    });
}

#[test]
fn reuse_port_lets_one_listener_per_worker_share_an_address() {
    let rt = runtime(2);
    run(&rt, async {
        let opts = ListenerOptions::default().reuse_port(true);
        let first = opts.bind(loopback()).unwrap();
        let addr = first.local_addr().unwrap();
        let second = opts.bind(addr).expect("second SO_REUSEPORT bind");
        assert_eq!(second.local_addr().unwrap(), addr);
        // Without SO_REUSEPORT the same bind is refused.
        assert!(ListenerOptions::default().bind(addr).is_err());
    });
}

#[test]
fn io_outside_a_runtime_is_an_error_not_a_panic() {
    let err = TcpListener::bind(loopback()).unwrap_err();
    assert!(
        err.to_string().contains("not inside an anygate runtime"),
        "{err}"
    );
}

#[test]
fn resolve_answers_every_clone_off_the_worker() {
    let rt = runtime(1);
    run(&rt, async {
        let lookup = anygate_runtime::net::resolve("localhost", 8080);
        let other = lookup.clone();
        let waiter = spawn(other);
        let addrs = lookup.await.expect("localhost resolves");
        assert!(!addrs.is_empty());
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{addrs:?}"
        );
        assert_eq!(waiter.await.unwrap().unwrap(), addrs);
        let literal = anygate_runtime::net::resolve("127.0.0.1", 1).await.unwrap();
        assert_eq!(literal, vec!["127.0.0.1:1".parse().unwrap()]);
    });
}

#[test]
fn peek_now_sees_data_and_the_close() {
    let rt = runtime(1);
    run(&rt, async {
        let (a, b) = pair().await;
        let mut byte = [0u8; 1];
        assert_eq!(
            a.peek_now(&mut byte).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
        b.write_all(b"x").await.unwrap();
        drop(b);
        a.readable().await.unwrap();
        assert_eq!(a.peek_now(&mut byte).unwrap(), 1, "peeked, not consumed");
        assert_eq!(read_exact(&a, 1).await, b"x");
        let mut rest = [0u8; 1];
        assert_eq!(a.read(&mut rest).await.unwrap(), 0);
        assert_eq!(
            a.peek_now(&mut byte).unwrap(),
            0,
            "the close, seen by a peek"
        );
    });
}
