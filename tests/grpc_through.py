#!/usr/bin/env python3
"""gRPC through the gateway, with Python's grpcio on both ends.

Starts a gRPC server (raw-bytes methods, no protobuf) on a free loopback port and prints
`port N`; then reads the gateway's `host:port` from stdin and calls through it:

    unary, a 1 MiB unary, server streaming, client streaming, bidirectional ping-pong
    (each message answered before the next is sent: nothing may wait for the request's end),
    trailers (a status and trailing metadata set by the server), the deadline propagated
    (`grpc-timeout`), a deadline exceeded, an upstream down (UNAVAILABLE from the gateway,
    with its error code), a gateway timeout (DEADLINE_EXCEEDED from the gateway), and 100
    concurrent calls over 4 client connections sharing at most 2 upstream connections
    (counted by the peers the server sees).

Prints one `ok NAME` or `FAIL NAME: why` line per case and `N passed, M failed`; exits 1
when one failed. The gateway routes `/t.T/` to this server over h2c, `/down.D/` to a closed
port, and `/slow.S/` to this server with `proxy.timeouts.read: 300ms`.
"""

import queue
import sys
import threading
import time
from concurrent import futures

import grpc

PEERS = set()
PEERS_LOCK = threading.Lock()


def unary(request, context):
    return request[::-1] + b"!"


def size(request, context):
    return str(len(request)).encode() + b":" + request[-4:]


def server_stream(request, context):
    for i in range(int(request)):
        yield b"item %d" % i


def client_stream(requests, context):
    return b"+".join(requests)


def bidi(requests, context):
    for r in requests:
        yield b"re:" + r


