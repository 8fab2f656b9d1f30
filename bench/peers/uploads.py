#!/usr/bin/env python3
"""N concurrent uploads of SIZE bytes to /echo on 127.0.0.1:PORT, each read back and
compared (sha256). Prints one line: ok, failed, seconds, and the server's peak RSS
(VmHWM of PID) and its temporary files' peak, so the body spill is visible.

usage: uploads.py PORT PID [N=200] [SIZE=8388608]
Loopback only; every socket has a 60 s timeout; exits when all clients are done.
"""
import hashlib
import os
import socket
import sys
import threading
import time

port, pid = int(sys.argv[1]), int(sys.argv[2])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
size = int(sys.argv[4]) if len(sys.argv) > 4 else 8 << 20

results = []
lock = threading.Lock()
start_gate = threading.Barrier(n)


def body_for(i):
    seed = hashlib.sha256(str(i).encode()).digest()
    block = seed * (65536 // len(seed))
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


def client(i):
    data = body_for(i)
    want = hashlib.sha256(data).hexdigest()
    ok = False
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.settimeout(60)
        start_gate.wait()
        head = f"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
        s.sendall(head.encode() + data)
        buf = bytearray()
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
        s.close()
        head_end = buf.find(b"\r\n\r\n")
        ok = (
            buf.startswith(b"HTTP/1.1 200 ")
            and head_end > 0
            and hashlib.sha256(bytes(buf[head_end + 4:])).hexdigest() == want
        )
    except Exception as e:  # noqa: BLE001 - a failed client is counted, not fatal
        print(f"client {i}: {e}", file=sys.stderr)
    with lock:
        results.append(ok)


def status(field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


peak_files = 0
stop = threading.Event()


def watch_files():
    # Spilled bodies are O_TMPFILE descriptors: count the server's open files that
    # point at (deleted) temporary files.
    global peak_files
    while not stop.is_set():
        count = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("/tmp/") or "(deleted)" in target:
                    count += 1
        except OSError:
            pass
        peak_files = max(peak_files, count)
        time.sleep(0.05)


rss_before = status("VmRSS")
watcher = threading.Thread(target=watch_files)
watcher.start()
t0 = time.monotonic()
threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - t0
stop.set()
watcher.join()
good = sum(results)
print(
    f"ok {good} failed {n - good} seconds {elapsed:.1f} rss_before_kib {rss_before} "
    f"peak_rss_kib {status('VmHWM')} peak_spilled_bodies {peak_files}"
)
