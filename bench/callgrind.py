#!/usr/bin/env python3
"""Instructions per request of two AnyGate binaries under `valgrind --tool=callgrind`.

Wall-clock CPU time on this 2-core machine drifts by more than the 3 % a change is allowed to
cost; instruction counts do not (the same binary, inputs and environment give the same
total). For each scenario and binary the server runs twice under callgrind, serving N1 and
then N2 keep-alive requests from one client connection; the instructions per request are
(I(N2) - I(N1)) / (N2 - N1), so startup, configuration loading and shutdown cancel out.

    bench/callgrind.py --baseline OLD_BIN [--binary NEW_BIN] [--n1 2000] [--n2 12000]

Scenarios: fixed (`GET /fixed`), fixed-pipelined (16 requests per write), static-1k (a
cached 1 KiB file), proxy (`GET /proxy`, to a backend run natively: the baseline binary
answering `OK`). Prints a Markdown table. Loopback only; every process is stopped.

With `--filters`, one more row measures the filter chain's own cost with this binary only
(the baseline may not know the kinds): `GET /filtered/` (the fixed route behind
`rate_limit` + `headers` + `ip`) against this binary's `fixed`.

With `--observe`, a row measures observability's own cost with this binary: `GET /fixed`
bare against the same route with the access log (JSON, to a file), metrics (an `admin`
listener) and tracing at 1 % exported over OTLP to a collector run here. Callgrind counts
every thread's instructions (the log writer's and the exporter's included), not the
kernel's (the file writes).
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from harness import ANYGATE_FILTERS, anygate_env, free_port, wait_ready  # noqa: E402  (the harness's own helpers)


def read_response(sock, buf):
    """Reads one response (Content-Length framed) from sock; returns the rest of buf."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response: {head[:80]!r}")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    n = int(m[1]) if m else 0
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed in a body")
        rest += chunk
    return rest[n:]


def drive(port, path, n, pipelined):
    req = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    s = socket.create_connection(("127.0.0.1", port), 30)
    buf = b""
    batch = 16 if pipelined else 1
    done = 0
    while done < n:
        k = min(batch, n - done)
        s.sendall(req * k)
        for _ in range(k):
            buf = read_response(s, buf)
        done += k
    s.close()


