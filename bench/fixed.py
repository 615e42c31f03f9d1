#!/usr/bin/env python3
"""SPEC §11's fixed-response scenario: AnyGate vs nginx (`return 200`) vs the C reference.

One worker each, the server pinned to CPU 0 and wrk to CPU 1, runs interleaved
(A B C A B C ...) within this one invocation. Per run: requests/s and p99 from wrk, and the
server's CPU time per request (utime + stime of its processes over the run, from /proc).
Two scenarios: keep-alive (`wrk -t1 -c64`) and pipelined (16 requests per write).

    python3 bench/fixed.py [--seconds 10] [--rounds 2]

Needs nginx, wrk and a C compiler (apt-get install nginx wrk gcc). Writes
bench/reports/fixed-<UTC time>.md and prints it. Loopback only; every process it starts is
stopped when it ends.
"""
import argparse, os, re, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            # Threads included: /proc/PID/stat sums them for the process.
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except FileNotFoundError:
            pass
    return total


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class Server:
    def __init__(self, name, argv, port, cwd=None):
        self.name, self.port = name, port
        self.proc = subprocess.Popen(["taskset", "-c", "0"] + argv, cwd=cwd,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(port, seconds, pipelined):
    argv = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s", "--latency"]
    if pipelined:
        argv += ["-s", os.path.join(ROOT, "bench", "pipeline.lua")]
    argv.append(f"http://127.0.0.1:{port}/fixed")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1, "ms": 1000, "s": 1_000_000}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return reqs, rps, float(p99.group(1)) * scale, (errors.group(1) if errors else "0") + (
        f" ({socket_errors.group(1)})" if socket_errors else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    for tool in ["nginx", "wrk", "taskset", "cc"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install nginx wrk gcc util-linux")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "anygate"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="anygate-bench-")
    cref = os.path.join(tmp, "c-reference")
    subprocess.run(["cc", "-O2", "-o", cref, os.path.join(ROOT, "bench/c-reference/server.c")], check=True)

    def anygate(port):
        cfg = os.path.join(tmp, "anygate.yml")
        open(cfg, "w").write(f'server: {{listen: "127.0.0.1:{port}", workers: 1}}\n'
                             f'routes:\n  "GET /fixed": "OK"\n')
        return Server("anygate", [os.path.join(ROOT, "target/release/anygate"), "serve", "-c", cfg], port)

    def nginx(port):
        conf = os.path.join(tmp, "nginx.conf")
        open(conf, "w").write(f"""
worker_processes 1; daemon off; master_process on; pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log; events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; server_tokens off;
  server {{ listen 127.0.0.1:{port} reuseport; location /fixed {{ return 200; }} }} }}
""")
        return Server("nginx", ["nginx", "-c", conf, "-p", tmp], port)

    def c_ref(port):
        return Server("C reference", [cref, "127.0.0.1", str(port)], port)

    results = {}
    for rnd in range(args.rounds):
        for pipelined in (False, True):
            for make in (anygate, nginx, c_ref):
                port = free_port()
                srv = make(port)
                try:
                    wrk(port, 1, pipelined)  # warm-up
                    before = cpu_ticks(srv.pids())
                    reqs, rps, p99, errs = wrk(port, args.seconds, pipelined)
                    cpu = (cpu_ticks(srv.pids()) - before) / CLK
                finally:
                    srv.stop()
                key = (srv.name, pipelined)
                results.setdefault(key, []).append((rps, p99, cpu * 1e6 / max(reqs, 1), errs))
                print(f"round {rnd + 1} {'pipelined' if pipelined else 'keep-alive'} {srv.name}: "
                      f"{rps:,.0f} req/s, p99 {p99:.0f} us, {cpu * 1e6 / max(reqs, 1):.2f} us CPU/req",
                      file=sys.stderr)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    lines = [f"# Fixed response, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"`python3 bench/fixed.py --seconds {args.seconds} --rounds {args.rounds}`; one worker "
             "each, server on CPU 0, `wrk -t1 -c64` on CPU 1, runs interleaved. Each row is the run with "
             "the median requests/s of its rounds. wrk does not time pipelined requests: their p99 reads 0.", ""]
    for pipelined in (False, True):
        lines += [f"## {'Pipelined, 16 requests per write' if pipelined else 'Keep-alive'}", "",
                  "| server | requests/s | p99 (µs) | server CPU per request (µs) | vs C reference CPU | non-2xx |",
                  "|---|---|---|---|---|---|"]
        med = {}
        for name in ("anygate", "nginx", "C reference"):
            runs = sorted(results[(name, pipelined)])
            med[name] = runs[len(runs) // 2]
        for name, (rps, p99, cpu, errs) in med.items():
            ratio = cpu / med["C reference"][2]
            lines.append(f"| {name} | {rps:,.0f} | {p99:.0f} | {cpu:.2f} | {ratio:.2f}× | {errs} |")
        a, c, n = med["anygate"], med["C reference"], med["nginx"]
        lines += ["", f"AnyGate: {a[0] / c[0]:.2f}× the C reference's requests/s, "
                      f"{a[0] / n[0]:.2f}× nginx's; CPU per request {a[2] / c[2]:.2f}× the C reference's, "
                      f"{a[2] / n[2]:.2f}× nginx's; p99 {a[1] / n[1]:.2f}× nginx's.", ""]
    report = "\n".join(lines)
    os.makedirs(os.path.join(ROOT, "bench/reports"), exist_ok=True)
    path = os.path.join(ROOT, "bench/reports", f"fixed-{stamp}.md")
    open(path, "w").write(report)
    print(report)
    print(f"written to {path}", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
