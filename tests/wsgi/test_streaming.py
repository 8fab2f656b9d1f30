"""Large streamed and file responses (issue 16): clients that do not read hold no
thread, every iterable's close() is called exactly once however the response ends, and
a `wsgi.file_wrapper` over a regular file goes out with sendfile(2).

The app is apps/stream_app.py (Flask, not under the validator: see its docstring); it
appends `start TOKEN` and `close TOKEN` to an events file, read here even after the
server exited. Each test starts its own server. What only spindle promises (threads
that do not wait on clients, its config keys, its sendfile) is xfail on the other
servers, as in test_lifecycle.py.
"""

import collections
import hashlib
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

import servers
from rawhttp import Conn, get
from test_lifecycle import only_spindle, raise_nofile

sys.path.insert(0, servers.APPS)
from bodies import pattern_chunk  # noqa: E402

APP = "stream_app:application"
MIB = 1 << 20
FILE_SIZE = 8 * MIB
GEN_N, GEN_SIZE = 128, 64 * 1024  # the generator's body: 8 MiB


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """An 8 MiB file of random bytes: (path, bytes)."""
    path = tmp_path_factory.mktemp("stream") / "big.bin"
    data = os.urandom(FILE_SIZE)
    path.write_bytes(data)
    return str(path), data


def gen_body(n=GEN_N, size=GEN_SIZE):
    return b"".join(pattern_chunk(i, size) for i in range(n))


def sha(data):
    return hashlib.sha256(data).hexdigest()


def server(kind, tmp_path, big_file, config=None):
    env = {"STREAM_TEST_EVENTS": str(tmp_path / "events"), "STREAM_TEST_FILE": big_file[0]}
    return servers.Server(kind, APP, env=env, config=config)


def events(tmp_path, what="close"):
    """Counts of TOKEN in the `what TOKEN` lines of the events file."""
    path = tmp_path / "events"
    text = path.read_text() if path.exists() else ""
    return collections.Counter(re.findall(rf"^{what} (\S+)$", text, re.M))


def wait_events(tmp_path, tokens, what="close", timeout=15.0):
    """Waits until every token has a `what` line; returns the counts."""
    deadline = time.monotonic() + timeout
    while True:
        got = events(tmp_path, what)
        if all(got[t] for t in tokens) or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def closed_on(tmp_path, tok):
    """The names of the threads the token's close() calls ran on."""
    text = (tmp_path / "events").read_text()
    return re.findall(rf"^on {re.escape(tok)} (\S+)$", text, re.M)


def on_a_worker(kind, tmp_path, tok):
    """On spindle, close() ran on a pool worker: never on the acceptor, whose event loop
    must not wait for the GIL."""
    if kind == "spindle":
        threads = closed_on(tmp_path, tok)
        assert threads and all(t.startswith("worker-") for t in threads), threads


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+)", f.read(), re.M).group(1))


