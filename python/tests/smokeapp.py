"""WSGI apps for spindle-wsgi's smoke test (python/tests/test_smoke.py).

`app` is wrapped in wsgiref.validate.validator: any PEP 3333 violation by the
server raises inside it and turns into a 500, which the test sees. Routes that
misbehave on purpose (`raw`) are not wrapped. Every iterable returned counts its
close() calls in CLOSED, reported by /closed.
"""
import itertools
import os
import sys
import threading
import time
from wsgiref.validate import validator

CLOSED = itertools.count()
closed_total = [0]
lock = threading.Lock()
local = threading.local()


class Counted:
    """An iterable whose close() is counted."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.chunks)

    def close(self):
        with lock:
            closed_total[0] += 1


def endless():
    while True:
        yield b"x" * 4096
        time.sleep(0.001)


def _validated(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
        return Counted([b"hello\n"])
    if path == "/echo":
        inp = environ["wsgi.input"]
        parts = []
        while True:
            block = inp.read(10000)
            if not block:
                break
            parts.append(block)
        body = b"".join(parts)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("X-Content-Length", environ.get("CONTENT_LENGTH", ""))])
        return Counted([body])
    if path == "/lines":
        lines = environ["wsgi.input"].readlines()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Counted([b"%d\n" % len(lines)])
    if path.startswith("/env"):
        keys = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL",
                "HTTP_X_REP", "REMOTE_ADDR", "SERVER_NAME"]
        text = "".join("%s=%s\n" % (k, environ.get(k)) for k in keys)
        start_response("200 OK", [("Content-Type", "text/plain; charset=latin-1")])
        return Counted([text.encode("latin-1")])
    if path == "/stream":
        def gen():
            yield b""
            yield b"one,"
            yield b"two"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/late-error":
        # start_response with exc_info before anything was sent: replaces the status.
        def gen():
            try:
                raise ValueError("late")
            except ValueError:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
            yield b"replaced\n"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/errors":
        environ["wsgi.errors"].write("smoke-errors-line\n")
        environ["wsgi.errors"].flush()
        start_response("204 No Content", [])
        return Counted([])
    if path == "/file":
        f = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/x-python")])
        return environ["wsgi.file_wrapper"](f, 1000)
    if path == "/boom":
        raise KeyError("boom-before-start")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return Counted([b"not found\n"])


validated = validator(_validated)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/closed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        with lock:
            return [b"%d\n" % closed_total[0]]
    if path == "/tls":
        # How many earlier requests this thread's threading.local has seen.
        seen = getattr(local, "seen", 0)
        local.seen = seen + 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d\n" % seen]
    if path == "/endless":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Counted(endless())
    if path == "/str-chunk":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Counted(["not bytes"])
    if path == "/boom-after-start":
        def gen():
            yield b"partial"
            raise RuntimeError("boom-after-start")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Counted(gen())
    if path == "/reason":
        start_response("404 NOT FOUND", [("Content-Type", "text/plain")])
        return Counted([b"gone\n"])
    if path == "/sleep":
        time.sleep(0.2)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Counted([b"slept\n"])
    return validated(environ, start_response)


def create_app():
    """A factory, as `smokeapp:create_app()` names it."""
    return app
