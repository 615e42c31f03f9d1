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
                      [--baseline OTHER_BINARY] [--modes bare,all]

With `--baseline`, every round runs the modes for both binaries (which goes first alternates),
so that a change's effect on the observed/bare ratio is read under the same drift.

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
    ap.add_argument("--baseline", help="another binary, run in the same rounds (order alternating)")
    ap.add_argument("--modes", default="bare,log,metrics,tracing,all",
                    help="comma-separated subset of the modes (bare is always run)")
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
    wanted = set(args.modes.split(",")) | {"bare"}
    modes = {m: e for m, e in modes.items() if m in wanted}
    binaries = [("this", args.binary)] + ([("baseline", args.baseline)] if args.baseline else [])
    per = {(b, m): [] for b, _ in binaries for m in modes}
    rps = {(b, m): [] for b, _ in binaries for m in modes}
    for r in range(args.rounds):
        # With a baseline, the binaries take turns going first.
        order = binaries if r % 2 == 0 else binaries[::-1]
        for label, binary in order:
            for mode, extra in modes.items():
                port = free_port()
                cfg = os.path.join(tmp, f"{mode}.yml")
                with open(cfg, "w") as f:
                    f.write(f'server: {{ listen: "127.0.0.1:{port}", workers: 1 }}\n'
                            'routes: { "GET /fixed": "OK" }\n'
                            + extra.replace("ADMIN", str(free_port())))
                ns, rate = run(binary, cfg, port, args.duration)
                per[label, mode].append(ns)
                rps[label, mode].append(rate)
                print(f"round {r + 1} {label} {mode}: {ns / 1000:.2f} µs CPU/request, "
                      f"{rate:,.0f} requests/s", file=sys.stderr)
    print("| binary | mode | CPU per request (median, µs) | requests/s (median) "
          "| observed/bare, median of rounds | min–max of rounds |")
    print("|---|---|---|---|---|---|")
    for label, _ in binaries:
        for mode in modes:
            ratios = [o / b for o, b in zip(per[label, mode], per[label, "bare"])]
            print(f"| {label} | {mode} | {statistics.median(per[label, mode]) / 1000:.2f} "
                  f"| {statistics.median(rps[label, mode]):,.0f} "
                  f"| {statistics.median(ratios):.3f}× | {min(ratios):.3f}–{max(ratios):.3f} |")
    print(f"\n({args.rounds} rounds of {args.duration} s; {collector.posts} OTLP export requests received.)")


if __name__ == "__main__":
    main()
