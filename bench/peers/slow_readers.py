#!/usr/bin/env python3
"""The clients of bench/slow.sh (issue 16): slow readers and stalled uploads, on asyncio.

Standard library only; 127.0.0.1 only; every phase is bounded in time, and the process
ends by itself. Each command prints one line of key=value pairs (the last line of its
output) for bench/slow.sh to put in its tables; progress goes to stderr.

  readers PORT PID --n N --path PATH [--body BYTES] [--ramp S] [--hold S] ...
      N clients each set SO_RCVBUF (4 KiB) before connecting, send one request
      (GET PATH, or POST PATH with a BYTES body: the whole body is sent as far as the
      server takes it) and never read. Once every request is sent (or the ramp's
      bound passes, or nothing moved for 2 s), the hold: the normal client
      (normal_client.py: --normal-n GET / spread over the hold, each answered within
      --normal-timeout) runs while the server's process tree is sampled every 200 ms
      (threads; CPU time before and after). Then each slow socket is looked at without
      reading it (bytes waiting, a peek at the status line, whether the server closed
      it) and closed.
  budget PORT PID --n N --declared BYTES --first BYTES --tmpdir DIR [--stall S] ...
      N uploads: each POSTs to /echo with Content-Length BYTES, sends --first of them,
      then stalls for --stall s while the normal client runs; then every sender
      resumes, sends the rest and reads the echo back, compared byte for byte with
      what it sent. The server's VmRSS and its temporary-file bytes (the sizes of its
      open, deleted files under DIR, found in /proc/PID/fd) are sampled every 200 ms
      from before the first connection to the last echo, and so is the host's dirty
      page cache (Dirty + Writeback in /proc/meminfo).
  port PID
      Prints the TCP port a process of PID's tree listens on (127.0.0.1), or nothing.

The content of an upload is a pattern with a period of 1 MiB + 7 bytes, started at an
offset that differs per connection: a byte out of place, or one connection's bytes in
another's echo, is a mismatch.
"""

import argparse
import asyncio
import fcntl
import os
import random
import select
import socket
import struct
import subprocess
import sys
import termios
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NORMAL = os.path.join(HERE, "normal_client.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[slow_readers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the server's process, from /proc -----------------------------------------------


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


def status_field(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_sum(pid, field):
    """Sum of a /proc/PID/status field (Threads, VmRSS in KiB) over PID's tree."""
    return sum(status_field(p, field) for p in proc_tree(pid))


def cpu_ticks(pid):
    """utime+stime of PID's tree, plus cutime+cstime (children already reaped)."""
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])
    return total


def temp_bytes(pid, tmpdir):
    """Sizes of PID's open deleted files under tmpdir (spilled request bodies), and
    how many there are."""
    total = count = 0
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return 0, 0
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
            if target.startswith(tmpdir) and target.endswith("(deleted)"):
                total += os.stat(f"{fd_dir}/{fd}").st_size
                count += 1
        except OSError:
            continue
    return total, count


def dirty_kb():
    """The host's dirty and under-writeback page cache (KiB): spilled bodies not yet on
    disk; past vm.dirty_ratio the kernel throttles whoever writes more."""
    total = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(("Dirty:", "Writeback:")):
                    total += int(line.split()[1])
    except OSError:
        pass
    return total


def listening_port(pid):
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


# --- the normal client ----------------------------------------------------------------


async def normal_client(port, n, window, timeout):
    """Runs normal_client.py: n GET / spread over `window` seconds. Returns its
    key=value pairs (answered, p50_ms, p99_ms, ...)."""
    interval_ms = max(1, int(window * 1000 / n))
    cmd = [sys.executable, NORMAL, f"127.0.0.1:{port}", str(n), str(interval_ms), str(timeout)]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), n * interval_ms / 1000 + timeout + 15)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return {"answered": "NA"}
    line = out.decode().strip().splitlines()[-1] if out.strip() else ""
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


# --- sockets ----------------------------------------------------------------------------