def proc_io(pid):
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f.read().splitlines())}


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slow_socket(port, rcvbuf=4096, timeout=10.0):
    """A client socket with a small receive buffer (set before connect, so the window
    it advertises is small from the start)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def request(s, target, method="GET", extra=""):
    s.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())


class Digest:
    """An incremental HTTP/1.1 response parser that hashes the body instead of keeping
    it (hundreds of 8 MiB bodies are read at once): feed() bytes until `done`."""

    def __init__(self):
        self.buf = bytearray()
        self.state = "head"
        self.status = None
        self.headers = {}
        self.hash = hashlib.sha256()
        self.len = 0
        self.left = 0
        self.done = False

    def _eat(self, n):
        self.hash.update(memoryview(self.buf)[:n])
        self.len += n
        del self.buf[:n]

    def feed(self, data):
        self.buf += data
        while not self.done:
            if self.state == "head":
                i = self.buf.find(b"\r\n\r\n")
                if i < 0:
                    return
                lines = bytes(self.buf[:i]).decode("latin-1").split("\r\n")
                del self.buf[:i + 4]
                self.status = int(lines[0].split()[1])
                self.headers = {k.strip().lower(): v.strip()
                                for k, _, v in (line.partition(":") for line in lines[1:])}
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    self.state = "size"
                else:
                    self.state, self.left = "body", int(self.headers["content-length"])
                    self.done = self.left == 0
            elif self.state in ("body", "chunk"):
                take = min(self.left, len(self.buf))
                self._eat(take)
                self.left -= take
                if self.left:
                    return
                if self.state == "body":
                    self.done = True
                else:
                    self.state = "crlf"
            elif self.state == "crlf":
                if len(self.buf) < 2:
                    return
                assert self.buf[:2] == b"\r\n", bytes(self.buf[:20])
                del self.buf[:2]
                self.state = "size"
            elif self.state == "size":
                i = self.buf.find(b"\r\n")
                if i < 0:
                    return
                size = int(bytes(self.buf[:i]).split(b";")[0], 16)
                del self.buf[:i + 2]
                self.state, self.left = ("trailer", 0) if size == 0 else ("chunk", size)
            elif self.state == "trailer":
                i = self.buf.find(b"\r\n")
                if i < 0:
                    return
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                self.done = not line

    def result(self):
        return self.status, self.len, self.hash.hexdigest()


def read_all(socks, timeout=120.0):
    """Reads one response on each socket, all at once (so no connection waits for the
    others); returns a Digest per socket. A socket that ends early leaves its Digest
    not done."""
    sel = selectors.DefaultSelector()
    digests = {}
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # a fast reader now
        s.setblocking(False)
        digests[s] = Digest()
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    live = len(socks)
    while live and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(1 << 20)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if data:
                digests[s].feed(data)
            if not data or digests[s].done:
                sel.unregister(s)
                live -= 1
    sel.close()
    return [digests[s] for s in socks]


# --- slow readers hold no thread -----------------------------------------------------

N_SLOW = 200
# Threads the pool may add while the 400 connections and their files arrive (the ramp):
# it grows when a busy worker sleeps in a syscall at two looks 5 ms apart, and the
# kernel's descriptor table, doubling from 64 to 2,048 entries as the sockets and files
# arrive, makes the openat() that grows it wait for an RCU grace period (seen in
# /proc/PID/task/TID/wchan: openat asleep in synchronize_rcu_normal and expand_files;
# 0 to 12 threads added in 8 runs, varying with the machine's load). Once the ramp is
# over, waiting clients add none (asserted exactly). A thread per slow client would be
# 400.
RAMP_GROWTH = 32


@pytest.mark.timeout(300)
def test_clients_that_do_not_read_hold_no_thread(kind, tmp_path, big_file):
    """200 clients with a 4 KiB receive buffer ask for an 8 MiB Flask generator and 200
    more for an 8 MiB send_file(), and read nothing: 50 sequential GET / on fresh
    connections are all answered within 5 s each, the server's thread count does not
    grow while they wait (and is far from one per client after their arrival: see
    RAMP_GROWTH), and its CPU is idle. Then every slow client reads its whole response,
    intact."""
    # Measured: gunicorn (gthread, 4 threads) pins a thread per response; waitress 3.0.2
    # (4 threads) had 98 of the 400 requests reach the app within 60 s.
    only_spindle(kind, "a response that the client does not read holds one of the 4 threads")
    raise_nofile(4 * N_SLOW + 1000)  # inherited by the server: its sockets and files
    with server(kind, tmp_path, big_file) as srv:
        pid = srv.proc.pid
        for _ in range(10):
            assert get(srv.port, "/").status == 200
        time.sleep(0.5)
        idle = proc_status(pid, "Threads")
        socks = []
        try:
            for i in range(N_SLOW):
                s = slow_socket(srv.port)
                request(s, f"/gen?n={GEN_N}&size={GEN_SIZE}&token=g{i}")
                socks.append(s)
            for i in range(N_SLOW):
                s = slow_socket(srv.port)
                request(s, f"/file?token=f{i}")
                socks.append(s)
            tokens = [f"g{i}" for i in range(N_SLOW)] + [f"f{i}" for i in range(N_SLOW)]
            started = wait_events(tmp_path, tokens, "start", timeout=60)
            assert len(started) == 2 * N_SLOW, f"{len(started)} of {2 * N_SLOW} requests reached the app"
            time.sleep(0.5)  # every response is parked with its client's window full
            ramp = peak = proc_status(pid, "Threads")
            cpus = []  # the server's CPU use over 1 s windows, once the ramp is over
            while len(cpus) < 5 and not (cpus and cpus[-1] < 0.05):
                cpu0, t0 = cpu_seconds(pid), time.monotonic()
                time.sleep(1)
                cpus.append((cpu_seconds(pid) - cpu0) / (time.monotonic() - t0))
            slowest = 0.0
            for _ in range(50):
                t = time.monotonic()
                with Conn(srv.port, timeout=5) as c:
                    r = c.request("GET", "/")
                slowest = max(slowest, time.monotonic() - t)
                assert r.status == 200 and r.body == b"Hello, World!\n", r
                peak = max(peak, proc_status(pid, "Threads"))
            print(f"threads idle {idle}, after the ramp {ramp}, peak {peak}; CPU "
                  f"{', '.join(f'{c:.1%}' for c in cpus)} while {2 * N_SLOW} clients wait; "
                  f"slowest GET / {slowest * 1e3:.1f} ms")
            assert ramp <= idle + RAMP_GROWTH, f"{ramp} threads with {2 * N_SLOW} slow readers, {idle} idle"
            assert peak == ramp, f"threads grew from {ramp} to {peak} while the clients waited"
            assert cpus[-1] < 0.05, f"the server used {cpus} of a CPU while its clients did not read"
            t, c0, mine = time.monotonic(), cpu_seconds(pid), os.times()
            got = read_all(socks)
            ours = os.times().user - mine.user + os.times().system - mine.system
            print(f"400 x 8 MiB read in {time.monotonic() - t:.1f} s; server CPU "
                  f"{cpu_seconds(pid) - c0:.1f} s, client CPU {ours:.1f} s")
        finally:
            for s in socks:
                s.close()
    want_gen = (200, FILE_SIZE, sha(gen_body()))
    want_file = (200, FILE_SIZE, sha(big_file[1]))
    bad = [(i, d.result(), d.done) for i, d in enumerate(got)
           if not d.done or d.result() != (want_gen if i < N_SLOW else want_file)]
    assert not bad, f"{len(bad)} responses not intact, first: {bad[:3]}"
    closed = events(tmp_path)
    assert all(closed[t] == 1 for t in tokens), {t: closed[t] for t in tokens if closed[t] != 1}


# --- close() exactly once ----------------------------------------------------------------

TARGETS = {"gen": f"/gen?n={GEN_N}&size={GEN_SIZE}", "file": "/file?"}


def target(route, tok):
    return f"{TARGETS[route]}&token={tok}"


def want_body(route, big_file):
    return gen_body() if route == "gen" else big_file[1]


def read_head(s):
    """Reads until the end of the response head; returns what came (head and more)."""
    got = b""
    while b"\r\n\r\n" not in got:
        data = s.recv(4096)
        assert data, f"connection closed before the head: {got!r}"
        got += data
    return got


def stop_and_count(srv, tmp_path, tok):
    """Waits for the token's close (a server may close after the response went out), stops
    the server, and returns how many closes it recorded in all."""
    wait_events(tmp_path, [tok])
    code = srv.stop()
    assert code == 0 or (srv.kind == "waitress" and code == -15), srv.log()[-2000:]
    return events(tmp_path)[tok]


@pytest.mark.parametrize("route", ["gen", "file"])
def test_close_once_at_the_end(kind, tmp_path, big_file, route):
    with server(kind, tmp_path, big_file) as srv:
        with slow_socket(srv.port, rcvbuf=1 << 20) as s:
            request(s, target(route, "t"))
            (d,) = read_all([s])
        assert d.done and d.result() == (200, FILE_SIZE, sha(want_body(route, big_file)))
        assert wait_events(tmp_path, ["t"])["t"] == 1
        assert stop_and_count(srv, tmp_path, "t") == 1
    on_a_worker(kind, tmp_path, "t")


@pytest.mark.parametrize("route", ["gen", "file"])
def test_close_once_when_the_client_leaves_mid_response(kind, tmp_path, big_file, route):
    with server(kind, tmp_path, big_file) as srv:
        s = slow_socket(srv.port)
        request(s, target(route, "t"))
        read_head(s)
        s.close()  # unread data: a reset
        assert wait_events(tmp_path, ["t"])["t"] == 1, srv.log()[-2000:]
        assert get(srv.port, "/").status == 200
        assert stop_and_count(srv, tmp_path, "t") == 1
    on_a_worker(kind, tmp_path, "t")


SHORT_BODY_TIMEOUT = '[limits]\nbody_timeout = "1s"\n' + servers.SPINDLE_CONFIG


@pytest.mark.parametrize("route", ["gen", "file"])
def test_close_once_when_a_stalled_client_is_cut_off(kind, tmp_path, big_file, route):
    """A client that stops reading for longer than body_timeout (1 s here) is cut off,
    and the response's iterable closed once, without the client doing anything more."""
    only_spindle(kind, "spindle's limits.body_timeout for a response the client does not take")
    with server(kind, tmp_path, big_file, config=SHORT_BODY_TIMEOUT) as srv:
        with slow_socket(srv.port) as s:
            request(s, target(route, "t"))
            got = len(read_head(s))
            t = time.monotonic()
            assert wait_events(tmp_path, ["t"], timeout=10)["t"] == 1, srv.log()[-2000:]
            waited = time.monotonic() - t
            assert waited > 0.5, f"closed after {waited:.2f} s, before body_timeout"
            # The connection was cut: what the kernel had buffered, then the end.
            s.settimeout(10)
            try:
                while data := s.recv(1 << 20):
                    got += len(data)
            except ConnectionResetError:
                pass
            assert got < FILE_SIZE, got
        assert get(srv.port, "/").status == 200
        assert stop_and_count(srv, tmp_path, "t") == 1
    on_a_worker(kind, tmp_path, "t")


