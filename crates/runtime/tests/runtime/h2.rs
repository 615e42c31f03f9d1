//! The h2 adapter: a real h2 client and server talking over runtime sockets on loopback.

use anygate_runtime::compat::TokioIo;
use anygate_runtime::net::{TcpListener, TcpStream};
use anygate_runtime::spawn;
use bytes::Bytes;
use http::{Request, Response, StatusCode};

use crate::support::{loopback, run, runtime};

#[test]
fn h2_client_and_server_run_on_the_runtime() {
    let rt = runtime(2);
    run(&rt, async {
        let listener = TcpListener::bind(loopback()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(TokioIo::new(stream))
                .await
                .expect("server handshake");
            // h2 makes progress only while the connection is polled (`accept`), so each
            // request is handled on its own task.
            let mut handlers = Vec::new();
            while let Some(req) = conn.accept().await {
                let (req, mut respond) = req.expect("request");
                handlers.push(spawn(async move {
                    let path = req.uri().path().to_owned();
                    let mut body = req.into_body();
                    let mut received = Vec::new();
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.unwrap();
                        let _ = body.flow_control().release_capacity(chunk.len());
                        received.extend_from_slice(&chunk);
                    }
                    let resp = Response::builder().status(StatusCode::OK).body(()).unwrap();
                    let mut send = respond.send_response(resp, false).unwrap();
                    let reply = format!("{path}:{}", received.len());
                    send.send_data(Bytes::from(reply), true).unwrap();
                }));
            }
            let served = handlers.len();
            for h in handlers {
                h.await.expect("handler");
            }
            served
        });

        let stream = TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(TokioIo::new(stream))
            .await
            .expect("client handshake");
        let driver = spawn(async move {
            let _ = conn.await;
        });
        let mut responses = Vec::new();
        // Concurrent streams on one connection, each with a body larger than one frame.
        for i in 0..20 {
            let mut client = client.clone().ready().await.unwrap();
            let req = Request::builder()
                .method("POST")
                .uri(format!("http://localhost/s/{i}"))
                .body(())
                .unwrap();
            let (resp, mut send) = client.send_request(req, false).unwrap();
            send.send_data(Bytes::from(vec![b'x'; 40_000 + i]), true)
                .unwrap();
            responses.push(spawn(async move {
                let resp = resp.await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                let mut body = resp.into_body();
                let mut out = Vec::new();
                while let Some(chunk) = body.data().await {
                    out.extend_from_slice(&chunk.unwrap());
                }
                String::from_utf8(out).unwrap()
            }));
        }
        for (i, r) in responses.into_iter().enumerate() {
            assert_eq!(r.await.unwrap(), format!("/s/{i}:{}", 40_000 + i));
        }
        drop(client);
        assert_eq!(server.await.unwrap(), 20);
        driver.await.unwrap();
    });
}
