"""Smoke test of the installed `spindle-wsgi` command (the big oracle suite is
tests/wsgi/). Starts the real command on 127.0.0.1:0 with --ready-file, talks raw
HTTP over sockets (every client with a timeout), and stops it with SIGTERM.

Run: python python/tests/test_smoke.py   (with spindle-wsgi on PATH; see smoke.sh)
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
COMMAND = shutil.which("spindle-wsgi") or "spindle-wsgi"
TIMEOUT = 10


def start(args, cwd=HERE, config=None):
    """Starts spindle-wsgi; returns (process, address, log path, ready path)."""
    tmp = tempfile.mkdtemp(prefix="spindle-wsgi-smoke-")
    ready = os.path.join(tmp, "ready")
    log = os.path.join(tmp, "log")
    cmd = [COMMAND] + args + ["--ready-file", ready]
    if config is not None:
        path = os.path.join(tmp, "spindle.toml")
        with open(path, "w") as f:
            f.write(config)
        cmd += ["--config", path]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 60
    while not os.path.exists(ready):
        if proc.poll() is not None:
            with open(log) as f:
                raise AssertionError("spindle-wsgi exited %s: %s" % (proc.returncode, f.read()))
        if time.monotonic() > deadline:
            proc.kill()
            with open(log) as f:
                raise AssertionError("not ready: " + f.read())
        time.sleep(0.02)
    addr = None
    with open(ready) as f:
        lines = f.read().splitlines()
    for line in lines:
        parts = line.split()
        if parts[0] == "listener" and parts[1] == "http":
            host, port = parts[2].rsplit(":", 1)
            addr = (host, int(port))
    return proc, addr, log, ready


def exchange(addr, raw):
    """Sends raw bytes; reads until the server closes. Returns (status, head, body)."""
    with socket.create_connection(addr, timeout=TIMEOUT) as s:
        s.sendall(raw)
        got = b""
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            got += data
    head, _, body = got.partition(b"\r\n\r\n")
    status = int(head[9:12]) if head.startswith(b"HTTP/1.1 ") else 0
    head = head.decode("latin-1")
    if "Transfer-Encoding: chunked" in head and body.endswith(b"0\r\n\r\n"):
        body = dechunk(body)
    return status, head, body


def get(addr, path, extra=""):
    return exchange(addr, ("GET %s HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n" % (path, extra)).encode())


def dechunk(body):
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return out
        out += rest[:n]
        body = rest[n + 2:]


CONFIG = """
[server]
graceful_timeout = "5s"
[[listener]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
[listener.apps]
"/healthz" = "healthz"
"""


class Smoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc, cls.addr, cls.log, cls.ready = start(["smokeapp:app"], config=CONFIG)

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            cls.proc.kill()
            cls.proc.wait()

    def log_text(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def test_get(self):
        status, head, body = get(self.addr, "/")
        self.assertEqual(status, 200, head)
        self.assertIn("Content-Length: 6", head)
        self.assertEqual(body, b"hello\n")

    def test_builtin_app_mounted_by_the_config_stays(self):
        status, head, _ = get(self.addr, "/healthz")
        self.assertEqual(status, 200, head)

    def test_post_bodies_small_large_and_chunked(self):
        for size in (0, 11, 300000):
            data = bytes(i % 251 for i in range(size))
            raw = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size
            status, head, body = exchange(self.addr, raw + data)
            self.assertEqual(status, 200, head)
            self.assertEqual(body, data, size)
        raw = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        status, head, body = exchange(self.addr, raw)
        self.assertEqual((status, body), (200, b"hello world"), head)
        self.assertIn("X-Content-Length: 11", head)

    def test_the_apps_reason_phrase_is_sent_as_given(self):
        status, head, body = get(self.addr, "/reason")
        self.assertTrue(head.startswith("HTTP/1.1 404 NOT FOUND\r\n"), head)

    def test_readlines(self):
        data = b"a\nbb\nccc"
        raw = b"POST /lines HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\nConnection: close\r\n\r\n" + data
        status, head, body = exchange(self.addr, raw)
        self.assertEqual((status, body), (200, b"3\n"), head)

    def test_environ_split_and_latin1(self):
        status, head, body = get(self.addr, "/env/a%20b%E9?x=1", "X-Rep: 1\r\nX-Rep: 2\r\n")
        self.assertEqual(status, 200, head)
        env = body.decode("latin-1")
        self.assertIn("PATH_INFO=/env/a b\xe9\n", env)
        self.assertIn("SCRIPT_NAME=\n", env)
        self.assertIn("QUERY_STRING=x=1\n", env)
        self.assertIn("HTTP_X_REP=1, 2\n", env)
        self.assertIn("SERVER_NAME=t\n", env)

    def test_stream_late_start_and_file_wrapper(self):
        status, head, body = get(self.addr, "/stream")
        self.assertEqual((status, body), (200, b"one,two"), head)
        status, head, body = get(self.addr, "/late-error")
        self.assertEqual((status, body), (503, b"replaced\n"), head)
        status, head, body = get(self.addr, "/file")
        with open(os.path.join(HERE, "smokeapp.py"), "rb") as f:
            self.assertEqual((status, body), (200, f.read()), head)

    def test_exception_before_start_is_500_with_traceback_in_the_log(self):
        status, head, _ = get(self.addr, "/boom")
        self.assertEqual(status, 500, head)
        deadline = time.monotonic() + TIMEOUT
        while "boom-before-start" not in self.log_text():
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        self.assertIn("Traceback (most recent call last)", self.log_text())
        self.assertIn("KeyError: 'boom-before-start'", self.log_text())

    def test_str_chunk_is_500_and_errors_go_to_the_log(self):
        status, head, _ = get(self.addr, "/str-chunk")
        self.assertEqual(status, 500, head)
        status, head, _ = get(self.addr, "/errors")
        self.assertEqual(status, 204, head)
        deadline = time.monotonic() + TIMEOUT
        while "smoke-errors-line" not in self.log_text():
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)

    def test_threading_local_lasts_across_requests_on_a_worker(self):
        seen = [int(get(self.addr, "/tls")[2]) for _ in range(20)]
        self.assertGreater(max(seen), 0, seen)

    def closed(self):
        _, _, body = get(self.addr, "/closed")
        return int(body.strip() or b"-1")

    def test_exception_after_start_closes_the_connection_and_close_is_called(self):
        before = self.closed()
        status, head, body = get(self.addr, "/boom-after-start")
        self.assertEqual(status, 200, head)
        self.assertIn(b"partial", body)
        self.assertFalse(body.endswith(b"0\r\n\r\n"), "a failed stream must not look complete")
        self.assertEqual(self.closed(), before + 1)

    def test_close_is_called_when_the_client_goes_away_mid_stream(self):
        before = self.closed()
        with socket.create_connection(self.addr, timeout=TIMEOUT) as s:
            s.sendall(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertTrue(s.recv(65536).startswith(b"HTTP/1.1 200"))
        deadline = time.monotonic() + TIMEOUT
        while self.closed() != before + 1:
            self.assertLess(time.monotonic(), deadline, "close() not called after the client left")
            time.sleep(0.05)

    def test_zz_sigterm_answers_in_flight_requests_and_exits_0(self):
        # Last (zz): stops the shared server.
        s = socket.create_connection(self.addr, timeout=TIMEOUT)
        s.sendall(b"GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.05)  # let the request reach the app; not a readiness wait
        self.proc.send_signal(signal.SIGTERM)
        got = b""
        while b"slept\n" not in got:
            data = s.recv(65536)
            if not data:
                break
            got += data
        s.close()
        self.assertIn(b"slept\n", got)
        self.assertEqual(self.proc.wait(timeout=TIMEOUT), 0)
        self.assertFalse(os.path.exists(self.ready), "ready file removed at exit")


class Startup(unittest.TestCase):
    def run_failing(self, args, cwd=HERE):
        proc = subprocess.run([COMMAND] + args, cwd=cwd, capture_output=True, timeout=60)
        return proc.returncode, proc.stderr.decode("utf-8", "replace")

    def test_import_error_is_exit_2_naming_the_module_and_the_last_line(self):
        code, err = self.run_failing(["no_such_module_xyz:app", "-b", "127.0.0.1:0"])
        self.assertEqual(code, 2, err)
        self.assertIn("no_such_module_xyz", err)
        self.assertIn("ModuleNotFoundError", err)
        code, err = self.run_failing(["smokeapp:missing", "-b", "127.0.0.1:0"])
        self.assertEqual(code, 2, err)
        self.assertIn("AttributeError", err)

    def test_bad_config_and_unbindable_address_are_exit_2(self):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write("[pool]\nmax_threads = \"many\"\n")
        code, err = self.run_failing(["smokeapp:app", "--config", f.name])
        self.assertEqual(code, 2, err)
        self.assertIn(f.name, err)
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen()
            port = held.getsockname()[1]
            code, err = self.run_failing(["smokeapp:app", "-b", "127.0.0.1:%d" % port])
        self.assertEqual(code, 2, err)

    def test_config_mounts_wsgi_apps_by_prefix_without_a_command_line_app(self):
        config = CONFIG.replace('"/healthz" = "healthz"\n',
                                '"/healthz" = "healthz"\n"/api" = { wsgi = "smokeapp:app" }\n')
        proc, addr, _, _ = start([], config=config)
        try:
            status, head, body = get(addr, "/api/env/x")
            self.assertEqual(status, 200, head)
            self.assertIn(b"SCRIPT_NAME=/api\n", body)
            self.assertIn(b"PATH_INFO=/env/x\n", body)
            self.assertEqual(get(addr, "/healthz")[0], 200)
            self.assertEqual(get(addr, "/other")[0], 404)
        finally:
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=TIMEOUT), 0)

    def test_sigusr2_upgrade_starts_the_same_command_in_its_virtualenv(self):
        proc, addr, _, ready = start(["smokeapp:app"], config=CONFIG)
        successor = None
        try:
            proc.send_signal(signal.SIGUSR2)
            deadline = time.monotonic() + 60
            while successor is None:
                self.assertLess(time.monotonic(), deadline, "no successor became ready")
                try:
                    with open(ready) as f:
                        pid = int(f.readline().split()[1])
                    if pid != proc.pid:
                        successor = pid
                except (OSError, ValueError, IndexError):
                    pass
                time.sleep(0.05)
            self.assertEqual(proc.wait(timeout=TIMEOUT), 0)
            status, head, body = get(addr, "/")
            self.assertEqual((status, body), (200, b"hello\n"), head)
        finally:
            if proc.poll() is None:
                proc.kill()
            if successor is not None:
                os.kill(successor, signal.SIGTERM)
                deadline = time.monotonic() + TIMEOUT
                while os.path.exists("/proc/%d" % successor) and time.monotonic() < deadline:
                    time.sleep(0.05)

    def test_bind_flag_chdir_and_a_factory(self):
        proc, addr, _, _ = start(["smokeapp:create_app()", "--chdir", HERE, "-b", "127.0.0.1:0"], cwd="/")
        try:
            status, head, body = get(addr, "/")
            self.assertEqual((status, body), (200, b"hello\n"), head)
            # Without --config only the app is served: no built-in /healthz.
            status, _, body = get(addr, "/healthz")
            self.assertEqual(status, 404, body)
        finally:
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=TIMEOUT), 0)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("smoke: %d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