@pytest.mark.parametrize("route", ["gen", "file"])
def test_graceful_stop_finishes_a_slow_stream_and_closes_once(kind, tmp_path, big_file, route):
    """SIGTERM while a slow reader is in the middle of an 8 MiB response: the response
    completes intact, close() is called once, and the server exits 0."""
    if kind == "waitress":
        pytest.xfail("waitress has no SIGTERM handler: it dies at once")
    srv = server(kind, tmp_path, big_file).start()
    try:
        with slow_socket(srv.port) as s:
            request(s, target(route, "t"))
            d = Digest()
            d.feed(read_head(s))
            srv.signal(signal.SIGTERM)
            time.sleep(1.0)  # the stop sweep runs while the response is parked
            s.settimeout(10)
            while not d.done:
                data = s.recv(64 * 1024)
                if not data:
                    break
                d.feed(data)
                time.sleep(0.002)  # about 20 MiB/s at most through a 4 KiB window
            assert d.done and d.result() == (200, FILE_SIZE, sha(want_body(route, big_file))), d.result()
        code = srv.proc.wait(timeout=30)
    finally:
        srv.stop()
    assert code == 0, srv.log()[-2000:]
    assert events(tmp_path)["t"] == 1
    on_a_worker(kind, tmp_path, "t")


