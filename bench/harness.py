#!/usr/bin/env python3
"""AnyGate against nginx, HAProxy and a minimal C epoll server, side by side (SPEC §11).

Every server runs with one worker pinned to CPU 0; wrk runs pinned to CPU 1. Each scenario
runs for each server in interleaved order (A B C A B C ...), `--rounds` times, and the report
gives per server the run with the median requests/s: requests/s, p50/p99, MB/s, non-2xx
responses, the server's peak RSS and its CPU time per request (user + system time of all its
processes over the run / requests served). A scenario is reported only when every server
answers a sample request correctly before timing; a server that cannot serve a scenario yet
(AnyGate answers 501 for actions it does not have) leaves that scenario out, with the reason.

    bench/run [--quick] [--rounds N] [--seconds S] [--scenario NAME]... [--self-test]
              [--baseline BIN] [--servers anygate,baseline,...]

`--baseline BIN` adds a server "baseline": the AnyGate binary BIN (built from an earlier
commit) on the same configuration, interleaved with this tree's binary in every scenario
AnyGate runs, so that a change's cost is read from one invocation. `--servers` keeps only the
named servers (for example `anygate,baseline` for a change's own comparison).

See docs/BENCH.md. Loopback only; every process started is stopped by PID at the end.
"""
import argparse
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# name -> (path, method, expected body (bytes, or a file name under the static dir), servers)
SCENARIOS = {
    "fixed": dict(path="/fixed", body=b"", servers=["anygate", "nginx", "haproxy", "reference"]),
    "fixed-pipelined": dict(path="/fixed", body=b"", pipelined=True,
                            servers=["anygate", "nginx", "haproxy", "reference"]),
    "static-1k": dict(path="/static/1k.bin", body="1k.bin", servers=["anygate", "nginx"]),
    "static-1m": dict(path="/static/1m.bin", body="1m.bin", servers=["anygate", "nginx"]),
    "proxy": dict(path="/proxy", body=b"", backend=True, servers=["anygate", "nginx", "haproxy"]),
    # 100 MiB per request: wrk's default 2 s timeout would count a slow one as an error.
    "download-100m": dict(path="/proxy-body", body="100m.bin", backend=True, connections=4,
                          timeout=30, servers=["anygate", "nginx", "haproxy"]),
    "upload-100m": dict(path="/proxy-body", body="100m.bin", backend=True, connections=4,
                        upload=True, timeout=30, servers=["anygate", "nginx", "haproxy"]),
    # 9 000, not 10 000: this machine's hard descriptor limit is 20 000 per process, and
    # HAProxy reserves two descriptors per connection (docs/BENCH.md).
    "idle-10k": dict(path="/fixed", body=b"", idle=9_000, servers=["anygate", "nginx", "haproxy"]),
    # TLS 1.3 with an ECDSA P-256 certificate: keep-alive (the record layer's cost), and one
    # request per connection (wrk reconnects after `Connection: close` without resuming, so
    # each request is a full handshake: the CPU per request is the CPU per handshake).
    "tls-keepalive": dict(path="/fixed", body=b"", tls=True, servers=["anygate", "nginx", "haproxy"]),
    "tls-handshake": dict(path="/fixed", body=b"", tls=True, close=True, connections=16,
                          servers=["anygate", "nginx", "haproxy"]),
    # The fixed route behind rate_limit + headers + ip (limits never reached), against
    # `fixed` in the same invocation: the filter chain's own cost. AnyGate only.
    "fixed-filters": dict(path="/filtered/", body=b"", servers=["anygate"]),
    # HTTP/2 (h2load, 64 connections x 10 streams): prior knowledge on a plain port, and
    # ALPN h2 over TLS 1.3. h2load reports no latency percentiles (p50/p99 read 0).
    "h2c": dict(path="/fixed", body=b"", h2=True, servers=["anygate", "nginx", "haproxy"]),
    # gRPC unary through the proxy, h2c both sides (nginx `grpc_pass`, HAProxy `proto h2`):
    # a 5-byte gRPC message up, the backend's fixed answer and `grpc-status` trailers down.
    "grpc": dict(path="/t.T/Unary", body=b"ok", h2=True, grpc=True, backend=True,
                 servers=["anygate", "nginx", "haproxy"]),
    "h2-tls": dict(path="/fixed", body=b"", h2=True, tls=True, servers=["anygate", "nginx", "haproxy"]),
}


