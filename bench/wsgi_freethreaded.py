"""spindle-wsgi on a GIL CPython against spindle-wsgi on a free-threaded one (run by
bench/wsgi_freethreaded.sh, which builds both).

Each SPEC is NAME=VENV: VENV/bin/spindle-wsgi serves tests/wsgi/apps/flask_app.py:app
with the listener-only config of bench/wsgi_bench.py (the default pool, access lines
off). The workloads: bench/wsgi_bench.py's two (wrk -t1 -c50 on /, wrk -t1 -c200 on
/sleep?ms=20) and a third, wrk -t1 -c8 on /cpu, the parallelism probe: a pure-Python
loop of 50,000 additions and no waiting, mounted beside the app from $WORK/apps. The
server's CPU seconds (utime+stime of its tree, from /proc) are read around each run;
"cores" is that per second of run. The servers alternate per round; figures are
medians. Then, without a server, VENV/bin/python calls the Flask app in-process
(environ from werkzeug's EnvironBuilder, body read, iterable closed) for --inproc
seconds on 1 thread and on 2, so an interpreter's single-thread cost and its scaling
show apart from the server's. Everything is on 127.0.0.1 and bounded: wrk by -d plus
`timeout`, each server stopped by its PID (SIGTERM, SIGKILL of its tree after 10 s),
each in-process run by time and `timeout`.
"""

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsgi_bench as wb  # noqa: E402

INPROC = r"""
import sys, threading, time
from werkzeug.test import EnvironBuilder
import flask_app
app = flask_app.app
base = EnvironBuilder(path="/").get_environ()
def start_response(status, headers, exc_info=None):
    return None
def loop(seconds, counts, i):
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(100):
            it = app(dict(base), start_response)
            b"".join(it)
            close = getattr(it, "close", None)
            if close:
                close()
        n += 100
    counts[i] = n
seconds, threads = float(sys.argv[1]), int(sys.argv[2])
loop(0.5, [0], 0)  # warm-up
counts = [0] * threads
ts = [threading.Thread(target=loop, args=(seconds, counts, i)) for i in range(threads)]
t0 = time.perf_counter()
for t in ts: t.start()
for t in ts: t.join()
gil = getattr(sys, "_is_gil_enabled", lambda: True)()
print(f"{sum(counts) / (time.perf_counter() - t0):.0f} {int(gil)}")
"""


# The parallelism probe: pure-Python work and no waiting, so app threads run at once
# only if the interpreter lets them; wrk with 8 connections leaves the CPUs to the server.
CPU_APP = """\
def application(environ, start_response):
    x = 0
    for i in range(50_000):
        x += i
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d\\n" % x]
"""
CPU_CONNS = 8


def inproc(venv, seconds, threads):
    py = os.path.join(venv, "bin", "python")
    r = subprocess.run(["timeout", str(int(seconds) + 60), py, "-c", INPROC, str(seconds), str(threads)],
                       cwd=wb.APPS, capture_output=True, text=True)
    if r.returncode != 0:
        return f"failed: {r.stderr.strip()[-300:]}"
    rate, gil = r.stdout.split()
    return f"{float(rate):,.0f} calls/s (GIL {'on' if gil == '1' else 'off'})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("spec", nargs="+", help="NAME=VENV (VENV/bin/spindle-wsgi and VENV/bin/python)")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--inproc", type=float, default=5.0, help="seconds per in-process run")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="wsgi-ft-")
    # The servers run from $WORK/apps: tests/wsgi/apps (symlinked) plus the CPU app.
    apps = os.path.join(workdir, "apps")
    os.mkdir(apps)
    for entry in os.listdir(wb.APPS):
        if entry.endswith(".py"):
            os.symlink(os.path.join(wb.APPS, entry), os.path.join(apps, entry))
    with open(os.path.join(apps, "ft_cpu_app.py"), "w") as f:
        f.write(CPU_APP)
    wb.APPS = apps
    wb.WORKLOADS.append(("cpu", "/cpu", CPU_CONNS))
    cfg = os.path.join(workdir, "spindle.toml")
    with open(cfg, "w") as f:
        f.write(wb.SPINDLE_CONFIG + '"/cpu" = { wsgi = "ft_cpu_app:application" }\n')
    servers, venvs = [], {}
    for spec in args.spec:
        name, venv = spec.split("=", 1)
        venvs[name] = venv
        ready = os.path.join(workdir, f"{name}.ready")
        exe = os.path.join(venv, "bin", "spindle-wsgi")
        servers.append(wb.Server(name, [exe, "flask_app:app", "--config", cfg, "--ready-file", ready],
                                 wb.command_version(exe), ready_file=ready))
    print(f"load before: {wb.loadavg()}", flush=True)
    runs, raw = {}, []
    for rnd in range(1, args.rounds + 1):
        for srv in servers:
            runs.setdefault(srv.name, []).append(wb.run_one(srv, rnd, args, workdir, raw))
    print(f"load after: {wb.loadavg()}  (raw wrk output and server logs: {workdir})", flush=True)
    with open(os.path.join(workdir, "raw.md"), "w") as f:
        f.write("\n".join(raw))
    print("| server | workload | req/s | p99 ms | server CPU s | cores | req per CPU s | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for srv in servers:
        row = wb.combine(srv, runs[srv.name])
        if "failed" in row:
            print(f"| {srv.name} | failed: {row['failed']} | | | | | | |")
            continue
        ok = [r for r in runs[srv.name] if "failed" not in r]
        for name, _, _ in wb.WORKLOADS:
            row[name]["cpu_s"] = wb.median(r[name]["cpu_s"] for r in ok)
        for name, _, conns in wb.WORKLOADS:
            w = row.get(name) or {}
            print(f"| {srv.name} | {name} c{conns} | {wb.fmt(w.get('rps'), ',.0f')} | {wb.fmt(w.get('p99_ms'), '.1f')} "
                  f"| {wb.fmt(w.get('cpu_s'), '.1f')} "
                  f"| {wb.fmt(w['cpu_s'] / args.duration if w.get('cpu_s') else None, '.2f')} "
                  f"| {wb.fmt(w.get('per_cpu_s'), ',.0f')} "
                  f"| {w.get('errors', '?')}/{w.get('non2xx', '?')} |")
    for name, venv in venvs.items():
        for threads in (1, 2):
            print(f"in-process {name}, {threads} thread(s): {inproc(venv, args.inproc, threads)}", flush=True)


if __name__ == "__main__":
    main()