async def writable(loop, sock):
    fut = loop.create_future()
    fd = sock.fileno()
    loop.add_writer(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_writer(fd)


async def send_view(loop, sock, view, progress=None):
    """Sends all of view (a memoryview), counting bytes into progress[0]."""
    off = 0
    while off < len(view):
        try:
            n = sock.send(view[off:off + (1 << 20)])
        except (BlockingIOError, InterruptedError):
            await writable(loop, sock)
            continue
        off += n
        if progress is not None:
            progress[0] += n


async def connect(loop, rcvbuf=None, timeout=10.0):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            # Before connect: the window offered in the SYN follows it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", PORT)), timeout)
        return sock
    except BaseException:
        sock.close()
        raise


PORT = 0


# --- readers --------------------------------------------------------------------------


async def readers(a):
    loop = asyncio.get_running_loop()
    head = f"{'POST' if a.body else 'GET'} {a.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if a.body:
        head += f"Content-Type: application/octet-stream\r\nContent-Length: {a.body}\r\n"
    payload = memoryview(head.encode() + b"\r\n" + bytes(range(256)) * (a.body // 256) + b"x" * (a.body % 256))
    socks = [None] * a.n
    sent = [0] * a.n           # 1 once the whole request is sent
    progress = [0]             # request bytes sent, all clients
    errors = {}

    async def client(i):
        try:
            socks[i] = await connect(loop, a.rcvbuf)
            await send_view(loop, socks[i], payload, progress)
            sent[i] = 1
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - counted, not fatal
            kind = type(e).__name__
            errors[kind] = errors.get(kind, 0) + 1

    threads_before = tree_sum(a.pid, "Threads")
    t0 = time.monotonic()
    tasks = [asyncio.create_task(client(i)) for i in range(a.n)]
    last, last_move = -1, time.monotonic()
    while time.monotonic() - t0 < a.ramp:
        await asyncio.sleep(0.1)
        if all(t.done() for t in tasks):
            break
        if progress[0] != last:
            last, last_move = progress[0], time.monotonic()
        elif time.monotonic() - last_move > 2 and sum(s is not None for s in socks) + sum(errors.values()) >= a.n:
            break  # everyone connected (or failed) and nothing has moved for 2 s
    ramp_s = time.monotonic() - t0
    connected = sum(s is not None for s in socks)
    log(f"ramp {ramp_s:.1f}s: connected {connected}/{a.n}, requests sent {sum(sent)}, "
        f"{progress[0] / 2**20:.0f} MiB, errors {errors or '-'}")

    # The hold: the normal client runs; the server's threads and CPU are sampled.
    sent_at_hold = progress[0]
    c0, h0 = cpu_ticks(a.pid), time.monotonic()
    normal = asyncio.create_task(normal_client(PORT, a.normal_n, a.hold, a.normal_timeout))
    threads_max = threads_before
    while not normal.done():
        threads_max = max(threads_max, tree_sum(a.pid, "Threads"))
        await asyncio.wait([normal], timeout=0.2)
    alive = os.path.exists(f"/proc/{a.pid}")
    c1, h1 = cpu_ticks(a.pid), time.monotonic()
    threads_end = tree_sum(a.pid, "Threads")
    threads_max = max(threads_max, threads_end)
    result = normal.result()

    # The slow sockets, looked at without reading: bytes waiting, the status line
    # (peeked), and whether the server has closed or reset them.
    started = ok_head = closed = 0
    poller = select.poll()
    live = [s for s in socks if s is not None]
    for s in live:
        poller.register(s, select.POLLIN | select.POLLRDHUP)
    events = dict(poller.poll(0))
    for s in live:
        pending = struct.unpack("i", fcntl.ioctl(s, termios.FIONREAD, b"\0\0\0\0"))[0]
        if pending > 0:
            started += 1
            try:
                if s.recv(12, socket.MSG_PEEK).startswith(b"HTTP/1.1 200"):
                    ok_head += 1
            except OSError:
                pass
        if events.get(s.fileno(), 0) & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
            closed += 1
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for s in live:
        s.close()
    out = {
        "n": a.n, "connected": connected, "sent": sum(sent), "ramp_s": f"{ramp_s:.1f}",
        "moved_mib_in_hold": f"{(progress[0] - sent_at_hold) / 2**20:.0f}",
        "errors": ",".join(f"{k}:{v}" for k, v in errors.items()) or "-",
    }
    out.update(result)
    out.update({
        "threads_before": threads_before, "threads_max": threads_max, "threads_end": threads_end,
        "cpu_s": f"{(c1 - c0) / CLK_TCK:.2f}" if alive else "NA", "window_s": f"{h1 - h0:.1f}",
        "server_alive": int(alive),
        "slow_started": started, "slow_head_200": ok_head, "slow_closed_by_server": closed,
    })
    return out


# --- budget ---------------------------------------------------------------------------

PERIOD = (1 << 20) + 7
PATTERN = random.Random(16).randbytes(PERIOD)
DOUBLE = PATTERN + PATTERN
DOUBLE_VIEW = memoryview(DOUBLE)


def offset_of(i):
    return (i * 7919) % PERIOD


async def send_pattern(loop, sock, i, start, end, progress=None):
    """Sends bytes start..end of connection i's content."""
    p, off = start, offset_of(i)
    while p < end:
        s = (p + off) % PERIOD
        n = min(end - p, PERIOD)
        await send_view(loop, sock, DOUBLE_VIEW[s:s + n], progress)
        p += n


def answered_early(sock):
    """What the server said before it closed, when the send failed: `-408` for an
    early 408 (its body_timeout), `` if nothing can be read."""
    try:
        data = sock.recv(64)
    except OSError:
        return ""
    if data.startswith(b"HTTP/1.") and len(data) >= 12:
        return "-" + data[9:12].decode("latin-1")
    return ""


class Sampler(threading.Thread):
    """VmRSS and temporary-file bytes of the server every 200 ms; the maxima, overall
    and per phase."""

    def __init__(self, pid, tmpdir):
        super().__init__(daemon=True)
        self.pid, self.tmpdir = pid, tmpdir
        self.phase = "start"
        self.max = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            rss = status_field(self.pid, "VmRSS")
            tmp, files = temp_bytes(self.pid, self.tmpdir)
            dirty = dirty_kb()
            for key, v in (("rss_kb", rss), ("temp_bytes", tmp), ("temp_files", files), ("dirty_kb", dirty)):
                for k in (key, f"{key}@{self.phase}"):
                    self.max[k] = max(self.max.get(k, 0), v)
            self.stop.wait(0.2)


async def budget(a):
    loop = asyncio.get_running_loop()
    head = (f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {a.declared}\r\nConnection: close\r\n\r\n").encode()
    rss_base = status_field(a.pid, "VmRSS")
    sampler = Sampler(a.pid, a.tmpdir)
    sampler.start()
    resume = asyncio.Event()
    socks = [None] * a.n
    first_done = [0] * a.n
    first_at = [None] * a.n   # when each first part was all sent
    progress = [0]  # body bytes sent before the stall, all clients
    outcome = {}

    def fail(kind):
        outcome[kind] = outcome.get(kind, 0) + 1

    async def first(i):
        socks[i] = await connect(loop, timeout=a.ramp)
        await send_view(loop, socks[i], memoryview(head))
        await send_pattern(loop, socks[i], i, 0, a.first, progress)
        first_done[i] = 1
        first_at[i] = time.monotonic()

    async def rest(i):
        sock = socks[i]
        await send_pattern(loop, sock, i, a.first, a.declared)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                return "eof-in-head" if not buf else "short-head"
            buf += chunk
        head_bytes, body = buf.split(b"\r\n\r\n", 1)
        status = head_bytes[9:12].decode("latin-1")
        if not head_bytes.startswith(b"HTTP/1.1 200"):
            return f"status-{status}"
        length = None
        for line in head_bytes.split(b"\r\n")[1:]:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length != a.declared:
            return "length"
        p, off = 0, offset_of(i)
        while True:
            if body:
                if p + len(body) > a.declared:
                    return "too-long"
                s = (p + off) % PERIOD
                if body != DOUBLE[s:s + len(body)]:
                    return "mismatch"
                p += len(body)
            if p == a.declared:
                return "ok"
            body = await loop.sock_recv(sock, 262144)
            if not body:
                return "short-body"

    async def client(i):
        try:
            await first(i)
        except Exception as e:  # noqa: BLE001
            fail(f"first-{type(e).__name__}")
            return
        await resume.wait()
        try:
            r = await rest(i)
        except Exception as e:  # noqa: BLE001
            r = type(e).__name__ + answered_early(socks[i])
        fail(r)

    t0 = time.monotonic()
    sampler.phase = "send-first"
    tasks = [asyncio.create_task(client(i)) for i in range(a.n)]
    last, last_move = -1, time.monotonic()
    while time.monotonic() - t0 < a.ramp and sum(first_done) + sum(outcome.values()) < a.n:
        await asyncio.sleep(0.1)
        if progress[0] != last:
            last, last_move = progress[0], time.monotonic()
        elif time.monotonic() - last_move > 3:
            break  # the server takes no more: the stall starts with what it has
    first_s = time.monotonic() - t0
    log(f"first parts: {sum(first_done)}/{a.n} sent in {first_s:.1f}s "
        f"({progress[0] / 2**20:.0f} MiB); failed {outcome or '-'}")

    sampler.phase = "stall"
    s0 = time.monotonic()
    normal = await normal_client(PORT, a.normal_n, a.stall, a.normal_timeout)
    await asyncio.sleep(max(0.0, a.stall - (time.monotonic() - s0)))
    stall_s = time.monotonic() - s0

    sampler.phase = "resume"
    r0 = time.monotonic()
    waited = [r0 - t for t in first_at if t is not None]
    resume.set()
    done, pending = await asyncio.wait(tasks, timeout=a.done_timeout)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    resume_s = time.monotonic() - r0
    if pending:
        outcome["unfinished"] = len(pending)
    for s in socks:
        if s is not None:
            s.close()
    sampler.stop.set()
    sampler.join()
    m = sampler.max
    completed = outcome.pop("ok", 0)
    log(f"resume: {completed}/{a.n} echoes intact in {resume_s:.1f}s; other outcomes {outcome or '-'}")
    out = {
        "n": a.n, "declared": a.declared, "first": a.first, "first_sent": sum(first_done),
        "first_mib": f"{progress[0] / 2**20:.0f}",
        "first_s": f"{first_s:.1f}", "stall_s": f"{stall_s:.1f}",
        "longest_wait_s": f"{max(waited):.1f}" if waited else "NA",
        "rss_base_kb": rss_base, "rss_max_kb": m.get("rss_kb", 0),
        "rss_max_stall_kb": m.get("rss_kb@stall", 0),
        "temp_max_bytes": m.get("temp_bytes", 0), "temp_max_stall_bytes": m.get("temp_bytes@stall", 0),
        "temp_files_max": m.get("temp_files", 0),
        "dirty_max_kb": m.get("dirty_kb", 0), "dirty_max_stall_kb": m.get("dirty_kb@stall", 0),
    }
    out.update(normal)
    out.update({
        "completed": completed, "failed": a.n - completed,
        "fail_kinds": ",".join(f"{k}:{v}" for k, v in sorted(outcome.items())) or "-",
        "resume_s": f"{resume_s:.1f}",
    })
    return out


def main():
    global PORT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("readers")
    b = sub.add_parser("budget")
    for p in (r, b):
        p.add_argument("port", type=int)
        p.add_argument("pid", type=int, help="the server's PID (its process tree is measured)")
        p.add_argument("--n", type=int, default=1000)
        p.add_argument("--normal-n", type=int, default=200)
        p.add_argument("--normal-timeout", type=float, default=5.0)
    r.add_argument("--path", required=True)
    r.add_argument("--body", type=int, default=0, help="POST a body of this many bytes")
    r.add_argument("--rcvbuf", type=int, default=4096)
    r.add_argument("--ramp", type=float, default=10.0, help="most seconds to wait for the requests")
    r.add_argument("--hold", type=float, default=10.0)
    b.add_argument("--declared", type=int, required=True, help="Content-Length of each upload")
    b.add_argument("--first", type=int, required=True, help="bytes sent before the stall")
    b.add_argument("--tmpdir", required=True, help="the server's TMPDIR")
    b.add_argument("--stall", type=float, default=10.0)
    b.add_argument("--ramp", type=float, default=60.0, help="most seconds for the first parts")
    b.add_argument("--done-timeout", type=float, default=180.0, help="most seconds for the echoes")
    pp = sub.add_parser("port")
    pp.add_argument("pid", type=int)
    a = ap.parse_args()
    if a.cmd == "port":
        port = listening_port(a.pid)
        if port:
            print(port)
        return
    PORT = a.port
    out = asyncio.run(readers(a) if a.cmd == "readers" else budget(a))
    print(" ".join(f"{k}={v}" for k, v in out.items()), flush=True)


if __name__ == "__main__":
    main()
