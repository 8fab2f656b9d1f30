"""The WSGI benchmark of issue 10: one Flask app on spindle-wsgi and its peers, under wrk.

Run by bench/wsgi.sh, which installs the tools; this file starts each server in turn on
127.0.0.1 port 0, finds its port, checks the two routes answer, warms it up, runs the
two workloads with wrk, reads the server's CPU time from /proc around each run, stops
the server, and writes the results as markdown.

The app is tests/wsgi/apps/flask_app.py:app (plain, not under the validator):
  hello   GET /              wrk -t1 -c50  -d{D}s   Flask "Hello, World!\\n"
  sleep   GET /sleep?ms=20   wrk -t1 -c200 -d{D}s   time.sleep(0.02) in the view
Servers (4 threads each, as issue 10 measured its peers):
  spindle   spindle-wsgi with a config that sets only the listener (and turns the
            per-request access line off, as no peer logs access here): the default
            pool, no tuning
  gunicorn  gthread, 1 worker x 4 threads
  waitress  4 threads, connection_limit 1000 (its default of 100 would refuse c200)
  granian   --interface wsgi, 1 worker, 4 blocking threads
  eventlet  eventlet.wsgi.server on a monkey-patched process (bench/wsgi_eventlet.py)
CPU: utime+stime of the server's whole process tree (workers included) plus the
cutime+cstime of children it reaped, from /proc/PID/stat, before and after each run.
With --rounds N the servers alternate (A B C A B C ...) and each figure is the median of
its N runs. Every run is bounded (wrk -d plus `timeout`); every server is stopped by the
PID this script started (SIGTERM, then SIGKILL of that tree after 10 s) before the next
starts.
"""

import argparse
import datetime
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(ROOT, "tests", "wsgi", "apps")
BENCH = os.path.join(ROOT, "bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")
THREADS = 4

SPINDLE_CONFIG = """\
# bench/wsgi_bench.py: the listener only; every other setting is spindle's default.
[log]
# The per-request access lines off, as every peer runs without an access log.
level = "info,spindle::access=off"
[[listener]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
[listener.apps]
# spindle-wsgi mounts the app at "/"; only the health check beside it.
"/healthz" = "healthz"
"""

WORKLOADS = [
    ("hello", "/", 50),
    ("sleep", "/sleep?ms=20", 200),
]


