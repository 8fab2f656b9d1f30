"""bench/report.py — turns bench/run.sh's raw figures into the results file and plot data.

Owns the arithmetic (medians, ratios, unit conversion) so run.sh only runs things and
records one figure a line. Standard library only; run by bench/run.sh, never long-lived.

    report.py parse-wrk FILE             wrk --latency output -> "rps N", "p50_ms N", ...
    report.py plotdata DATA              req/s per connection count, one column a server
    report.py markdown DATA CMDS IDLE_N ELAPSED_S   the tables of bench/results/<date>.md

DATA lines: workload, server, param, round, metric, value (tab-separated); a value that
is not a number (a failed run) is counted as a failure, not averaged in.
"""

import re
import statistics
import sys
from collections import defaultdict

HTTP = ["spindle", "nginx", "gunicorn", "waitress", "eventlet"]
UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNIT_MS[m.group(2)] if m else None


def parse_wrk(path):
    text = open(path, errors="replace").read()
    out = {}
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    out["rps"] = m.group(1) if m else "NA"
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
    for k, v in out.items():
        print(k, v)


def load(path):
    """{(workload, server, param, metric): [values by round, None for a failure]}"""
    data = defaultdict(list)
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 6:
            continue
        w, s, p, _r, k, v = parts
        try:
            data[(w, s, p, k)].append(float(v))
        except ValueError:
            data[(w, s, p, k)].append(None)
    return data


def med(data, *key):
    vals = [v for v in data.get(key, []) if v is not None]
    return statistics.median(vals) if vals else None


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
    return f"{v:,.{digits}f}"


def mib(kb):
    return "–" if kb is None else f"{kb / 1024:.1f}"


def ratio(v, base):
    if v is None or not base:
        return "–"
    return f"{v / base:.2f}×"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def plotdata(path):
    data = load(path)
    print("conns " + " ".join(HTTP))
    for c in ("1", "50", "256"):
        row = [med(data, "w1", s, c, "rps") for s in HTTP]
        print(c + " " + " ".join("NaN" if v is None else f"{v:.0f}" for v in row))


def markdown(path, cmds_path, idle_n, elapsed):
    data = load(path)
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
        "RSS is VmRSS from /proc/PID/status after the run (master + workers summed for "
        "nginx and gunicorn). Ratios are the server's figure divided by spindle's: "
        "for req/s and MB/s above 1× means faster than spindle; for latency above 1× means "
        "slower. Errors are summed over rounds (wrk socket errors + non-2xx).\n"
    )

    md.append("## 1. hello, keep-alive\n")
    md.append("![req/s vs connections](../../docs/bench-hello.png)\n")
    rows = []
    for c in ("1", "50", "256"):
        base = med(data, "w1", "spindle", c, "rps")
        for s in HTTP:
            rps = med(data, "w1", s, c, "rps")
            rows.append([c, s, fmt(rps), fmt(med(data, "w1", s, c, "p50_ms"), 3),
                         fmt(med(data, "w1", s, c, "p99_ms"), 3),
                         mib(med(data, "w1", s, c, "rss_kb")),
                         total(data, "w1", s, c, "errors"), ratio(rps, base)])
    md.append(table(["conns", "server", "req/s", "p50 ms", "p99 ms", "RSS MiB", "errors",
                     "req/s vs spindle"], rows) + "\n")

    md.append("## 2. hello, `Connection: close`, 50 connections\n")
    base = med(data, "w2", "spindle", "50", "rps")
    rows = []
    for s in HTTP:
        rps = med(data, "w2", s, "50", "rps")
        rows.append([s, fmt(rps), fmt(med(data, "w2", s, "50", "p50_ms"), 3),
                     fmt(med(data, "w2", s, "50", "p99_ms"), 3),
                     mib(med(data, "w2", s, "50", "rss_kb")),
                     total(data, "w2", s, "50", "errors"), ratio(rps, base)])
    md.append(table(["server", "req/s", "p50 ms", "p99 ms", "RSS MiB", "errors",
                     "req/s vs spindle"], rows) + "\n")

    md.append(f"## 3. {idle_n} idle keep-alive connections + wrk -c50\n")
    if int(idle_n) < 10000:
        md.append(f"**Reduced from 10,000 to {idle_n} idle connections** (open-file limit).\n")
    md.append("Only spindle and nginx are run here (the Python peers are out of scope for "
              "this one). `held` is how many of the idle clients got their response and "
              "stayed connected (median of rounds).\n")
    base = med(data, "w3", "spindle", idle_n, "rps")
    rows = []
    for s in ("spindle", "nginx"):
        rps = med(data, "w3", s, idle_n, "rps")
        rows.append([s, fmt(med(data, "w3", s, idle_n, "held")),
                     total(data, "w3", s, idle_n, "failed"), fmt(rps),
                     fmt(med(data, "w3", s, idle_n, "p50_ms"), 3),
                     fmt(med(data, "w3", s, idle_n, "p99_ms"), 3),
                     mib(med(data, "w3", s, idle_n, "rss_idle_kb")),
                     mib(med(data, "w3", s, idle_n, "rss_kb")),
                     total(data, "w3", s, idle_n, "errors"), ratio(rps, base)])
    md.append(table(["server", "idle held", "idle failed (sum)", "req/s", "p50 ms",
                     "p99 ms", "RSS idle MiB", "RSS after load MiB", "errors",
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
    print("\n".join(md))


def main(argv):
    if len(argv) >= 2 and argv[0] == "parse-wrk":
        parse_wrk(argv[1])
    elif len(argv) >= 2 and argv[0] == "plotdata":
        plotdata(argv[1])
    elif len(argv) >= 5 and argv[0] == "markdown":
        markdown(*argv[1:5])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