def instructions(binary, config, port, path, n, pipelined, tmp):
    out = os.path.join(tmp, f"cg-{port}-{n}.out")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "serve", "-c", config],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=anygate_env(binary, config))
    try:
        wait_ready(port, proc, limit=60.0)  # valgrind starts slowly
        drive(port, path, n, pipelined)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = open(out).read()
    m = re.search(r"(?m)^summary:\s+(\d+)", text) or re.search(r"(?m)^totals:\s+(\d+)", text)
    if not m:
        raise RuntimeError(f"no totals in {out}")
    return int(m[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/anygate"))
    ap.add_argument("--n1", type=int, default=2000)
    ap.add_argument("--n2", type=int, default=12000)
    ap.add_argument("--filters", action="store_true",
                    help="also measure the fixed route behind rate_limit + headers + ip")
    ap.add_argument("--observe", action="store_true",
                    help="also measure the fixed route with access log + metrics + tracing at 1 %%")
    ap.add_argument("--only-extra", action="store_true",
                    help="skip the baseline comparison; measure only the --filters/--observe rows")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="anygate-callgrind-")
    static = os.path.join(tmp, "static")
    os.makedirs(static)
    open(os.path.join(static, "1k.bin"), "wb").write(bytes(range(256)) * 4)
    backend_port = free_port()
    backend_cfg = os.path.join(tmp, "backend.yml")
    open(backend_cfg, "w").write(
        f'server: {{listen: "127.0.0.1:{backend_port}", workers: 1}}\nroutes: {{"GET /fixed": "OK"}}\n')
    backend = subprocess.Popen([args.baseline, "serve", "-c", backend_cfg],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=anygate_env(args.baseline, backend_cfg))
    scenarios = [("fixed", "/fixed", False), ("fixed-pipelined", "/fixed", True),
                 ("static-1k", "/static/1k.bin", False), ("proxy", "/proxy", False)]
    if args.only_extra:
        scenarios = []
    rows = []
    filter_row = None
    observe_row = None
    try:
        wait_ready(backend_port, backend, limit=60.0)
        for name, path, pipelined in scenarios:
            per = {}
            for label, binary in [("baseline", args.baseline), ("this", args.binary)]:
                port = free_port()
                cfg = os.path.join(tmp, f"{label}-{name}.yml")
                open(cfg, "w").write(config(port, static, backend_port))
                i1 = instructions(binary, cfg, port, path, args.n1, pipelined, tmp)
                i2 = instructions(binary, cfg, port, path, args.n2, pipelined, tmp)
                per[label] = (i2 - i1) / (args.n2 - args.n1)
                print(f"{name} {label}: {per[label]:,.0f} instructions/request", file=sys.stderr)
            rows.append((name, per["baseline"], per["this"]))
        if args.filters:
            per = []
            for path in ["/fixed", "/filtered/"]:
                port = free_port()
                cfg = os.path.join(tmp, f"filters-{len(per)}.yml")
                open(cfg, "w").write(config(port, static, backend_port) + FILTERS)
                i1 = instructions(args.binary, cfg, port, path, args.n1, False, tmp)
                i2 = instructions(args.binary, cfg, port, path, args.n2, False, tmp)
                per.append((i2 - i1) / (args.n2 - args.n1))
                print(f"{path} this: {per[-1]:,.0f} instructions/request", file=sys.stderr)
            filter_row = per
        if args.observe:
            collector = Collector()
            per = []
            for extra in ["", OBSERVE.format(tmp=tmp, admin=free_port(), otlp=collector.port)]:
                port = free_port()
                cfg = os.path.join(tmp, f"observe-{len(per)}.yml")
                open(cfg, "w").write(config(port, static, backend_port) + extra)
                i1 = instructions(args.binary, cfg, port, "/fixed", args.n1, False, tmp)
                i2 = instructions(args.binary, cfg, port, "/fixed", args.n2, False, tmp)
                per.append((i2 - i1) / (args.n2 - args.n1))
                print(f"/fixed observed={bool(extra)}: {per[-1]:,.0f} instructions/request", file=sys.stderr)
            observe_row = (per, collector.posts)
    finally:
        backend.send_signal(signal.SIGTERM)
        backend.wait(30)
    if rows:
        print(f"| scenario | baseline (instructions/request) | this change | ratio |")
        print("|---|---|---|---|")
        for name, b, t in rows:
            print(f"| {name} | {b:,.0f} | {t:,.0f} | {t / b:.3f}× |")
    if observe_row:
        (bare, observed), posts = observe_row
        print()
        print("| this binary | fixed (bare) | fixed + access log (JSON, file) + metrics + tracing 1 % | ratio |")
        print("|---|---|---|---|")
        print(f"| instructions/request | {bare:,.0f} | {observed:,.0f} | {observed / bare:.3f}× |")
        print(f"\n({posts} OTLP export requests received by the collector.)")
    if args.filters:
        bare, filtered = filter_row
        print()
        print("| this binary | fixed (bare) | fixed behind rate_limit + headers + ip | ratio |")
        print("|---|---|---|---|")
        print(f"| instructions/request | {bare:,.0f} | {filtered:,.0f} | {filtered / bare:.3f}× |")


# The `--observe` row's additions: access log (JSON, to a file), metrics, tracing at 1 %.
OBSERVE = """admin: {{ listen: "127.0.0.1:{admin}" }}
tracing: {{ sample: 0.01, otlp: {{ endpoint: "http://127.0.0.1:{otlp}/v1/traces" }} }}
plugins: [{{ kind: log, args: {{ format: json, to: "{tmp}/access.log" }} }}]
"""


class Collector:
    """An OTLP/HTTP sink on a free loopback port: reads each POST, answers 200."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.posts = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            conn, _ = self.sock.accept()
            with conn:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                head, _, body = buf.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                need = int(m[1]) if m else 0
                while len(body) < need:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                self.posts += 1


# The chain of the `--filters` row (the harness's `fixed-filters` group): limits high
# enough that nothing is refused.
FILTERS = ANYGATE_FILTERS


def config(port, static, backend_port):
    return (f'server: {{listen: "127.0.0.1:{port}", workers: 1}}\n'
            f'routes:\n  "GET /fixed": "OK"\n  "/static/": "{static}/"\n'
            f'  "/proxy": "http://127.0.0.1:{backend_port}/fixed"\n')


if __name__ == "__main__":
    main()
