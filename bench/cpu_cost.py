#!/usr/bin/env python3
"""CPU time per request of one AnyGate binary, bare against observed, paired round by round.

Callgrind (bench/callgrind.py) counts user-space instructions only; a request's real cost
also holds the kernel's share (the socket reads and writes, epoll, the log file's writes),
which is most of it for a small response. This script measures what the issue's goal
names, CPU per request: the server (one worker, pinned to one CPU; wrk pinned to the
other) serves `wrk -t1 -c32` for D seconds; its CPU time is the sum over its threads of
`/proc/PID/task/*/schedstat`'s on-CPU nanoseconds (the log writer and the OTLP exporter
included); CPU per request is that over wrk's request count.

This VM's timing drifts by ±20 % between runs of the same binary, so the modes run
interleaved, R rounds of each, and the ratio reported is the median over rounds of each
round's observed/bare ratio (a round's modes run back to back, under the same drift).

    bench/cpu_cost.py [--binary target/release/anygate] [--rounds 9] [--duration 3]

Modes: bare; log (JSON access log to a file); metrics (an admin listener); tracing (1 %,
exported over OTLP to a collector run here); all three. Prints a Markdown table.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from callgrind import Collector  # noqa: E402  (the OTLP sink)
from harness import anygate_env, free_port, wait_ready  # noqa: E402

CONNS = 32  # wrk's connections (--connections)


def cpu_ns(pid):
    """On-CPU nanoseconds of every thread of pid."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass  # a thread that exited between the listing and the read
    return total


def run(binary, cfg, port, duration):
    """Serves wrk against cfg; returns (CPU ns per request, requests per second)."""
    server = subprocess.Popen(["taskset", "-c", "1", binary, "serve", "-c", cfg],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=anygate_env(binary, cfg))
    try:
        wait_ready(port, server, limit=30.0)
        url = f"http://127.0.0.1:{port}/fixed"
        # Warm up: the connections, the pools, the log writer's buffers.
        subprocess.run(["taskset", "-c", "0", "wrk", "-t1", f"-c{CONNS}", "-d1s", url],
                       check=True, capture_output=True)
        before = cpu_ns(server.pid)
        out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", f"-c{CONNS}", f"-d{duration}s", url],
                             check=True, capture_output=True, text=True).stdout
        used = cpu_ns(server.pid) - before
        m = re.search(r"(\d+) requests in ([\d.]+)s", out)
        if not m or "Non-2xx" in out or "Socket errors" in out:
            raise RuntimeError(f"wrk: {out}")
        n, secs = int(m[1]), float(m[2])
        return used / n, n / secs
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/anygate"))
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    global CONNS
    CONNS = args.connections
    tmp = tempfile.mkdtemp(prefix="anygate-cpu-")
    collector = Collector()
    log = f'plugins: [{{ kind: log, args: {{ format: json, to: "{tmp}/access.log" }} }}]\n'
    metrics = 'admin: { listen: "127.0.0.1:ADMIN" }\n'
    tracing = f'tracing: {{ sample: 0.01, otlp: {{ endpoint: "http://127.0.0.1:{collector.port}/v1/traces" }} }}\n'
    modes = {"bare": "", "log": log, "metrics": metrics, "tracing": tracing,
             "all": log + metrics + tracing}
    per = {m: [] for m in modes}
    rps = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode, extra in modes.items():
            port = free_port()
            cfg = os.path.join(tmp, f"{mode}.yml")
            with open(cfg, "w") as f:
                f.write(f'server: {{ listen: "127.0.0.1:{port}", workers: 1 }}\n'
                        'routes: { "GET /fixed": "OK" }\n'
                        + extra.replace("ADMIN", str(free_port())))
            ns, rate = run(args.binary, cfg, port, args.duration)
            per[mode].append(ns)
            rps[mode].append(rate)
            print(f"round {r + 1} {mode}: {ns / 1000:.2f} µs CPU/request, {rate:,.0f} requests/s",
                  file=sys.stderr)
    print("| mode | CPU per request (median, µs) | requests/s (median) | observed/bare, median of rounds "
          "| min–max of rounds |")
    print("|---|---|---|---|---|")
    for mode in modes:
        ratios = [o / b for o, b in zip(per[mode], per["bare"])]
        print(f"| {mode} | {statistics.median(per[mode]) / 1000:.2f} | {statistics.median(rps[mode]):,.0f} "
              f"| {statistics.median(ratios):.3f}× | {min(ratios):.3f}–{max(ratios):.3f} |")
    print(f"\n({args.rounds} rounds of {args.duration} s; {collector.posts} OTLP export requests received.)")


if __name__ == "__main__":
    main()