SHORT_GRACE = '[server]\ngraceful_timeout = "1s"\n' + servers.SPINDLE_CONFIG


@pytest.mark.parametrize("route", ["gen", "file"])
def test_close_once_when_the_graceful_timeout_cuts_a_stalled_stream(kind, tmp_path, big_file, route):
    """SIGTERM while a client that stopped reading holds a response: graceful_timeout (1 s
    here) passes, the connection is cut, the iterable is closed once and the server
    exits 0."""
    only_spindle(kind, "spindle's server.graceful_timeout")
    srv = server(kind, tmp_path, big_file, config=SHORT_GRACE).start()
    try:
        with slow_socket(srv.port) as s:
            request(s, target(route, "t"))
            read_head(s)
            t = time.monotonic()
            srv.signal(signal.SIGTERM)
            code = srv.proc.wait(timeout=20)
            took = time.monotonic() - t
    finally:
        srv.stop()
    assert code == 0, srv.log()[-2000:]
    assert 0.8 < took < 10, took
    assert events(tmp_path)["t"] == 1, srv.log()[-2000:]
    # The cut hands parked connections to the workers: close() (which takes the GIL)
    # never runs on the acceptor, whose event loop must not wait for Python.
    on_a_worker(kind, tmp_path, "t")


# --- the request's context in every chunk -------------------------------------------------

