"""Starting and stopping the WSGI servers the tests drive, each on 127.0.0.1 port 0.

One `Server` is one process this module started: spindle-wsgi, gunicorn (gthread, 1
worker, 4 threads) or waitress (4 threads), serving `MODULE:CALLABLE` from
tests/wsgi/apps with its stdout and stderr in a log file. Readiness and the port come
from the server itself, never from a fixed sleep: spindle-wsgi writes them to its
`--ready-file`; gunicorn and waitress print the bound address in their log, which is
parsed for them only. Every wait is bounded. `stop()` sends SIGTERM to the PID it
started and, if that process has not exited within the bound, SIGKILLs its descendants
(gunicorn's worker is a child of the PID we hold) and then it.

Which server is "under test" is `WSGI_SERVER` (spindle, gunicorn or waitress); the
default is spindle when a `spindle-wsgi` command can be found (next to this Python or
on PATH, or `SPINDLE_WSGI=/path/to/spindle-wsgi`), else gunicorn.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
KINDS = ("spindle", "gunicorn", "waitress")
THREADS = 4


def spindle_command():
    """The spindle-wsgi executable, or None."""
    given = os.environ.get("SPINDLE_WSGI")
    if given:
        return given
    beside = os.path.join(os.path.dirname(sys.executable), "spindle-wsgi")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("spindle-wsgi")


def under_test():
    kind = os.environ.get("WSGI_SERVER")
    if kind:
        if kind not in KINDS:
            raise SystemExit(f"WSGI_SERVER={kind!r}: expected one of {', '.join(KINDS)}")
        return kind
    return "spindle" if spindle_command() else "gunicorn"


def descendants(pid):
    """PIDs of every live descendant of `pid`, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


SPINDLE_CONFIG = """\
# Written by tests/wsgi/servers.py: one HTTP listener on a free loopback port; the
# WSGI app is mounted at "/" by spindle-wsgi, the built-in health check beside it.
[[listener]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
[listener.apps]
"/healthz" = "healthz"
"""


class StartError(Exception):
    pass


class Server:
    """A WSGI server process serving `app` ("module:callable" in tests/wsgi/apps)."""

    def __init__(self, kind, app, env=None, config=None, ready_timeout=60.0, args=()):
        self.kind = kind
        self.app = app
        self.dir = tempfile.mkdtemp(prefix=f"wsgi-{kind}-")
        self.log_path = os.path.join(self.dir, "server.log")
        self.env = dict(os.environ)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env["PYTHONPATH"] = APPS + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env.update(env or {})
        self.config = config if config is not None else SPINDLE_CONFIG
        self.ready_timeout = ready_timeout
        self.args = list(args)  # extra command-line arguments (e.g. waitress --url-prefix)
        self.proc = None
        self.port = None
        self.returncode = None

    def command(self):
        if self.kind == "spindle":
            exe = spindle_command()
            if not exe:
                raise StartError("no spindle-wsgi command (pip install ./python, or SPINDLE_WSGI=path)")
            cfg = os.path.join(self.dir, "spindle.toml")
            with open(cfg, "w") as f:
                f.write(self.config)
            self.ready_file = os.path.join(self.dir, "ready")
            return [exe, self.app, "--config", cfg, "--ready-file", self.ready_file]
        if self.kind == "gunicorn":
            return [sys.executable, "-m", "gunicorn", "--worker-class", "gthread",
                    "--workers", "1", "--threads", str(THREADS), "--bind", "127.0.0.1:0",
                    "--no-control-socket", "--graceful-timeout", "20", "--chdir", APPS,
                    self.app]
        if self.kind == "waitress":
            return [sys.executable, "-m", "waitress", "--listen=127.0.0.1:0",
                    f"--threads={THREADS}", self.app]
        raise StartError(f"unknown server kind {self.kind!r}")

    def start(self):
        # A second start would orphan the first process (a test once did: `start()`,
        # then `with srv:`).
        assert self.proc is None, f"{self.kind} server started twice"
        cmd = self.command()
        if self.kind == "spindle":
            cmd += self.args
        else:  # before the app: waitress-serve stops reading options at the first operand
            cmd[-1:-1] = self.args
        self.cmdline = " ".join(cmd)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=APPS, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise StartError(f"{self.kind} exited {self.returncode} before it was ready:\n"
                                 f"{self.cmdline}\n{self.log()[-3000:]}")
            port = self._ready_port()
            if port:
                self.port = port
                return self
            time.sleep(0.05)
        self.stop(timeout=5)
        raise StartError(f"{self.kind} not ready within {self.ready_timeout} s:\n{self.log()[-3000:]}")

    def _ready_port(self):
        if self.kind == "spindle":
            try:
                with open(self.ready_file) as f:
                    text = f.read()
            except FileNotFoundError:
                return None
            m = re.search(r"^listener http \S*:(\d+)\s*$", text, re.M)
            return int(m.group(1)) if m else None
        text = self.log()
        if self.kind == "gunicorn":
            # The master binds and prints the port; requests are served once the worker
            # has booted (before that they would only wait in the backlog).
            m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            return int(m.group(1)) if m and "Booting worker with pid" in text else None
        m = re.search(r"Serving on http://127\.0\.0\.1:(\d+)", text)
        return int(m.group(1)) if m else None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, timeout=20.0):
        """SIGTERM, wait up to `timeout` s for the process to exit, else SIGKILL its tree.
        Returns the exit status of the process we started."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Still our children while the parent lives: no PID can have been reused.
            for pid in descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.returncode = self.proc.returncode
        return self.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
