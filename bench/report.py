"""bench/report.py — turns bench/run.sh's raw figures into the results file and plot data.

Owns the arithmetic (medians, ratios, unit conversion) so run.sh only runs things and
records one figure a line. Standard library only; run by bench/run.sh, never long-lived.

    report.py parse-wrk FILE             wrk --latency output -> "rps N", "requests N", ...
    report.py parse-slow CSV OUT         slowhttptest -g CSV + its stdout -> "slow_… N", ...
    report.py plotdata DATA              req/s per connection count, one column a server
    report.py markdown DATA CMDS IDLE_N ELAPSED_S   the tables of bench/results/<date>.md

DATA lines: workload, server, param, round, metric, value (tab-separated); a value that
is not a number (a failed run) is counted as a failure, not averaged in; `unanswered`
(a percentile of the normal client that fell on an unanswered request) ranks above
every number.
"""

import csv
import math
import re
import statistics
import sys
from collections import defaultdict

# Hello servers, in table and plot order. spindle runs its default config.
HTTP = ["spindle", "nginx", "hyper", "astra", "tiny_http", "gunicorn", "waitress", "eventlet"]
LABEL = {
    "spindle": "spindle (default config)",
    "spindle-4": "spindle, pool fixed 4..4",
    "spindle-slow": "spindle, max_threads 8",
    "spindle-idle": "spindle",
    "hyper": "hyper (tokio, 2 workers)",
    "astra": "astra (default pool)",
    "tiny_http": "tiny_http (4 threads)",
    "gunicorn": "gunicorn gthread (4 threads)",
    "waitress": "waitress (4 threads)",
    "eventlet": "eventlet",
}
UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
SLOW_MODES = {"H": "slow headers (-H)", "B": "slow body (-B)", "X": "slow read (-X)"}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNIT_MS[m.group(2)] if m else None


def parse_wrk(path):
    text = open(path, errors="replace").read()
    out = {}
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    out["rps"] = m.group(1) if m else "NA"
    m = re.search(r"^\s*(\d+) requests in ", text, re.M)
    out["requests"] = m.group(1) if m else "NA"
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        v = to_ms(m.group(1)) if m else None
        out[key] = f"{v:.3f}" if v is not None else "NA"
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    out["errors"] = str(errors) if "Requests/sec" in text else "NA"
    if out["requests"] == "0":
        # Not one response in the whole run: a failed run, not a figure of 0.
        for k in ("rps", "errors", "p50_ms", "p99_ms"):
            out[k] = "NA"
    for k, v in out.items():
        print(k, v)


