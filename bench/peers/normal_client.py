"""The "normal client" of the slow-client workload: N plain GET / requests, one every
INTERVAL_MS, each given TIMEOUT_S to be answered, while slowhttptest attacks the server.

Usage: normal_client.py HOST:PORT [N=200] [INTERVAL_MS=50] [TIMEOUT_S=2]

Each request is a new connection (`Connection: close`), started on a fixed schedule
(t0 + i * INTERVAL_MS) on its own thread: a request does not wait for the one before it,
so a stalled server cannot stretch the run, which ends within N * INTERVAL_MS + TIMEOUT_S
(about 12 s with the defaults). While the server answers in under INTERVAL_MS the
requests are in effect sequential, one at a time.

A request counts as answered when a complete `HTTP/1.x 200` response (head and
Content-Length body, or the body up to the server's close) arrives within TIMEOUT_S of
its start; connect time included. Prints one line:

    answered=… total=… p50_ms=… p99_ms=… max_ms=… refused=… timeout=… bad=… bad_kinds=…

bad_kinds says what the bad ones got: a status code (`503:12`), `eof` (closed before
any byte), `reset`, `short` (cut off) or `error`, with counts; `-` if none.

Percentiles are over all N requests, an unanswered one ranking above every answered one;
a percentile that falls on an unanswered request prints as `unanswered`. max_ms is the
slowest answered request (NA if none was). Loopback only; standard library only.
"""

import math
import socket
import sys
import threading
import time


def one(host, port, timeout):
    """Returns (latency_s or None, outcome) for one GET /."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    try:
        s = socket.create_connection((host, port), timeout=timeout)
    except (ConnectionRefusedError, ConnectionResetError):
        return None, "refused"
    except OSError:
        return None, "timeout"
    try:
        s.settimeout(max(0.001, deadline - time.monotonic()))
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        buf = b""
        need = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, "timeout"
            s.settimeout(left)
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if need is None and b"\r\n\r\n" in buf:
                head = buf.split(b"\r\n\r\n", 1)[0].lower()
                for line in head.split(b"\r\n")[1:]:
                    if line.startswith(b"content-length:"):
                        need = len(head) + 4 + int(line.split(b":", 1)[1])
            if need is not None and len(buf) >= need:
                break
        ok = buf.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")) and b"\r\n\r\n" in buf
        if need is not None and len(buf) < need:
            ok = False
        if ok:
            return time.monotonic() - t0, "ok"
        # Not a complete 200: say what it was (the status code, or how it ended).
        if buf.startswith(b"HTTP/1.") and len(buf) >= 12:
            return None, "bad:" + buf[9:12].decode("ascii", "replace")
        return None, "bad:eof" if not buf else "bad:short"
    except socket.timeout:
        return None, "timeout"
    except ConnectionResetError:
        return None, "bad:reset"
    except OSError:
        return None, "bad:error"
    finally:
        s.close()


def main(argv):
    if not argv or ":" not in argv[0]:
        sys.exit(__doc__)
    host, port = argv[0].rsplit(":", 1)
    port = int(port)
    n = int(argv[1]) if len(argv) > 1 else 200
    interval = (int(argv[2]) if len(argv) > 2 else 50) / 1000
    timeout = float(argv[3]) if len(argv) > 3 else 2.0
    results = [None] * n
    threads = []

    def run(i):
        results[i] = one(host, port, timeout)

    t0 = time.monotonic()
    for i in range(n):
        delay = t0 + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=run, args=(i,), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(timeout + 1)
    outcomes = [r[1] if r else "timeout" for r in results]
    lat = sorted(r[0] for r in results if r and r[0] is not None)

    def pct(p):
        k = max(0, min(n - 1, math.ceil(p * n) - 1))  # nearest rank
        return f"{lat[k] * 1e3:.1f}" if k < len(lat) else "unanswered"

    print(
        f"answered={len(lat)} total={n} p50_ms={pct(0.50)} p99_ms={pct(0.99)} "
        f"max_ms={(f'{lat[-1] * 1e3:.1f}' if lat else 'NA')} "
        f"refused={outcomes.count('refused')} timeout={outcomes.count('timeout')} "
        f"bad={sum(o.startswith('bad') for o in outcomes)} "
        f"bad_kinds={','.join(f'{k[4:]}:{outcomes.count(k)}' for k in sorted(set(outcomes)) if k.startswith('bad')) or '-'}",
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