def fail(request, context):
    context.set_trailing_metadata((("x-trail", "yes"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "nothing here")


def remaining(request, context):
    return b"%.3f" % context.time_remaining()


def slow(request, context):
    time.sleep(2)
    return b"late"


def peer(request, context):
    with PEERS_LOCK:
        PEERS.add(context.peer())
    time.sleep(0.3)
    return b"ok"


def handlers():
    u = grpc.unary_unary_rpc_method_handler
    h = {
        "Unary": u(unary),
        "Size": u(size),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Fail": u(fail),
        "Remaining": u(remaining),
        "Slow": u(slow),
        "Peer": u(peer),
    }
    return [
        grpc.method_handlers_generic_handler("t.T", h),
        grpc.method_handlers_generic_handler("slow.S", {"Slow": u(slow)}),
    ]


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=128))
    server.add_generic_rpc_handlers(handlers())
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    gateway = sys.stdin.readline().strip()
    results = []

    def case(name):
        def wrap(f):
            try:
                f()
                results.append((name, None))
            except Exception as e:  # noqa: BLE001 - every failure is reported
                results.append((name, f"{type(e).__name__}: {e}"))
            return f

        return wrap

    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 8 << 20)]

    # First, before any call made a connection: a burst on a cold gateway.
    @case("100_calls_share_at_most_2_upstream_connections")
    def _():
        PEERS.clear()
        chans = [grpc.insecure_channel(gateway, options=opts) for _ in range(4)]
        calls = [chans[i % 4].unary_unary("/t.T/Peer").future(b"", timeout=20) for i in range(100)]
        got = [c.result() for c in calls]
        assert got == [b"ok"] * 100
        for c in chans:
            c.close()
        assert 1 <= len(PEERS) <= 2, PEERS
        print(f"100 calls over {len(PEERS)} upstream connection(s)", flush=True)

    ch = grpc.insecure_channel(gateway, options=opts)
    grpc.channel_ready_future(ch).result(timeout=10)

    @case("unary")
    def _():
        got = ch.unary_unary("/t.T/Unary")(b"hello", timeout=10)
        assert got == b"olleh!", got

    @case("unary_1MiB")
    def _():
        body = bytes(range(256)) * 4096
        got = ch.unary_unary("/t.T/Size")(body, timeout=20)
        assert got == b"1048576:" + body[-4:], got[:40]

    @case("server_streaming")
    def _():
        got = list(ch.unary_stream("/t.T/ServerStream")(b"5", timeout=10))
        assert got == [b"item %d" % i for i in range(5)], got

    @case("client_streaming")
    def _():
        got = ch.stream_unary("/t.T/ClientStream")(iter([b"a", b"b", b"c"]), timeout=10)
        assert got == b"a+b+c", got

    @case("bidirectional_ping_pong")
    def _():
        q = queue.Queue()

        def requests():
            for i in range(5):
                yield b"m%d" % i
                # The next message leaves only once this one's answer arrived.
                assert q.get(timeout=5) == b"re:m%d" % i

        stream = ch.stream_stream("/t.T/Bidi")(requests(), timeout=20)
        got = []
        for r in stream:
            got.append(r)
            q.put(r)
        assert got == [b"re:m%d" % i for i in range(5)], got

    @case("http1_client_gets_the_trailers_in_the_last_chunk")
    def _():
        import socket

        host, port = gateway.rsplit(":", 1)
        msg = b"\x00\x00\x00\x00\x05hello"
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(
                b"POST /t.T/Unary HTTP/1.1\r\nhost: gw\r\ncontent-type: application/grpc\r\n"
                b"te: trailers\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(msg) + msg
            )
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding: chunked" in head.lower(), head
        # One chunk with the answer's gRPC frame, then the last chunk and its trailers.
        assert b"olleh!" in body, body
        last = body[body.rindex(b"\r\n0\r\n") + 2 :]
        assert b"grpc-status: 0\r\n" in last.lower(), last
        assert last.endswith(b"\r\n\r\n"), last

    @case("http1_client_body_still_goes_up_after_the_upstream_answered_first")
    def _():
        import socket

        host, port = gateway.rsplit(":", 1)

        def chunk(b):
            return b"%x\r\n%s\r\n" % (len(b), b)

        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(
                b"POST /t.T/Bidi HTTP/1.1\r\nhost: gw\r\ncontent-type: application/grpc\r\n"
                b"te: trailers\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                + chunk(b"\x00\x00\x00\x00\x02m0")
            )
            # The server answers the first message (its head and one message) before the
            # body ends; the rest of the body must still reach it.
            time.sleep(0.5)
            s.sendall(chunk(b"\x00\x00\x00\x00\x02m1") + b"0\r\n\r\n")
            raw = b""
            while chunk_ := s.recv(65536):
                raw += chunk_
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"re:m0" in body and b"re:m1" in body, body
        assert b"grpc-status: 0" in body.lower(), body

    @case("trailers_status_and_metadata")
    def _():
        try:
            ch.unary_unary("/t.T/Fail")(b"", timeout=10)
            raise AssertionError("no error")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
            assert e.details() == "nothing here", e.details()
            assert ("x-trail", "yes") in tuple(e.trailing_metadata()), e.trailing_metadata()

    @case("deadline_propagated")
    def _():
        left = float(ch.unary_unary("/t.T/Remaining")(b"", timeout=5))
        assert 3.0 < left <= 5.5, left

    @case("deadline_exceeded")
    def _():
        start = time.monotonic()
        try:
            ch.unary_unary("/t.T/Slow")(b"", timeout=0.5)
            raise AssertionError("no error")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.code()
        assert time.monotonic() - start < 1.9

    @case("upstream_down_unavailable")
    def _():
        try:
            ch.unary_unary("/down.D/X")(b"", timeout=10)
            raise AssertionError("no error")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE, e.code()
            # The gateway's own answer (HTTP 200, grpc-status 14), not an HTTP 502.
            assert "AG-UPS-5021" in e.details(), e.details()

    @case("gateway_timeout_deadline_exceeded")
    def _():
        try:
            ch.unary_unary("/slow.S/Slow")(b"", timeout=10)
            raise AssertionError("no error")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.code()
            assert "AG-UPS-5042" in e.details(), e.details()

    ch.close()
    server.stop(0)
    failed = 0
    for name, why in results:
        if why is None:
            print(f"ok {name}")
        else:
            failed += 1
            print(f"FAIL {name}: {why}")
    print(f"{len(results) - failed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