def parse_slow(csv_path, out_path):
    """slowhttptest's -g CSV (Seconds,Closed,Pending,Connected,Service Available, one
    row a second; Service Available is 0 while its probe connection got no answer) and
    its stdout (the closing "Exit status" and "Test ended on Nth second" lines)."""
    connected, down, closed = [], 0, None
    try:
        with open(csv_path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    connected.append(int(row["Connected"]))
                    closed = int(row["Closed"])
                    down += int(row["Service Available"]) == 0
                except (KeyError, ValueError):
                    continue
    except OSError:
        pass
    print("slow_connected_max", max(connected) if connected else "NA")
    print("slow_probe_down_s", down if connected else "NA")
    print("slow_closed_end", "NA" if closed is None else closed)
    try:
        text = re.sub(r"\x1b\[[0-9;]*m", "", open(out_path, errors="replace").read())
    except OSError:
        text = ""
    m = re.search(r"Test ended on (\d+)\w* second", text)
    print("slow_ended_s", m.group(1) if m else "NA")
    m = re.search(r"Exit status:\s*(.+)", text)
    print("slow_exit", m.group(1).strip() if m else "NA")


def load(path):
    """({(workload, server, param, metric): [values by round, None for a failure]},
    the same with the values as text)"""
    data, raw = defaultdict(list), defaultdict(list)
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 6:
            continue
        w, s, p, _r, k, v = parts
        raw[(w, s, p, k)].append(v)
        if v == "unanswered":
            data[(w, s, p, k)].append(math.inf)
            continue
        try:
            data[(w, s, p, k)].append(float(v))
        except ValueError:
            data[(w, s, p, k)].append(None)
    return data, raw


def med(data, *key):
    vals = [v for v in data.get(key, []) if v is not None]
    if not vals:
        return None
    vals.sort()
    return vals[(len(vals) - 1) // 2] if math.inf in vals else statistics.median(vals)


def total(data, *key):
    vals = data.get(key, [])
    if not vals:
        return "–"
    fails = sum(v is None for v in vals)
    n = int(sum(v for v in vals if v is not None))
    return f"{n}" + (f" (+{fails} failed runs)" if fails else "")


def fmt(v, digits=0):
    if v is None:
        return "fail"
    if v == math.inf:
        return "unanswered"
    return f"{v:,.{digits}f}"


def mib(kb):
    return "–" if kb is None else f"{kb / 1024:.1f}"


def ratio(v, base):
    if v is None or not base or v == math.inf:
        return "–"
    return f"{v / base:.2f}×"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def plotdata(path):
    data, _ = load(path)
    print("conns " + " ".join(HTTP))
    for c in ("1", "50", "256"):
        row = [med(data, "w1", s, c, "rps") for s in HTTP]
        print(c + " " + " ".join("NaN" if v is None else f"{v:.0f}" for v in row))


# The hello workloads: (workload, param, column title).
HELLO = [("w1", "1", "keep-alive c1"), ("w1", "50", "keep-alive c50"),
         ("w1", "256", "keep-alive c256"), ("w2", "50", "`Connection: close` c50")]


def hello_matrix(data, metric):
    rows = []
    for s in HTTP + ["spindle-4"]:
        row = [LABEL.get(s, s)]
        for w, p, _ in HELLO:
            v, base = med(data, w, s, p, metric), med(data, w, "nginx", p, metric)
            if (w, s, p, "rps") not in data:
                row.append("")
            else:
                row.append(f"{fmt(v)} ({ratio(v, base)})" if v is not None else "fail")
        rows.append(row)
    return table(["server"] + [t for _, _, t in HELLO], rows)


def hello_rows(data, w, p, servers):
    base = med(data, w, "nginx", p, "rps")
    base_cpu = med(data, w, "nginx", p, "rpcpu")
    rows = []
    for s in servers:
        if (w, s, p, "rps") not in data:
            continue
        rps, rpcpu = med(data, w, s, p, "rps"), med(data, w, s, p, "rpcpu")
        rows.append([LABEL.get(s, s), fmt(rps), ratio(rps, base), fmt(rpcpu),
                     ratio(rpcpu, base_cpu), fmt(med(data, w, s, p, "cores"), 2),
                     fmt(med(data, w, s, p, "p50_ms"), 3), fmt(med(data, w, s, p, "p99_ms"), 3),
                     mib(med(data, w, s, p, "rss_kb")), fmt(med(data, w, s, p, "threads")),
                     total(data, w, s, p, "errors")])
    return rows


HELLO_HEAD = ["server", "req/s", "req/s × nginx", "req per CPU-s", "req/CPU-s × nginx",
              "server CPU (cores)", "p50 ms", "p99 ms", "RSS MiB", "threads", "errors"]


def slow_exit(raw, key):
    """slowhttptest's exit status and the second it ended, per round."""
    ends = raw.get(key + ("slow_ended_s",), [])
    out = []
    for i, e in enumerate(raw.get(key + ("slow_exit",), [])):
        end = ends[i] if i < len(ends) else "NA"
        out.append(e + ("" if end == "NA" else f" (at {end} s)"))
    return "; ".join(out) or "–"


def markdown(path, cmds_path, idle_n, elapsed):
    data, raw = load(path)
    md = []
    md.append(f"Total wall time of this run: **{elapsed} s**.\n")
    md.append("## Commands\n")
    md.append("Ports are picked free at run time and written `PORT` here.\n")
    md.append("```sh")
    seen = []
    for line in open(cmds_path):
        if line.strip() and line not in seen:
            seen.append(line)
    md.extend(line.rstrip("\n") for line in seen)
    md.append("```\n")
    md.append(
        "**req/s** is wrk's figure. **req per CPU-s** is wrk's request count divided by the "
        "server's CPU time over the run (utime + stime from /proc/PID/stat, summed over the "
        "process and its children, e.g. nginx's and gunicorn's workers, and over reaped "
        "children); **server CPU (cores)** is that CPU time over the run's wall time. "
        "**× nginx** is the server's figure divided by nginx's (1 worker) in the same "
        "workload: above 1× is more requests per second, or per CPU-second, than nginx. "
        "RSS (VmRSS, summed the same way) and threads are read after the run. Errors are "
        "summed over rounds (wrk socket errors + non-2xx).\n")

    md.append("## Summary: hello, req/s (× nginx)\n")
    md.append(hello_matrix(data, "rps") + "\n")
    md.append("## Summary: hello, requests per server CPU-second (× nginx)\n")
    md.append(hello_matrix(data, "rpcpu") + "\n")
    d, f = med(data, "w1", "spindle", "50", "rps"), med(data, "w1", "spindle-4", "50", "rps")
    dc, fc = (med(data, "w1", "spindle", "50", "rpcpu"),
              med(data, "w1", "spindle-4", "50", "rpcpu"))
    md.append("**spindle's default pool vs the pool fixed at 4..4** (hello keep-alive, 50 "
              f"connections): {fmt(d)} vs {fmt(f)} req/s, **{ratio(d, f)}**; "
              f"{fmt(dc)} vs {fmt(fc)} requests per CPU-second, **{ratio(dc, fc)}**.\n")

    md.append("## 1. hello, keep-alive\n")
    md.append("![req/s vs connections](../../docs/bench-hello.png)\n")
    for c in ("1", "50", "256"):
        md.append(f"### {c} connection{'s' if c != '1' else ''} (`wrk -t1 -c{c}`)\n")
        servers = HTTP + (["spindle-4"] if c == "50" else [])
        md.append(table(HELLO_HEAD, hello_rows(data, "w1", c, servers)) + "\n")

    md.append("## 2. hello, `Connection: close`, 50 connections\n")
    md.append(table(HELLO_HEAD, hello_rows(data, "w2", "50", HTTP)) + "\n")
    if (total(data, "w2", "tiny_http", "50", "errors") or "0")[0] not in "0–":
        md.append("tiny_http's errors here are wrk read errors: it closes the connection "
                  "after the response without saying `Connection: close` in it, so wrk "
                  "counts the close as an error. Its responses are complete and counted.\n")

    md.append(f"## 3. {idle_n} idle keep-alive connections + wrk -c50\n")
    if int(idle_n) < 10000:
        md.append(f"**Reduced from 10,000 to {idle_n} idle connections** (open-file limit).\n")
    md.append("Only spindle and nginx are run here. spindle is a separate instance "
              "(`spindle-idle`): default pool, but `max_connections` and `keepalive_timeout` "
              "raised (defaults 10,000 and 15 s) so the idle clients and wrk's 50 fit and "
              "stay for the whole run. `held` is how many of the idle clients got their "
              "response and stayed connected (median of rounds).\n")
    base = med(data, "w3", "spindle-idle", idle_n, "rps")
    rows = []
    for s in ("spindle-idle", "nginx"):
        rps = med(data, "w3", s, idle_n, "rps")
        rows.append([LABEL.get(s, s), fmt(med(data, "w3", s, idle_n, "held")),
                     total(data, "w3", s, idle_n, "failed"), fmt(rps),
                     fmt(med(data, "w3", s, idle_n, "rpcpu")),
                     fmt(med(data, "w3", s, idle_n, "p50_ms"), 3),
                     fmt(med(data, "w3", s, idle_n, "p99_ms"), 3),
                     mib(med(data, "w3", s, idle_n, "rss_idle_kb")),
                     mib(med(data, "w3", s, idle_n, "rss_kb")),
                     total(data, "w3", s, idle_n, "errors"), ratio(rps, base)])
    md.append(table(["server", "idle held", "idle failed (sum)", "req/s", "req per CPU-s",
                     "p50 ms", "p99 ms", "RSS idle MiB", "RSS after load MiB", "errors",
                     "req/s vs spindle"], rows) + "\n")

    md.append("## 4. echo throughput (64 KiB write, 64 KiB read back, per connection)\n")
    rows = []
    for c in ("1", "50"):
        base = med(data, "w4", "spindle", c, "mbps")
        for s in ("spindle", "threads"):
            v = med(data, "w4", s, c, "mbps")
            rows.append([c, "spindle" if s == "spindle" else "thread-per-connection",
                         fmt(v, 1), mib(med(data, "w4", s, c, "rss_kb")),
                         total(data, "w4", s, c, "errors"), ratio(v, base)])
    md.append(table(["conns", "server", "MB/s", "RSS MiB", "errors", "MB/s vs spindle"],
                    rows) + "\n")

    md.append("## 5. echo round trip, 64-byte ping-pong on one connection\n")
    base = med(data, "w5", "spindle", "1", "p99_us")
    rows = []
    for s in ("spindle", "threads"):
        p99 = med(data, "w5", s, "1", "p99_us")
        rows.append(["spindle" if s == "spindle" else "thread-per-connection",
                     fmt(med(data, "w5", s, "1", "p50_us"), 1), fmt(p99, 1),
                     ratio(p99, base)])
    md.append(table(["server", "p50 µs", "p99 µs", "p99 vs spindle"], rows) + "\n")

    md.append("## 6. spindle: SIGTERM → process exit\n")
    md.append("`busy`: wrk -c100 keep-alive load started 2 s before the signal; `idle`: "
              "no clients. Time from `kill -TERM` to the shell's `wait` returning.\n")
    rows = []
    for mode in ("idle", "busy"):
        runs = data.get(("w6", "spindle", mode, "stop_ms"), [])
        exits = data.get(("w6", "spindle", mode, "exit"), [])
        rows.append([mode, fmt(med(data, "w6", "spindle", mode, "stop_ms")),
                     ", ".join(fmt(v) for v in runs),
                     ", ".join(fmt(v) for v in exits)])
    md.append(table(["case", "ms (median)", "ms per round", "exit status"], rows) + "\n")

    md.append("## 7. blocking app: `GET /sleep?ms=20`, 200 connections\n")
    md.append("`wrk -t1 -c200 --timeout 5s`. The app sleeps 20 ms in the thread that "
              "handles the request (spindle's built-in `sleep` app, mounted at /sleep on "
              "its default config; `time.sleep` in bench/peers/hello_wsgi.py for the WSGI "
              "servers). **ideal** = min(200 connections, max threads) / 20 ms: spindle's "
              "max_threads is its default config's.\n")
    rows = []
    for s in ("spindle", "gunicorn", "waitress"):
        key = ("w7", s, "200")
        if key + ("ideal",) not in data:
            continue
        rps, ideal = med(data, *key, "rps"), med(data, *key, "ideal")
        head = [LABEL.get(s, s), fmt(med(data, *key, "max_threads")), fmt(ideal)]
        if key + ("p50_ms",) not in data:
            rows.append(head + ["not run: no `sleep` app in this build"] + ["–"] * 6)
            continue
        rows.append(head + [fmt(rps), ratio(rps, ideal), fmt(med(data, *key, "p50_ms"), 1),
                            fmt(med(data, *key, "p99_ms"), 1),
                            fmt(med(data, *key, "cores"), 2),
                            fmt(med(data, *key, "threads")), total(data, *key, "errors")])
    md.append(table(["server", "max threads", "ideal req/s", "req/s", "of ideal", "p50 ms",
                     "p99 ms", "server CPU (cores)", "threads after", "errors"], rows) + "\n")

    md.append("## 8. slow clients (slowhttptest, 1,000 connections) + a normal client\n")
    md.append(
        "**spindle runs with `max_threads = 8`** here (`spindle-slow`: the condition "
        "stated in the issue; the rest of its config is the default, e.g. "
        "`header_timeout` 10 s, `body_timeout` 30 s); nginx (1 worker) beside it, one "
        "server at a time. `-B` posts its slow bodies to /echo (spindle's echo app reads "
        "the body; nginx's `return 200` reads and discards it); `-H` and `-X` use /. `-X` "
        "pipelines 10 requests a connection (slowhttptest's maximum): the hello responses "
        "are small, so they may well fit the socket buffers. "
        "3 s after slowhttptest starts (it opens 500 connections a "
        "second), the normal client (bench/peers/normal_client.py) sends 200 `GET /` on "
        "new connections, one every 50 ms; a request not answered with a complete 200 "
        "within 2 s counts as not answered. Percentiles are over all 200, an unanswered "
        "request ranking above every answered one (`unanswered` when the percentile falls "
        "on one); max is the slowest answered. Not answered: refused (connect refused or "
        "reset), timeout (nothing complete in 2 s), bad (a status other than 200, or the "
        "connection closed or reset early: the kinds, with counts per round, in brackets). `slow conns` is the most connections "
        "slowhttptest had open at once; `probe down` the seconds its own probe got no "
        "answer within 3 s; threads and RSS are read while under attack, CPU over the "
        "whole attack. Medians of rounds.\n")
    rows = []
    for mode, title in SLOW_MODES.items():
        for s in ("spindle-slow", "nginx"):
            key = ("w8", s, mode)
            if key + ("answered",) not in data:
                continue
            ans = med(data, *key, "answered")
            lost = "/".join(fmt(med(data, *key, k)) for k in ("refused", "timeout", "bad"))
            kinds = "; ".join(k for k in raw.get(key + ("bad_kinds",), []) if k not in ("-", "NA"))
            lost += f" (bad: {kinds})" if kinds else ""
            rows.append([title, LABEL.get(s, s),
                         f"{fmt(ans)}/200" if ans is not None else "fail",
                         fmt(med(data, *key, "p50_ms"), 1), fmt(med(data, *key, "p99_ms"), 1),
                         fmt(med(data, *key, "max_ms"), 1), lost,
                         fmt(med(data, *key, "slow_connected_max")),
                         fmt(med(data, *key, "slow_probe_down_s")),
                         slow_exit(raw, key),
                         fmt(med(data, *key, "threads")), mib(med(data, *key, "rss_kb")),
                         fmt(med(data, *key, "cpu_s"), 2)])
    md.append(table(["attack", "server", "normal: answered", "p50 ms", "p99 ms", "max ms",
                     "refused/timeout/bad", "slow conns", "probe down s",
                     "slowhttptest exit", "threads", "RSS MiB", "CPU s"], rows) + "\n")
    print("\n".join(md))


def main(argv):
    if len(argv) >= 2 and argv[0] == "parse-wrk":
        parse_wrk(argv[1])
    elif len(argv) >= 3 and argv[0] == "parse-slow":
        parse_slow(argv[1], argv[2])
    elif len(argv) >= 2 and argv[0] == "plotdata":
        plotdata(argv[1])
    elif len(argv) >= 5 and argv[0] == "markdown":
        markdown(*argv[1:5])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