def proc_tree(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [pid], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cpu_ticks(pid):
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17.
        total += sum(int(x) for x in fields[11:15])
    return total


def listening_port(pid):
    """The TCP port a process of `pid`'s tree listens on (127.0.0.1), or None."""
    inodes = set()
    for p in proc_tree(pid):
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    link = os.readlink(f"/proc/{p}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and inode in inodes:
                return int(local.split(":")[1], 16)
    return None


class Server:
    def __init__(self, name, cmd, version, env=None, ready_file=None):
        self.name, self.cmd, self.version = name, cmd, version
        self.env = env
        self.ready_file = ready_file
        self.proc = None
        self.port = None

    def start(self, workdir):
        self.log_path = os.path.join(workdir, f"{self.name}.log")
        env = dict(os.environ, PYTHONPATH=APPS, **(self.env or {}))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=APPS, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.log()[-2000:]}")
            self.port = self.find_port()
            if self.port:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen within 60 s: {self.log()[-2000:]}")

    def find_port(self):
        if self.ready_file:
            try:
                with open(self.ready_file) as f:
                    m = re.search(r"^listener http \S*:(\d+)\s*$", f.read(), re.M)
                return int(m.group(1)) if m else None
            except FileNotFoundError:
                return None
        return listening_port(self.proc.pid)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            for p in proc_tree(self.proc.pid)[1:]:  # still children: no PID reuse possible
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait(timeout=10)


def version_of(venv_python, dist):
    try:
        return subprocess.run([venv_python, "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
                              capture_output=True, text=True, timeout=30).stdout.strip() or "?"
    except subprocess.SubprocessError:
        return "?"


def command_version(cmd):
    try:
        out = subprocess.run([cmd, "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.strip() or os.path.basename(cmd)
    except (OSError, subprocess.SubprocessError):
        return os.path.basename(cmd)


def servers(venv, workdir, spindle):
    py = os.path.join(venv, "bin", "python")
    bin_ = os.path.join(venv, "bin")
    out = []
    if spindle:
        cfg = os.path.join(workdir, "spindle.toml")
        with open(cfg, "w") as f:
            f.write(SPINDLE_CONFIG)
        ready = os.path.join(workdir, "spindle.ready")
        out.append(Server("spindle", [spindle, "flask_app:app", "--config", cfg, "--ready-file", ready],
                          f"{command_version(spindle)}, default pool",
                          ready_file=ready))
    out.append(Server("gunicorn", [os.path.join(bin_, "gunicorn"), "--worker-class", "gthread",
                                   "--workers", "1", "--threads", str(THREADS), "--bind", "127.0.0.1:0",
                                   "--no-control-socket", "flask_app:app"],
                      f"gunicorn {version_of(py, 'gunicorn')} gthread 1x{THREADS}"))
    out.append(Server("waitress", [os.path.join(bin_, "waitress-serve"), "--listen=127.0.0.1:0",
                                   f"--threads={THREADS}", "--connection-limit=1000", "flask_app:app"],
                      f"waitress {version_of(py, 'waitress')}, {THREADS} threads"))
    out.append(Server("granian", [os.path.join(bin_, "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
                                  "--port", "0", "--workers", "1", "--blocking-threads", str(THREADS),
                                  "--no-access-log", "flask_app:app"],
                      f"granian {version_of(py, 'granian')} WSGI, 1 worker, {THREADS} blocking threads"))
    out.append(Server("eventlet", [py, os.path.join(BENCH, "wsgi_eventlet.py")],
                      f"eventlet {version_of(py, 'eventlet')} wsgi.server (monkey-patched)"))
    return out


def check(port):
    for path, want in (("/", b"Hello, World!\n"), ("/sleep?ms=20", b"slept 20 ms\n")):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            body = r.read()
        if body != want:
            raise RuntimeError(f"GET {path} answered {body!r}")


def parse_wrk(text):
    out = {"rps": None, "requests": None, "p99_ms": None, "errors": 0, "non2xx": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if m:
        out["p99_ms"] = float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] = sum(int(x) for x in m.groups())
        out["error_detail"] = "connect {}, read {}, write {}, timeout {}".format(*m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    return out


def wrk(port, path, conns, duration):
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "5s", "--latency",
           f"http://127.0.0.1:{port}{path}"]
    r = subprocess.run(["timeout", str(duration + 30)] + cmd, capture_output=True, text=True)
    return cmd, r.stdout + r.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--venv", required=True)
    ap.add_argument("--spindle", help="the spindle-wsgi command (omit: spindle not measured)")
    ap.add_argument("--spindle-note", default="", help="why spindle is missing, for the results")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="rounds, servers alternating; medians")
    ap.add_argument("--only", nargs="*", help="server names to run")
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", default="bench/wsgi.sh")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="wsgi-bench-")
    args.load_before = loadavg()
    raw, cmds = [], {}
    runs = {}  # server name -> [result of each round]
    todo = [srv for srv in servers(args.venv, workdir, args.spindle)
            if not args.only or srv.name in args.only]
    # Rounds alternate the servers (A B C A B C ...), so a burst of other work on the
    # machine lands on one round of each rather than on all of one server's.
    for rnd in range(1, args.rounds + 1):
        for srv in todo:
            runs.setdefault(srv.name, []).append(run_one(srv, rnd, args, workdir, raw))
            cmds[srv.name] = shlex.join(srv.cmd).replace(ROOT + "/", "").replace(workdir, "$WORK")
    args.load_after = loadavg()
    rows = [combine(srv, runs[srv.name]) for srv in todo]
    write(args, rows, raw, [f"{k}: {v}" for k, v in cmds.items()])


def run_one(srv, rnd, args, workdir, raw):
    """One round of one server: start, check, warm up, both workloads, stop."""
    print(f"[wsgi-bench] round {rnd}: {srv.name}: starting", file=sys.stderr, flush=True)
    try:
        srv.start(workdir)
        check(srv.port)
        wrk(srv.port, "/", 50, args.warmup)  # warm-up, not recorded
        result = {}
        for name, path, conns in WORKLOADS:
            c0, t0 = cpu_ticks(srv.proc.pid), time.monotonic()
            cmd, text = wrk(srv.port, path, conns, args.duration)
            c1 = cpu_ticks(srv.proc.pid)
            w = parse_wrk(text)
            w["cpu_s"] = (c1 - c0) / CLK_TCK
            w["per_cpu_s"] = (w["requests"] / w["cpu_s"]) if w["requests"] and w["cpu_s"] else None
            result[name] = w
            raw.append(f"### {srv.name} {name}, round {rnd}\n\n```\n$ {shlex.join(cmd)}\n{text}```\n"
                       f"server CPU {w['cpu_s']:.2f} s over {time.monotonic() - t0:.1f} s\n")
            print(f"[wsgi-bench] {srv.name} {name}: {w['rps']} req/s, cpu {w['cpu_s']:.2f} s, "
                  f"errors {w['errors']}, non-2xx {w['non2xx']}", file=sys.stderr, flush=True)
        return result
    except Exception as e:  # one server failing must not lose the others' figures
        print(f"[wsgi-bench] {srv.name} failed: {e}", file=sys.stderr, flush=True)
        return {"failed": str(e)[:300]}
    finally:
        srv.stop()


def median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def combine(srv, results):
    """One row: the median of each figure over the rounds; errors added up."""
    ok = [r for r in results if "failed" not in r]
    row = {"server": srv.name, "version": srv.version}
    if not ok:
        row["failed"] = results[-1]["failed"]
        return row
    for name, _, _ in WORKLOADS:
        ws = [r[name] for r in ok]
        row[name] = {k: median(w[k] for w in ws) for k in ("rps", "per_cpu_s", "p99_ms")}
        row[name]["errors"] = sum(w["errors"] for w in ws)
        row[name]["non2xx"] = sum(w["non2xx"] for w in ws)
    return row


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def cell(w):
    return (f"{fmt(w['rps'], ',.0f')} | {fmt(w['per_cpu_s'], ',.0f')} | "
            f"{w['errors']} / {w['non2xx']} | {fmt(w['p99_ms'], '.1f')}")


def table(rows):
    lines = ["| server | hello c50 req/s | req per CPU-s | errors / non-2xx | p99 ms "
             "| sleep(20 ms) c200 req/s | req per CPU-s | errors / non-2xx | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['version']} | failed: {r['failed']} |||||||| ")
        else:
            lines.append(f"| {r['version']} | {cell(r['hello'])} | {cell(r['sleep'])} |")
    return "\n".join(lines)


def write(args, rows, raw, cmds):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"model name\s*:\s*(.*)", f.read())
        cpu = m.group(1) if m else cpu
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""# WSGI benchmark: one Flask app on spindle-wsgi and its peers ({now})

Command: `{args.command}` (bench/wsgi.sh, which runs bench/wsgi_bench.py).
{args.rounds} round(s), servers alternating, {args.duration} s per workload after a {args.warmup} s warm-up
of the hello route (more than one round: medians; errors added up); machine: {os.cpu_count()} cores ({cpu}), Linux {platform.release()},
Python {platform.python_version()} ({getattr(sys, "_base_executable", sys.executable)}, every server). wrk runs on the same 2 cores as the server and
competes with it for CPU: absolute figures are low, ratios are what to read. Loopback only.
Load average (1/5/15 min) before the run: {args.load_before}; after: {args.load_after}
(anything above ~1 means other work shared the 2 cores during the run).

- hello: `wrk -t1 -c50 -d{args.duration}s --timeout 5s --latency http://127.0.0.1:PORT/`
  (Flask view returning "Hello, World!\\n")
- sleep: `wrk -t1 -c200 -d{args.duration}s --timeout 5s --latency http://127.0.0.1:PORT/sleep?ms=20`
  (the view blocks in `time.sleep(0.02)`: 4 threads cap this at 200 req/s)
- req per CPU-s: requests wrk completed / (utime+stime of the server's process tree over
  the run, from /proc/PID/stat).
- errors: wrk's socket errors (connect, read, write, timeout); non-2xx: wrk's count.

{table(rows)}

{("spindle-wsgi: " + args.spindle_note) if args.spindle_note else ""}

## Servers as run (cwd tests/wsgi/apps, port 0, found from /proc or the ready file)

""" + "\n".join(f"- `{c}`" for c in cmds) + f"""

spindle's $WORK/spindle.toml (everything not in it is spindle's default):

```toml
{SPINDLE_CONFIG}```

## wrk output

""" + "\n".join(raw)
    with open(args.out, "w") as f:
        f.write(text)
    print(table(rows))
    print(f"[wsgi-bench] wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