# ---------------------------------------------------------------------------------------
# Parsing wrk's output.

def parse_wrk(out):
    """The figures of one wrk run (raises ValueError on output it does not understand)."""
    def num(pattern):
        m = re.search(pattern, out)
        if not m:
            raise ValueError(f"wrk output lacks {pattern!r}")
        return m

    def micros(value, unit):
        return float(value) * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]

    reqs = int(num(r"(\d+) requests in")[1])
    rps = float(num(r"Requests/sec:\s+([\d.]+)")[1])
    mb = num(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)")
    mbps = float(mb[1]) * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[mb[2]]
    p50 = num(r"50%\s+([\d.]+)(us|ms|s)")
    p99 = num(r"99%\s+([\d.]+)(us|ms|s)")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx[1]) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    return dict(requests=reqs, rps=rps, mbps=mbps, p50=micros(*p50.groups()),
                p99=micros(*p99.groups()), errors=errors)


# ---------------------------------------------------------------------------------------
# Processes.

def render(template, **values):
    text = open(os.path.join(BENCH, "peers", template)).read()
    return string.Template(text).substitute(**values)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ready(port, proc, limit=10.0):
    """Until the port accepts a connection (bounded; fails fast if the process died)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            # Bounded polling of a connect, not a fixed sleep: ready as soon as it listens.
            time.sleep(0.01)
    raise RuntimeError(f"nothing listens on {port}")


def tree(pid):
    pids = [pid]
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    for child in out.split():
        pids += tree(int(child))
    return pids


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def rss_kib(pids, field="VmRSS"):
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


_ENV = {}


def anygate_env(binary, cfg):
    """The environment to run `binary serve -c cfg` in: as root, with the override that lets
    it run as root (`server.allow_root`), when the binary knows the key (a baseline from
    before it does not, and did not refuse root either)."""
    if os.geteuid() != 0:
        return None
    if binary not in _ENV:
        env = dict(os.environ, ANYGATE__SERVER__ALLOW_ROOT="true")
        ok = subprocess.run([binary, "check", "-c", cfg], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).returncode == 0
        _ENV[binary] = env if ok else None
    return _ENV[binary]


class Server:
    def __init__(self, name, argv, port, cpu="0", env=None):
        self.name, self.port = name, port
        self.proc = subprocess.Popen(["taskset", "-c", cpu] + argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_ready(port, self.proc)

    def pids(self):
        return tree(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------------------
# Checks and measurements.

def sample(port, path, upload=None, tls=False):
    """One request; returns (status, body)."""
    s = socket.create_connection(("127.0.0.1", port), 10)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname="localhost")
    body = b""
    head = f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
    if upload:
        head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nContent-Length: {len(upload)}\r\n"
        body = upload
    s.sendall(head.encode() + b"\r\n" + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    want = int(length[1]) if length else None
    while want is None or len(rest) < want:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        rest += chunk
    s.close()
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0
    return status, rest


def run_wrk(port, sc, seconds, warmup=False):
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{sc.get('connections', 64)}",
            f"-d{1 if warmup else seconds}s", "--latency"]
    if sc.get("timeout"):
        argv += ["--timeout", f"{sc['timeout']}s"]
    if sc.get("pipelined"):
        argv += ["-s", os.path.join(BENCH, "pipeline.lua")]
    if sc.get("upload"):
        argv += ["-s", os.path.join(BENCH, "upload.lua")]
    if sc.get("close"):
        argv += ["-H", "Connection: close"]
    scheme = "https" if sc.get("tls") else "http"
    argv.append(f"{scheme}://127.0.0.1:{port}{sc['path']}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_wrk(out)


def idle_connections(port, pids, n):
    """Opens n keep-alive connections (one request each) and returns RSS bytes per
    connection."""
    before = rss_kib(pids)
    conns = []
    req = b"GET /fixed HTTP/1.1\r\nHost: bench\r\n\r\n"
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), 10)
            s.sendall(req)
            conns.append(s)
        for s in conns:
            if not s.recv(4096).startswith(b"HTTP/1.1 200"):
                raise RuntimeError("an idle-10k connection got no 200")
        after = rss_kib(pids)
    finally:
        for s in conns:
            s.close()
    return (after - before) * 1024 / n


# ---------------------------------------------------------------------------------------

def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    def version(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except OSError:
            return "missing"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    return dict(cpu=cpu, cores=os.cpu_count(), kernel=os.uname().release, commit=commit,
                nginx=version(["nginx", "-v"]), haproxy=version(["haproxy", "-v"]),
                wrk=version(["wrk", "-v"]))


# A gRPC message (uncompressed, 5 bytes: "hello") for the `grpc` scenario.
GRPC_MESSAGE = b"\x00\x00\x00\x00\x05hello"
GRPC_HEADERS = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
# The backend's h2c port (the `grpc` scenario's upstream), set by main().
BACKEND_H2C = {"port": 0, "data": ""}


def run_h2load(port, sc, seconds, warmup=False):
    """One h2load run (64 connections, 10 streams each), as run_wrk's figures."""
    scheme = "https" if sc.get("tls") else "http"
    grpc = [*GRPC_HEADERS, "-d", BACKEND_H2C["data"]] if sc.get("grpc") else []
    argv = ["taskset", "-c", "1", "h2load", "-t1", "-c64", "-m10", "-D", str(1 if warmup else seconds), *grpc,
            f"{scheme}://127.0.0.1:{port}{sc['path']}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_h2load(out)


def parse_h2load(out):
    """The figures of one h2load run (raises ValueError on output it does not understand)."""
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s, ([\d.]+)(B|KB|MB|GB)/s", out)
    r = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not (m and r and codes):
        raise ValueError(f"h2load output not understood: {out[-400:]!r}")
    mbps = float(m[2]) * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[m[3]]
    errors = int(r[3]) + int(r[4]) + int(r[5]) + int(codes[3]) + int(codes[4])
    return dict(requests=int(r[2]), rps=float(m[1]), mbps=mbps, p50=0.0, p99=0.0, errors=errors)


def sample_h2(port, path, tls=False, grpc=False):
    """One HTTP/2 request with curl (prior knowledge, or ALPN over TLS); (status, body)."""
    scheme = "https" if tls else "http"
    mode = ["--http2", "-k"] if tls else ["--http2-prior-knowledge"]
    if grpc:
        mode += [*GRPC_HEADERS, "--data-binary", "@" + BACKEND_H2C["data"]]
    r = subprocess.run(["curl", "-sS", "--max-time", "10", *mode, "-o", "-", "-w", "\n%{http_version} %{http_code}",
                        f"{scheme}://127.0.0.1:{port}{path}"], capture_output=True)
    body, _, tail = r.stdout.rpartition(b"\n")
    version, _, code = tail.decode().partition(" ")
    return (int(code) if version == "2" and code.isdigit() else 0), body


def ensure_tools():
    missing = [t for t in ["nginx", "haproxy", "wrk", "taskset", "cc", "openssl", "h2load", "curl"]
               if not shutil.which(t)]
    if missing:
        print(f"installing {' '.join(missing)}", file=sys.stderr)
        pkgs = {"taskset": "util-linux", "cc": "gcc", "h2load": "nghttp2-client"}
        subprocess.run(["apt-get", "install", "-y"] + [pkgs.get(m, m) for m in missing], check=True,
                       stdout=subprocess.DEVNULL)


def make_files(tmp):
    # nginx's workers run as an unprivileged user: the tree must be world-readable
    # (mkdtemp makes the top directory 0700).
    os.chmod(tmp, 0o755)
    static = os.path.join(tmp, "static")
    os.makedirs(static, mode=0o755)
    for name, size in [("1k.bin", 1024), ("1m.bin", 1 << 20), ("100m.bin", 100 << 20)]:
        with open(os.path.join(static, name), "wb") as f:
            block = bytes(range(256)) * 4096
            left = size
            while left:
                f.write(block[:min(left, len(block))])
                left -= min(left, len(block))
    return static


def make_cert(tmp):
    """An ECDSA P-256 certificate for localhost (tls.pem, tls.key, and both in
    tls-combined.pem for HAProxy)."""
    pem, key = os.path.join(tmp, "tls.pem"), os.path.join(tmp, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", pem, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o644)  # nginx's workers read it as an unprivileged user
    with open(os.path.join(tmp, "tls-combined.pem"), "w") as f:
        f.write(open(pem).read() + open(key).read())


# Every load generator here is one address (loopback): the per-address connection cap
# (default 256) is lifted, as nginx and HAProxy have none by default.
ANYGATE_LIMITS = "  limits: {max_connections_per_ip: 0}\n"

# The group of the `fixed-filters` scenario.
ANYGATE_FILTERS = """groups:
  - prefix: /filtered
    plugins:
      - { kind: rate_limit, args: { rate: 1000000000, burst: 1000000000 } }
      - { kind: headers, args: { response: { set: { X-Frame-Options: DENY } } } }
      - { kind: ip, args: { allow: ["127.0.0.0/8"] } }
    routes: { "GET /": "OK" }
"""


def start(name, port, tmp, static, backend_port, reference, baseline=None, tls=False, h2=False):
    values = dict(port=port, tmp=tmp, static_dir=static, backend_port=backend_port,
                  server_limits=ANYGATE_LIMITS, plain_port=free_port(), filters=ANYGATE_FILTERS,
                  h2c="  h2c: true\n", grpc_port=BACKEND_H2C["port"],
                  grpc_route=f'  "/t.T/": "h2c://127.0.0.1:{BACKEND_H2C["port"]}/t.T/"\n')
    # nginx 1.22 and HAProxy 2.6 speak h2c with prior knowledge only on a port of its own.
    suffix = "-tls" if tls else ("-h2c" if h2 and name in ("nginx", "haproxy") else "")
    if name in ("anygate", "baseline"):
        cfg = os.path.join(tmp, f"anygate-{port}.yml")
        binary = baseline if name == "baseline" else os.path.join(ROOT, "target/release/anygate")
        template = f"anygate{suffix}.yml.tmpl"
        open(cfg, "w").write(render(template, **values))
        # A binary from before the cap (or the filters) does not know the key or the kinds:
        # without them, one at a time.
        for fallback in (dict(filters=""), dict(filters="", grpc_route=""), dict(filters="", grpc_route="", h2c=""),
                         dict(filters="", grpc_route="", h2c="", server_limits="")):
            if subprocess.run([binary, "check", "-c", cfg], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                break
            open(cfg, "w").write(render(template, **dict(values, **fallback)))
        return Server(name, [binary, "serve", "-c", cfg], port, env=anygate_env(binary, cfg))
    if name == "nginx":
        cfg = os.path.join(tmp, f"nginx-{port}.conf")
        open(cfg, "w").write(render(f"nginx{suffix}.conf.tmpl", **values))
        return Server(name, ["nginx", "-c", cfg, "-p", tmp], port)
    if name == "haproxy":
        cfg = os.path.join(tmp, f"haproxy-{port}.cfg")
        open(cfg, "w").write(render(f"haproxy{suffix}.cfg.tmpl", **values))
        return Server(name, ["haproxy", "-db", "-f", cfg], port)
    return Server(name, [reference, "127.0.0.1", str(port)], port)


def self_test():
    """Renders every template and parses the sample wrk outputs (run by `cargo test`)."""
    values = dict(port=1, tmp="/tmp/x", static_dir="/tmp/s", backend_port=2,
                  server_limits=ANYGATE_LIMITS, plain_port=3, filters=ANYGATE_FILTERS, h2c="  h2c: true\n",
                  grpc_port=4, grpc_route='  "/t.T/": "h2c://127.0.0.1:4/t.T/"\n')
    for t in sorted(os.listdir(os.path.join(BENCH, "peers"))):
        text = render(t, **values)
        assert "$" not in text.replace("$uri", "").replace("$request_method", ""), f"{t} has an unreplaced placeholder"
    ka = parse_wrk(open(os.path.join(BENCH, "testdata", "wrk-keepalive.txt")).read())
    assert ka == dict(requests=1262354, rps=126197.43, mbps=14.2, p50=443.0, p99=920.0, errors=0), ka
    h2 = parse_h2load(open(os.path.join(BENCH, "testdata", "h2load.txt")).read())
    assert h2 == dict(requests=221950, rps=110975.0, mbps=4.28, p50=0.0, p99=0.0, errors=0), h2
    bad = parse_wrk(open(os.path.join(BENCH, "testdata", "wrk-errors.txt")).read())
    assert bad["errors"] == 37 + 3 and bad["p99"] == 1_210_000.0, bad
    class A:
        baseline, servers = "/bin/true", None
    assert servers_of(SCENARIOS["proxy"], A) == ["anygate", "baseline", "nginx", "haproxy"]
    A.servers = "anygate,baseline"
    assert servers_of(SCENARIOS["fixed"], A) == ["anygate", "baseline"]
    print("bench self-test: ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round of 3 s (a smoke run)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--baseline", help="an earlier anygate binary, run as the server `baseline`")
    ap.add_argument("--servers", help="comma-separated servers to keep (default: all)")
    args = ap.parse_args()
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
        if not os.access(args.baseline, os.X_OK):
            ap.error(f"--baseline {args.baseline}: not an executable")
    if args.self_test:
        return self_test()
    if args.quick:
        args.rounds, args.seconds = 1, 3
    # 10 000 idle connections on both ends, and HAProxy's maxconn, need descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 1 << 20)), hard))
    ensure_tools()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "anygate"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="anygate-bench-")
    started = []
    try:
        reference = os.path.join(tmp, "reference")
        subprocess.run(["cc", "-O2", "-o", reference, os.path.join(BENCH, "reference/server.c")], check=True)
        static = make_files(tmp)
        make_cert(tmp)
        backend_port = free_port()
        BACKEND_H2C["port"] = free_port()
        BACKEND_H2C["data"] = os.path.join(tmp, "grpc-message.bin")
        open(BACKEND_H2C["data"], "wb").write(GRPC_MESSAGE)
        open(os.path.join(tmp, "backend.conf"), "w").write(
            render("backend.conf.tmpl", tmp=tmp, backend_port=backend_port, static_dir=static,
                   grpc_port=BACKEND_H2C["port"]))
        backend = Server("backend", ["nginx", "-c", os.path.join(tmp, "backend.conf"), "-p", tmp],
                         backend_port, cpu="1")
        started.append(backend)
        report = run_all(args, tmp, static, backend_port, reference)
    finally:
        for s in started:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(report)


def servers_of(sc, args):
    """The servers of a scenario: its own, plus `baseline` after `anygate` when asked for,
    filtered by `--servers`."""
    names = list(sc["servers"])
    if args.baseline and "anygate" in names:
        names.insert(names.index("anygate") + 1, "baseline")
    if args.servers:
        keep = args.servers.split(",")
        names = [n for n in names if n in keep]
    return names


def run_all(args, tmp, static, backend_port, reference):
    info = machine()
    scenarios = args.scenario or list(SCENARIOS)
    results, skipped = {}, {}
    upload = open(os.path.join(static, "100m.bin"), "rb").read(1 << 16)
    for name in scenarios:
        sc = dict(SCENARIOS[name], servers=servers_of(SCENARIOS[name], args))
        SCENARIOS[name] = sc
        expected = sc["body"] if isinstance(sc["body"], bytes) else open(os.path.join(static, sc["body"]), "rb").read()
        for rnd in range(args.rounds):
            for server in sc["servers"]:
                if name in skipped:
                    break
                port = free_port()
                srv = start(server, port, tmp, static, backend_port, reference, args.baseline,
                            tls=sc.get("tls", False), h2=sc.get("h2", False))
                load = run_h2load if sc.get("h2") else run_wrk
                try:
                    if sc.get("h2"):
                        status, body = sample_h2(port, sc["path"], tls=sc.get("tls", False),
                                                 grpc=sc.get("grpc", False))
                    else:
                        status, body = sample(port, sc["path"], upload if sc.get("upload") else None,
                                              tls=sc.get("tls", False))
                    if status != 200 or (not sc.get("upload") and body != expected):
                        why = "the action is not in this version" if status == 501 else "a wrong status or body"
                        skipped[name] = f"{server} answered {status} to the sample request ({why})"
                        break
                    if sc.get("idle"):
                        per_conn = idle_connections(port, srv.pids(), sc["idle"])
                        results.setdefault((name, server), []).append(dict(rps=0, per_conn=per_conn))
                        print(f"{name} round {rnd + 1} {server}: {per_conn:,.0f} B per idle connection",
                              file=sys.stderr)
                        continue
                    load(port, sc, args.seconds, warmup=True)
                    before = cpu_ticks(srv.pids())
                    r = load(port, sc, args.seconds)
                    r["cpu_us"] = (cpu_ticks(srv.pids()) - before) / CLK * 1e6 / max(r["requests"], 1)
                    r["peak_rss_mib"] = rss_kib(srv.pids(), "VmHWM") / 1024
                    if r["errors"]:
                        skipped[name] = f"{server} answered {r['errors']} errors under load"
                        break
                    results.setdefault((name, server), []).append(r)
                    print(f"{name} round {rnd + 1} {server}: {r['rps']:,.0f} req/s, "
                          f"{r['cpu_us']:.2f} us CPU/req", file=sys.stderr)
                finally:
                    srv.stop()
    return write_report(args, info, scenarios, results, skipped)


def median(runs, key="rps"):
    runs = sorted(runs, key=lambda r: r[key])
    return runs[len(runs) // 2]


def write_report(args, info, scenarios, results, skipped):
    lines = [f"# AnyGate benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {info['commit']}", "",
             f"- machine: {info['cpu']}, {info['cores']} cores, Linux {info['kernel']}",
             f"- peers: {info['nginx']}; {info['haproxy']}; {info['wrk']}",
             f"- command: `bench/run --rounds {args.rounds} --seconds {args.seconds}"
             + "".join(f" --scenario {s}" for s in (args.scenario or []))
             + (f" --baseline {args.baseline}" if args.baseline else "")
             + (f" --servers {args.servers}" if args.servers else "") + "`",
             "- method: one worker per server pinned to CPU 0, `wrk -t1` pinned to CPU 1, servers "
             "interleaved per round; each row is the run with the median requests/s. CPU per request "
             "is the user + system time of the server's processes over the run divided by the "
             "requests served. wrk does not time pipelined requests (their latency reads 0).", ""]
    for name in scenarios:
        sc = SCENARIOS[name]
        lines += [f"## {name}", ""]
        if name in skipped:
            lines += [f"Not reported: {skipped[name]}.", ""]
            continue
        if sc.get("idle"):
            lines += [f"{sc['idle']:,} keep-alive connections, each after one request; the server's RSS "
                      "growth divided by their number.", "",
                      "| server | RSS per idle keep-alive connection |", "|---|---|"]
            for server in sc["servers"]:
                per = sorted(r["per_conn"] for r in results[(name, server)])[len(results[(name, server)]) // 2]
                lines.append(f"| {server} | {per / 1024:.1f} KiB |")
            lines.append("")
            continue
        lines += ["| server | requests/s | p50 (µs) | p99 (µs) | MB/s | errors | peak RSS (MiB) | CPU/request (µs) |",
                  "|---|---|---|---|---|---|---|---|"]
        med = {s: median(results[(name, s)]) for s in sc["servers"]}
        for s, r in med.items():
            lines.append(f"| {s} | {r['rps']:,.0f} | {r['p50']:.0f} | {r['p99']:.0f} | {r['mbps']:.1f} | "
                         f"{r['errors']} | {r['peak_rss_mib']:.1f} | {r['cpu_us']:.2f} |")
        if "anygate" not in med:
            continue
        a = med["anygate"]
        ratios = []
        for peer in [s for s in sc["servers"] if s != "anygate"]:
            p = med[peer]
            ratios.append(f"vs {peer}: requests/s {a['rps'] / p['rps']:.2f}×, CPU/request "
                          f"{a['cpu_us'] / p['cpu_us']:.2f}×" + (f", p99 {a['p99'] / p['p99']:.2f}×" if p["p99"] and a["p99"] else ""))
        lines += ["", "AnyGate " + "; ".join(ratios) + ".", ""]
    out_dir = os.path.join(BENCH, "reports")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{time.strftime('%Y%m%d-%H%M', time.gmtime())}-{info['commit']}.md")
    text = "\n".join(lines)
    open(path, "w").write(text)
    print(f"report written to {path}", file=sys.stderr)
    return text


if __name__ == "__main__":
    main()