FOUR_WORKERS = "[pool]\nmin_threads = 4\n" + servers.SPINDLE_CONFIG


def test_stream_with_context_keeps_the_request_on_any_thread(kind, tmp_path, big_file):
    """Flask's stream_with_context keeps the request context in ContextVars. On spindle
    a slow reader's chunks are pulled by whichever of the 4 workers finds the client
    ready, so each pull must run in the context the app was called in: `request` is
    there in every chunk (else Flask raises and the body ends short), and the context's
    exit at the end does not fail."""
    srv = server(kind, tmp_path, big_file, config=FOUR_WORKERS if kind == "spindle" else None)
    threads = set()
    with srv:
        for attempt in range(5):
            tok = f"c{attempt}"
            with slow_socket(srv.port) as s:
                request(s, f"/ctx-stream?n=64&token={tok}")
                d = Digest()
                d.feed(read_head(s))
                while not d.done:
                    time.sleep(0.001)  # the server waits for us between chunks
                    data = s.recv(65536)
                    if not data:
                        break
                    d.feed(data)
            want = b"".join((b"%d %s " % (i, tok.encode())).ljust(65536, b".") for i in range(64))
            assert d.done and d.result() == (200, len(want), sha(want)), (d.result(), srv.log()[-2000:])
            assert wait_events(tmp_path, [tok])[tok] == 1
            line = re.search(rf"^threads {tok} (\S+)$", (tmp_path / "events").read_text(), re.M)
            threads = set(line.group(1).split(","))
            if kind != "spindle" or len(threads) > 1:
                break
    assert "Working outside of request context" not in srv.log(), srv.log()[-2000:]
    if kind == "spindle":
        # Else this test did not test anything: fail loudly rather than pass.
        assert len(threads) > 1, f"every chunk was pulled on {threads} in 5 tries"


# --- wsgi.file_wrapper: what is sent, and close() ----------------------------------------

@pytest.mark.parametrize("method,status", [("HEAD", "200"), ("GET", "204"), ("GET", "304")])
def test_file_wrapper_without_a_body_is_closed_once(kind, tmp_path, big_file, method, status):
    """A bare wsgi.file_wrapper answered to HEAD, or with 204 or 304: no body bytes go
    out (the next response on the connection parses), and close() is called once."""
    if kind == "waitress":
        pytest.xfail("waitress 3.0.2 sends the wrapped file's bytes after a HEAD, 204 or 304 head")
    with server(kind, tmp_path, big_file) as srv:
        with Conn(srv.port) as c:
            r = c.request(method, f"/raw/file?status={status}&token=t")
            assert r.status == int(status) and r.body == b""
            if method == "HEAD" and kind == "spindle":
                # The app gave none: the server's own, from the file (as for GET).
                assert r.header("Content-Length") == str(FILE_SIZE), r
            assert c.request("GET", "/").body == b"Hello, World!\n"
        assert wait_events(tmp_path, ["t"])["t"] == 1
        assert stop_and_count(srv, tmp_path, "t") == 1
    on_a_worker(kind, tmp_path, "t")


@pytest.mark.parametrize("query,start,end", [
    ("offset=1000", 1000, FILE_SIZE),
    ("offset=1000&cl=5000", 1000, 6000),
    (f"cl={FILE_SIZE}", 0, FILE_SIZE),
    ("offset=0&cl=0", 0, 0),
])
def test_file_wrapper_sends_from_tell_for_content_length(kind, tmp_path, big_file, query, start, end):
    """The file's position when the app returns it is where the body starts (PEP 3333
    leaves the range to the file's position), and the app's Content-Length, when it
    gives one, is how much is sent."""
    with server(kind, tmp_path, big_file) as srv:
        with Conn(srv.port) as c:
            r = c.request("GET", f"/raw/file?{query}&token=t")
            assert r.status == 200 and len(r.body) == end - start and r.body == big_file[1][start:end]
            assert c.request("GET", "/").status == 200
        assert stop_and_count(srv, tmp_path, "t") == 1
    on_a_worker(kind, tmp_path, "t")


@pytest.mark.parametrize("filelike", ["bytesio", "pipe"])
def test_file_wrapper_over_no_regular_file_is_iterated(kind, tmp_path, big_file, filelike):
    """io.BytesIO (no fileno) and a pipe (a fileno, not a regular file): iterated, the
    body intact, closed once."""
    want = big_file[1] if filelike == "bytesio" else big_file[1][:MIB]
    with server(kind, tmp_path, big_file) as srv:
        r = get(srv.port, f"/raw/file?kind={filelike}&token=t")
        assert r.status == 200 and r.body == want
        assert stop_and_count(srv, tmp_path, "t") == 1
    on_a_worker(kind, tmp_path, "t")


def test_send_file_range_and_whole_file_are_intact(kind, tmp_path, big_file):
    """send_file(conditional=True): a Range request (Werkzeug wraps the file: iterated)
    and the whole file (sendfile on spindle) give the file's bytes."""
    data = big_file[1]
    with server(kind, tmp_path, big_file) as srv:
        with Conn(srv.port) as c:
            r = c.request("GET", "/file-path", headers=[("Range", "bytes=1000-99999")])
            assert r.status == 206 and r.body == data[1000:100000], r
            assert r.header("Content-Range") == f"bytes 1000-99999/{FILE_SIZE}"
            r = c.request("GET", "/file-path", headers=[("Range", f"bytes={FILE_SIZE - 10}-")])
            assert r.status == 206 and r.body == data[-10:], r
            r = c.request("GET", "/file-path")
            assert r.status == 200 and r.body == data
            etag = r.header("ETag")
            r = c.request("GET", "/file-path", headers=[("If-None-Match", etag)])
            assert r.status == 304 and r.body == b""


def test_send_file_goes_out_with_sendfile_not_reads(kind, tmp_path, big_file):
    """The server's read syscalls (/proc/PID/io syscr) while one 8 MiB send_file()
    download goes out: Werkzeug's range path reads the file 8 KiB at a time (over 1,000
    reads for a range of almost all of it); the whole file, sent with sendfile(2), takes
    far fewer. (rchar cannot tell them apart: the kernel counts sendfile's bytes in it.)"""
    only_spindle(kind, "spindle sends a wsgi.file_wrapper over a regular file with sendfile(2)")
    data = big_file[1]
    with server(kind, tmp_path, big_file) as srv:
        pid = srv.proc.pid
        with Conn(srv.port) as c:
            c.request("GET", "/")

            def syscr_of(headers, status, body):
                before = proc_io(pid)["syscr"]
                r = c.request("GET", "/file-path", headers=headers)
                after = proc_io(pid)["syscr"]
                assert r.status == status and r.body == body
                return after - before

            iterated = syscr_of([("Range", f"bytes=0-{FILE_SIZE - 2}")], 206, data[:-1])
            sent = syscr_of([], 200, data)
    print(f"read syscalls for 8 MiB: {iterated} iterated, {sent} with sendfile")
    assert iterated >= FILE_SIZE // 8192, iterated
    assert sent < iterated / 4, (sent, iterated)


def test_send_file_under_strace_shows_sendfile(kind, tmp_path, big_file):
    """strace -c over a send_file() download: sendfile(2) carries the 8 MiB, not a loop
    of read(2) on the file. Skipped without strace or ptrace."""
    only_spindle(kind, "spindle sends a wsgi.file_wrapper over a regular file with sendfile(2)")
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("no strace on PATH")
    out = tmp_path / "strace.txt"
    with server(kind, tmp_path, big_file) as srv:
        assert get(srv.port, "/").status == 200
        tracer = subprocess.Popen([strace, "-f", "-c", "-e", "trace=sendfile,read,pread64",
                                   "-o", str(out), "-p", str(srv.proc.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)  # attached to every thread
            if tracer.poll() is not None:
                pytest.skip(f"strace cannot attach: {tracer.stderr.read().decode()[-300:]}")
            r = get(srv.port, "/file-path")
            assert r.status == 200 and r.body == big_file[1]
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=20)
    table = out.read_text()
    # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
    row = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", re.M)
    calls = {m.group(2): int(m.group(1)) for m in row.finditer(table)}
    print(table)
    assert calls.get("sendfile", 0) > 0, table
    assert calls.get("read", 0) + calls.get("pread64", 0) < FILE_SIZE // 65536, table
